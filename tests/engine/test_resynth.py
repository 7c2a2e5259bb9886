"""engine.resynth on a model without a vocoder graph (its parity with the PyTorch vocoder is
in tests/export/test_export.py, which has an export to run it on)."""

from __future__ import annotations

import pytest

from engine.errors import ModelError
from engine.resynth import CopySynthesis
from support.toy_model import write_toy_model


def test_a_model_without_a_vocoder_graph_is_a_one_line_model_error(tmp_path):
    """The toy model, like an export from before vocoder.onnx, has step and encoder graphs only."""
    with pytest.raises(ModelError, match="no 'vocoder' graph") as err:
        CopySynthesis(write_toy_model(tmp_path / "toy"))
    assert "\n" not in str(err.value)
