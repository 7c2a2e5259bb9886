"""Naturalness without listeners: DNSMOS (Reddy et al., ICASSP 2022), P.835 SIG, BAK, OVRL and P.808 MOS.

Microsoft's ONNX models and their scoring procedure come from the `speechmos` wheel
(no download): a clip shorter than 9.01 s is repeated until it is that long, each
9.01 s window (hop 1 s) is scored and the scores averaged, P.835's raw outputs mapped
by DNSMOS's polynomials. Its sessions are made here single-threaded, as every scoring
worker of the benchmark is.

MCD is coupled to the mel-cepstrum it is computed on (a buzzy pulse-excited MLSA filter
scores better than WORLD), so naturalness needs a reading of its own; DNSMOS is trained
on noisy real speech, so read its numbers relative to the natural corpus speech in the
same table, not as absolute MOS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.features import SR, quiet_import

COLUMNS = ("sig", "bak", "ovrl", "p808")


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _single_threaded_dnsmos():
    """speechmos's DNSMOS (its procedure, its models) with sessions made here: its own use every core."""
    base = quiet_import("speechmos.dnsmos").DNSMOS

    class SingleThreaded(base):
        def __init__(self, models: Path):
            self.primary_model_path = str(models / "sig_bak_ovr.onnx")
            self.onnx_sess = _session(models / "sig_bak_ovr.onnx")
            self.p808_onnx_sess = _session(models / "model_v8.onnx")

    return SingleThreaded(Path(quiet_import("speechmos").__file__).parent / "dnsmos_models")


class Dnsmos:
    """score(audio (N,) float32 at 16 kHz) -> {"sig", "bak", "ovrl", "p808"}."""

    name = "DNSMOS P.835 + P.808 (speechmos's ONNX models)"

    def __init__(self):
        self._dnsmos = _single_threaded_dnsmos()

    def score(self, audio: np.ndarray) -> dict[str, float]:
        # DNSMOS refuses samples outside [-1, 1]: a converter's overshoot is clipped, as a DAC would.
        x = np.clip(np.nan_to_num(np.asarray(audio, np.float32)), -1.0, 1.0)
        if x.size == 0:  # speechmos doubles a short clip until it is 9 s long: never ends on nothing
            x = np.zeros(SR, np.float32)
        out = self._dnsmos(x, SR, False)
        return {"sig": float(out["sig_mos"]), "bak": float(out["bak_mos"]), "ovrl": float(out["ovrl_mos"]),
                "p808": float(out["p808_mos"])}
