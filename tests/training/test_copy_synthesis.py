"""Copy-synthesis scores (MCD, log-F0 RMSE): zero for a perfect vocoder, large for a random one, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.signal import SignalSpec
from support.tiny_checkpoints import write_checkpoint
from training.checkpoint import load_checkpoint
from training.recipes.copy_synthesis import copy_synthesis_scores, main, spread, vocoder_render

SR = 16000


def test_spread_takes_n_distinct_utterances_across_speakers(tiny_corpus):
    paths = spread(tiny_corpus, "test", 6)
    assert len(set(paths)) == 6
    assert len({p.parts[-4] for p in paths}) >= 3  # <speaker>/<Emotion>/test/<utt>.wav


def test_a_perfect_vocoder_scores_zero_and_a_random_one_does_not(tiny_corpus, tmp_path):
    paths = spread(tiny_corpus, "test", 3)
    perfect = np.array(copy_synthesis_scores(lambda audio: audio.copy(), paths, SR))
    assert perfect.shape == (3, 2) and np.abs(perfect).max() < 1e-6
    render = vocoder_render(load_checkpoint(write_checkpoint(tmp_path / "voc.pt", "vocoder"), "vocoder"), SignalSpec())
    mcds, _ = np.array(copy_synthesis_scores(render, paths, SR)).T
    assert all(np.isfinite(mcds)) and min(mcds) > 3.0, mcds


def test_main_prints_one_line_per_checkpoint(tiny_corpus, tmp_path, capsys):
    main([str(tiny_corpus), str(write_checkpoint(tmp_path / "voc.pt", "vocoder")), "--n", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "copy-synthesis MCD median" in out[0] and "log-F0 RMSE median" in out[0]
    assert "over 2 test utterances" in out[0]


@pytest.mark.parametrize("bad", ["corpus", "checkpoint"])
def test_bad_input_is_a_one_line_exit(tiny_corpus, tmp_path, bad):
    corpus = tmp_path / "none" if bad == "corpus" else tiny_corpus
    ckpt = tmp_path / "voc.pt" if bad == "checkpoint" else write_checkpoint(tmp_path / "voc.pt", "vocoder")
    if bad == "checkpoint":
        ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        main([str(corpus), str(ckpt), "--n", "2"])
    assert str(e.value).startswith("error: ") and "\n" not in str(e.value)
