"""In-memory corpus of log-mels and audio, and deterministic balanced batches.

Batches are a pure function of (seed, step, rank): resuming at step k draws exactly
the batches an uninterrupted run would have drawn, with no sampler state to save,
and each data-parallel rank draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.anchor import neutral_anchor
from engine.audio import load_audio
from engine.pitch import N_FEATURES, pitch_offline
from engine.signal import EMOTIONS, SignalSpec
from training.data.analysis import analyse_files, cache_dir, delayed, delayed_pitch, silent_envelope
from training.data.augment import Degradation, coloured_noise, degrade, hum
from training.data.esd import Utterance, scan
from training.data.parallel import aligned_frames, partners
from training.data.pitch import deemotionalised, neutral_registers, register_offset
from training.data.spectrum import level_tilt, neutral_spectra, spectral_offset
from training.features import LogMel


@dataclass
class Batch:
    """A batch of equal-length crops.

    mel: (B, n_mels, S) the clean log-mel: what Ee reads and the reconstruction target;
    audio: (B, S*hop) what the vocoder renders from these frames (delayed by the spec's
    lookahead, see MelCorpus); lengths: (B,) valid frames; the content path's inputs, each with
    the speaker's neutral voice in place of the utterance's emotion: mel_in (B, n_mels, S) the
    log-mel with the neutral level and tilt (training.data.spectrum) and pitch_in: (B, 4, S)
    the engine tracker's features with the neutral register (training.data.pitch), both
    degraded as a microphone records them on augmented items; pitch: (B, 2, S) target log-F0 (held) and voicing
    (training.data.analysis.pitch_targets); envelope: (B, 2*order, S) the vocoder's filter
    cepstra targets, or (B, 0, S) when the corpus was loaded without them;
    emotion_offset: (B, n_mels + 2) how far each utterance's emotion moves it from its speaker's
    neutral voice (MelCorpus._emotion_offsets); anchor: (B, n_mels + 1) the speaker's neutral voice
    as Ee reads it (engine.anchor, MelCorpus.anchors); labels: (B,) emotion index; speakers: (B,) speaker index;
    positive/negative: (B,) index of a same-emotion other-speaker item and of an
    other-emotion item (triplets); reference: (B,) index of an item of another emotion
    (Stage II conversion reference); the item's parallel partner (training.data.parallel: the same
    speaker and sentence under another emotion; the item itself where the corpus has none) on the
    item's frames, parallel_mel (B, n_mels, S) and parallel_pitch (B, 2, S) (voiced where both are),
    and its own crop from the frame paired with the item's first, partner_mel (B, n_mels, S),
    partner_pitch (B, 2, S) and partner_lengths (B,); noise alone as the engine hears it
    (MelCorpus.noise_inputs), noise_mel (N, n_mels, S) and noise_pitch (N, 4, S), N = NOISE_ITEMS.
    The partner and noise rows are drawn for a corpus loaded with `conversion` (Stage II reads
    them) and are empty otherwise: (B, 0, S), partner_lengths zeros, N = 0.
    """

    mel: torch.Tensor
    mel_in: torch.Tensor
    audio: torch.Tensor
    pitch_in: torch.Tensor
    pitch: torch.Tensor
    envelope: torch.Tensor
    emotion_offset: torch.Tensor
    anchor: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    speakers: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    reference: torch.Tensor
    parallel_mel: torch.Tensor
    parallel_pitch: torch.Tensor
    partner_mel: torch.Tensor
    partner_pitch: torch.Tensor
    partner_lengths: torch.Tensor
    noise_mel: torch.Tensor
    noise_pitch: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})


class MelCorpus:
    """Every utterance of one split, loaded once, with its features (see Batch for the rows).

    audio (N,) float32, mel (n_mels, T), offsets (n_mels, 1) (mel_in = mel - offset), pitch_in
    (4, T), pitch (2, T) and, when envelope_order is set, envelope (2 * order, T) per utterance;
    the WORLD analyses are cached on disk (training.data.analysis) and computed in `jobs` processes.

    With the spec's lookahead of L frames, frame k of the model renders hop k - L: the
    targets (pitch, envelope, and the audio the vocoder is compared with) are delayed by L
    frames, while the inputs (mel, pitch_in) stay as the engine computes them.

    With `conversion`, batches also carry what Stage II's conversion losses read: each item's
    parallel partner and crops of noise alone (see Batch); the other stages skip that work.

    With `augment`, training batches take their inputs (mel_in, pitch_in) from a degraded copy
    of the crop (degraded_inputs); the targets and Ee's input (mel, pitch) stay clean: a
    reference is registered once, and a random microphone level would hide the loudness that
    tells Angry from Happy.
    """

    def __init__(self, root: str | Path, spec: SignalSpec, split: str, speakers=None,
                 envelope_order: int | None = None, jobs: int = 1, limit: int | None = None,
                 augment: Degradation | None = None, conversion: bool = False):
        self.spec = spec
        self.conversion = conversion
        self.augment = augment
        self._logmel = LogMel(spec)
        self.utts: list[Utterance] = scan(root, speakers=speakers, splits=[split])
        if limit is not None:
            keep = np.linspace(0, len(self.utts) - 1, min(limit, len(self.utts))).round().astype(int)
            self.utts = [self.utts[i] for i in sorted(set(keep))]
        paths = [u.path for u in self.utts]
        self.audio = [load_audio(p, spec.sample_rate) for p in paths]
        with torch.no_grad():
            self.mels = [self._logmel(torch.from_numpy(a)[None])[0] for a in self.audio]
        pitches = [pitch_offline(a, spec) for a in self.audio]
        self.pitch_in = self._registered(pitches)
        self.offsets = self._levelled()
        self.emotion_offsets = self._emotion_offsets(pitches)
        lag = spec.lookahead_frames
        self.pitch = [torch.from_numpy(delayed_pitch(p, lag))
                      for p in analyse_files(paths, "pitch", spec, jobs, cache_dir())]
        self.envelope = ([torch.from_numpy(delayed(e, lag, silent_envelope(envelope_order)))
                          for e in analyse_files(paths, f"envelope-{envelope_order}", spec, jobs, cache_dir())]
                         if envelope_order else None)
        self.anchors, self.anchor_centre = self._anchors()
        self.target_audio = [np.concatenate([np.zeros(lag * spec.hop, np.float32), a[: a.size - lag * spec.hop]])
                             for a in self.audio] if lag else self.audio
        self.labels = np.array([u.label for u in self.utts])
        names = sorted({u.speaker for u in self.utts})
        self.speakers = np.array([names.index(u.speaker) for u in self.utts])
        self.by_label = [np.flatnonzero(self.labels == k) for k in range(len(EMOTIONS))]
        self.partners = partners(self.utts)
        self._alignments: dict[tuple[int, int], np.ndarray] = {}

    def _registered(self, pitches: list[np.ndarray]) -> list[torch.Tensor]:
        """Tracker features with each speaker's neutral register (training.data.pitch)."""
        speakers = [u.speaker for u in self.utts]
        self._registers = neutral_registers(pitches, speakers, [u.label == 0 for u in self.utts])
        return [torch.from_numpy(deemotionalised(p, self._registers.get(s))) for p, s in zip(pitches, speakers)]

    def _levelled(self) -> list[torch.Tensor]:
        """Per utterance, its (n_mels, 1) level and tilt offset from the speaker's neutral spectrum."""
        mels, speakers = [m.numpy() for m in self.mels], [u.speaker for u in self.utts]
        self._neutral = neutral_spectra(mels, speakers, [u.label == 0 for u in self.utts])
        return [torch.from_numpy(level_tilt(m, self._neutral.get(s))) for m, s in zip(mels, speakers)]

    def _emotion_offsets(self, pitches: list[np.ndarray]) -> list[torch.Tensor]:
        """Per utterance (n_mels + 2,): how far its emotion moves it from its speaker's neutral voice,
        the active log-mel spectrum (spectral_offset), then the voiced log-F0's mean and log spread
        (register_offset): what a Stage II conversion to it must add (training.stages.Stage2)."""
        return [torch.from_numpy(np.concatenate([spectral_offset(m.numpy(), self._neutral.get(u.speaker)),
                                                 register_offset(p, self._registers.get(u.speaker))]))
                for m, p, u in zip(self.mels, pitches, self.utts)]

    def _anchors(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per utterance, its speaker's neutral anchor (n_mels + 1,) from all their Neutral utterances
        of the split (engine.anchor.neutral_anchor on Ee's inputs, the log-mel and pitch rows), and the
        mean over the speakers (the centre); a speaker without Neutral utterances gets the centre."""
        by_speaker = {}
        for s in sorted({u.speaker for u in self.utts}):
            idx = [i for i, u in enumerate(self.utts) if u.speaker == s and u.label == 0]
            by_speaker[s] = neutral_anchor([self.mels[i].numpy() for i in idx], [self.pitch[i].numpy() for i in idx])
        known = [a for a in by_speaker.values() if a is not None]
        centre = np.mean(known, axis=0).astype(np.float32) if known else np.zeros(self.spec.n_mels + 1, np.float32)
        anchors = {s: torch.from_numpy(centre if a is None else a) for s, a in by_speaker.items()}
        return [anchors[u.speaker] for u in self.utts], torch.from_numpy(centre)

    def mel_in(self, i: int) -> torch.Tensor:
        """(n_mels, T) utterance i's log-mel with its speaker's neutral level and tilt (derived on
        demand: a second copy of every log-mel would double the corpus's largest array)."""
        return self.mels[i] - self.offsets[i]

    def degraded_inputs(self, i: int, frames: int, start: int, rng: np.random.Generator):
        """(mel_in (n_mels, frames), pitch_in (4, frames)) of utterance i's crop as a microphone records it.

        The crop is degraded with AUGMENT_CONTEXT_FRAMES before it (zeros before the
        utterance, as the engine's stream starts) so that the analysis windows and the
        tracker's state of its first frames see degraded audio too; babble comes from
        other utterances of the split.
        """
        hop, ctx = self.spec.hop, AUGMENT_CONTEXT_FRAMES
        padded = np.pad(self.audio[i], (ctx * hop, frames * hop))
        segment = padded[start * hop:(start + ctx + frames) * hop]
        others = [self.audio[int(j)] for j in rng.integers(len(self.audio), size=BABBLE_POOL)]
        y, _ = degrade(segment, self.spec.sample_rate, rng, self.augment, others)
        with torch.no_grad():
            mel = self._logmel(torch.from_numpy(y)[None])[0, :, ctx:] - self.offsets[i]
        pitch = deemotionalised(pitch_offline(y, self.spec), self._registers.get(self.utts[i].speaker))
        return mel, torch.from_numpy(pitch[:, ctx:])

    def alignment(self, i: int, j: int) -> np.ndarray:
        """(T_i,) the frame of utterance j paired with each frame of utterance i (cached; the
        identity for j == i)."""
        if (i, j) not in self._alignments:
            self._alignments[i, j] = (np.arange(self.mels[i].shape[1]) if i == j
                                      else aligned_frames(self.mel_in(i).numpy(), self.mel_in(j).numpy()))
        return self._alignments[i, j]

    def parallel(self, i: int, j: int, frames: int, start: int) -> dict[str, torch.Tensor | int]:
        """Utterance j on the frames of utterance i's crop (`item(i, frames, start)`):
        {parallel_mel (n_mels, frames), parallel_pitch (2, frames): j's log-mel and log-F0 at the frames
        paired with i's (the pitch delayed by the lookahead as `item`'s), voiced where both are;
        partner_mel, partner_pitch, partner_lengths: j's own crop from the frame paired with `start`}.
        """
        idx, lag = self.alignment(i, j), self.spec.lookahead_frames
        valid = max(0, min(frames, len(idx) - start))
        t = np.arange(start, start + valid)
        # pitch targets are delayed by `lag`: model frame t renders source frame t - lag, whose partner
        # frame idx[t - lag] is delayed column idx[t - lag] + lag (column 0: the delay's unvoiced fill)
        source = t - lag
        paired = np.where(source >= 0, idx[np.maximum(source, 0)] + lag, 0)
        pitch = self.pitch[j][:, np.minimum(paired, self.pitch[j].shape[1] - 1)].clone()
        pitch[1] *= self.pitch[i][1, start:start + valid]
        floor = float(np.log(self.spec.log_floor))
        n = self.mels[j].shape[1]
        own = self.item(j, frames, int(min(idx[min(start, len(idx) - 1)], max(0, n - frames))))
        return {"parallel_mel": _padded(self.mels[j][:, idx[t]], frames, floor),
                "parallel_pitch": _held(pitch, frames, voiced_row=1),
                "partner_mel": own["mel"], "partner_pitch": own["pitch"], "partner_lengths": own["valid"]}

    def noise_inputs(self, frames: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-mel (n_mels, frames), tracker features (4, frames)) of noise alone, as the engine
        computes them from a microphone in a quiet moment: coloured noise (white to brown), with
        mains hum on NOISE_HUM_P of the crops, at a level drawn from NOISE_LEVELS_DBFS, analysed
        with AUGMENT_CONTEXT_FRAMES before the crop."""
        rate, ctx = self.spec.sample_rate, AUGMENT_CONTEXT_FRAMES
        n = (ctx + frames) * self.spec.hop
        y = coloured_noise(n, rng.uniform(0.0, 2.0), rng)
        if rng.random() < NOISE_HUM_P:
            y = y + rng.uniform(0.2, 1.0) * hum(n, rate, rng)
        y = (y * 10 ** (rng.uniform(*NOISE_LEVELS_DBFS) / 20) / np.sqrt(np.mean(y ** 2))).astype(np.float32)
        with torch.no_grad():
            mel = self._logmel(torch.from_numpy(y)[None])[0, :, ctx:]
        return mel, torch.from_numpy(pitch_offline(y, self.spec)[:, ctx:])

    def __len__(self) -> int:
        return len(self.utts)

    def item(self, i: int, frames: int | None = None, start: int = 0) -> dict[str, torch.Tensor | int]:
        """Utterance i cropped to `frames` at `start`: {mel, mel_in, audio, pitch_in, pitch, envelope, valid}.

        frames=None takes the whole utterance. Crops past the end are padded: mel with the log
        floor, audio and voicing with zeros, log-F0 and register rows with their last value.
        """
        mel, hop = self.mels[i], self.spec.hop
        frames = mel.shape[1] if frames is None else frames
        valid = max(0, min(frames, mel.shape[1] - start))
        span = slice(start, start + valid)
        floor = float(np.log(self.spec.log_floor))
        out = {"mel": _padded(mel[:, span], frames, floor),
               "mel_in": _padded(mel[:, span] - self.offsets[i], frames, floor),
               "audio": torch.zeros(frames * hop),
               "pitch_in": _held(self.pitch_in[i][:, span], frames, voiced_row=0),
               "pitch": _held(self.pitch[i][:, span], frames, voiced_row=1),
               "envelope": (_padded(self.envelope[i][:, span], frames, 0.0) if self.envelope is not None
                            else torch.zeros(0, frames)),
               "valid": valid}
        out["audio"][: valid * hop] = torch.from_numpy(self.target_audio[i][start * hop:(start + valid) * hop])
        return out


def _padded(x: torch.Tensor, frames: int, value: float) -> torch.Tensor:
    """x (C, t) padded on the right with `value` to (C, frames)."""
    return torch.nn.functional.pad(x, (0, frames - x.shape[1]), value=value)


def _held(x: torch.Tensor, frames: int, voiced_row: int) -> torch.Tensor:
    """Pitch rows (C, t) padded to (C, frames): every row holds its last value, the voicing row is 0."""
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], frames)
    out = torch.cat([x, x[:, -1:].expand(-1, frames - x.shape[1])], dim=1)
    out[voiced_row, x.shape[1]:] = 0.0
    return out


def _partner(rng, labels, speakers, i, same_label: bool) -> int:
    """Index of another item with the same label (and another speaker, when possible) or another label."""
    n = len(labels)
    if same_label:
        pool = [j for j in range(n) if j != i and labels[j] == labels[i] and speakers[j] != speakers[i]]
        pool = pool or [j for j in range(n) if j != i and labels[j] == labels[i]] or [i]
    else:
        pool = [j for j in range(n) if labels[j] != labels[i]] or [i]
    return int(pool[rng.integers(len(pool))])


TRAIN, VALIDATION, AUGMENT, PARALLEL, NOISE = 0, 1, 2, 3, 4
"""Independent random streams for training and validation batches, for degrading training inputs,
for choosing parallel partners and for the noise-alone crops."""
AUGMENT_CONTEXT_FRAMES = 20
"""Frames degraded and analysed before a crop (200 ms at 10 ms hops: the longest analysis window and
the pitch tracker's settling)."""
BABBLE_POOL = 6
NOISE_ITEMS, NOISE_HUM_P, NOISE_LEVELS_DBFS = 4, 0.3, (-70.0, -20.0)
"""Noise-alone crops per batch (Stage II's noise losses: the generator must render them silent and
unvoiced), how often they carry hum, and their level range (a quiet room's floor to loud fan noise:
the bundled-model test plays white noise at -26 and -40 dBFS). Nothing else in training shows the
generator noise alone: two Stage II runs of one recipe voiced white noise in up to 0.16 and 0.89 of
their frames."""


def draw_batch(corpus: MelCorpus, batch_size: int, frames: int, seed: int, step: int,
               rank: int = 0, stream: int = TRAIN) -> Batch:
    """A balanced batch: emotions cycle over the batch, utterance and crop drawn at random."""
    rng = np.random.default_rng([seed, stream, step, rank])
    present = [k for k, idx in enumerate(corpus.by_label) if len(idx)]
    chosen = [int(rng.choice(corpus.by_label[present[b % len(present)]])) for b in range(batch_size)]
    items, starts = [], []
    for b, i in enumerate(chosen):
        n = corpus.mels[i].shape[1]
        start = int(rng.integers(max(1, n - frames + 1)))
        starts.append(start)
        items.append(corpus.item(i, frames, start))
        augment_rng = np.random.default_rng([seed, AUGMENT, step, rank, b])
        if corpus.augment is not None and stream == TRAIN and augment_rng.random() < corpus.augment.p:
            items[-1]["mel_in"], items[-1]["pitch_in"] = corpus.degraded_inputs(i, frames, start, augment_rng)
    noise = _conversion_rows(corpus, items, chosen, starts, frames, seed, step, rank, stream)
    labels, speakers = corpus.labels[chosen], corpus.speakers[chosen]
    idx = range(batch_size)
    rows = ("mel", "mel_in", "audio", "pitch_in", "pitch", "envelope", "parallel_mel", "parallel_pitch",
            "partner_mel", "partner_pitch")
    stacked = {k: torch.stack([it[k] for it in items]) for k in rows}
    return Batch(
        **stacked,
        partner_lengths=torch.tensor([it["partner_lengths"] for it in items]),
        noise_mel=noise[0], noise_pitch=noise[1],
        emotion_offset=torch.stack([corpus.emotion_offsets[i] for i in chosen]),
        anchor=torch.stack([corpus.anchors[i] for i in chosen]),
        lengths=torch.tensor([it["valid"] for it in items]),
        labels=torch.from_numpy(labels).long(),
        speakers=torch.from_numpy(speakers).long(),
        positive=torch.tensor([_partner(rng, labels, speakers, i, True) for i in idx]),
        negative=torch.tensor([_partner(rng, labels, speakers, i, False) for i in idx]),
        reference=torch.tensor([_partner(rng, labels, speakers, i, False) for i in idx]),
    )


def _conversion_rows(corpus: MelCorpus, items: list[dict], chosen: list[int], starts: list[int], frames: int,
                     seed: int, step: int, rank: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adds each item's parallel partner rows (MelCorpus.parallel) to `items` and returns the noise-alone
    crops (noise_mel (N, n_mels, frames), noise_pitch (N, 4, frames)), each from its own random
    stream; without corpus.conversion, empty rows and N = 0 (no alignment, no noise analysis)."""
    if not corpus.conversion:
        for it in items:
            it.update({"parallel_mel": it["mel"][:0], "parallel_pitch": it["pitch"][:0], "partner_mel": it["mel"][:0],
                       "partner_pitch": it["pitch"][:0], "partner_lengths": 0})
        return (torch.zeros(0, corpus.spec.n_mels, frames), torch.zeros(0, N_FEATURES, frames))
    partner_rng = np.random.default_rng([seed, PARALLEL, stream, step, rank])
    for it, i, start in zip(items, chosen, starts):
        pool = corpus.partners[i]
        j = int(pool[partner_rng.integers(len(pool))]) if len(pool) else i
        it.update(corpus.parallel(i, j, frames, start))
    noise_rng = np.random.default_rng([seed, NOISE, stream, step, rank])
    noise = [corpus.noise_inputs(frames, noise_rng) for _ in range(NOISE_ITEMS)]
    return torch.stack([m for m, _ in noise]), torch.stack([p for _, p in noise])
