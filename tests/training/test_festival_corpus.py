"""Festival voices in the corpus (corpus v3): one utterance per voice family, the reserved-voice guard,
and the metadata of a Festival speaker. Skipped with the reason where Festival or a voice is not installed."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import soundfile as sf

from engine.errors import EVCError
from engine.signal import EMOTIONS
from training.corpus import festival, synth
from training.corpus.profiles import (
    CORPUS_SPEAKERS,
    FESTIVAL_VOICES,
    PROFILES,
    SAMPLE_RATE,
    TARGET_RMS_DB,
    FestivalSpeaker,
    Timbre,
)

pytest.importorskip("pyworld")
FAMILIES = {"czech": "czech_dita", "italian": "lp_diphone", "finnish": "suo_fi_lj_diphone",
            "russian": "msu_ru_nsh_clunits", "catalan": "upc_ca_ona_hts"}
TEXT = "The old lighthouse keeper counted seven ships before the storm."


@pytest.fixture(scope="module")
def installed() -> set[str]:
    if shutil.which("text2wave") is None:
        pytest.skip("no festival program (apt-get install festival festvox-...)")
    return set(festival.Festival().voices())


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("emotion", ["Neutral", "Angry", "Sad"])
def test_each_voice_family_renders_speech_at_the_corpus_rate_and_level(installed, family, emotion):
    voice = FAMILIES[family]
    if voice not in installed:
        pytest.skip(f"Festival voice {voice} is not installed")
    profile = PROFILES[emotion]
    y = synth.render_utterance(FestivalSpeaker(voice), TEXT, profile, 1.0)
    assert y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 0.98 + 1e-6
    seconds = y.size / SAMPLE_RATE
    assert 1.5 < seconds < 12.0, seconds
    if np.abs(y).max() < 0.98 - 1e-3:  # the limiter did not act: the level is the profile's
        assert _rms_db(y) == pytest.approx(TARGET_RMS_DB + profile.gain_db, abs=0.05)
    neutral = synth.render_utterance(FestivalSpeaker(voice), TEXT, PROFILES["Neutral"], 1.0)
    expected = 1 / (1 + profile.rate / 100)  # the rate offset, imposed through WORLD
    assert y.size / neutral.size == pytest.approx(expected, rel=0.01)


def test_a_timbre_makes_another_speaker_of_a_voice(installed):
    if "czech_dita" not in installed:
        pytest.skip("Festival voice czech_dita is not installed")
    from training.corpus.world_render import analyse

    base = synth.render_utterance(FestivalSpeaker("czech_dita"), TEXT, PROFILES["Neutral"], 0.0)
    low = synth.render_utterance(FestivalSpeaker("czech_dita", Timbre(0.93, 0.9, 0.25)), TEXT, PROFILES["Neutral"], 0.0)
    f0_base, f0_low = (analyse(x.astype(np.float64), SAMPLE_RATE)[0] for x in (base, low))
    ratio = np.median(f0_low[f0_low > 0]) / np.median(f0_base[f0_base > 0])
    assert ratio == pytest.approx(0.9, rel=0.04)


def test_a_festival_speaker_writes_its_file_and_metadata(installed, tmp_path):
    index = CORPUS_SPEAKERS.index(FestivalSpeaker("czech_dita"))
    if "czech_dita" not in installed:
        pytest.skip("Festival voice czech_dita is not installed")
    row = synth._job((str(tmp_path), 0, index, 1, 3, 20, TEXT))
    name = f"{synth.FIRST_SPEAKER + index:04d}"
    path = tmp_path / name / "Angry" / row["split"] / f"{row['utt_id']}.wav"
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and audio.ndim == 1
    assert row["speaker"] == name and row["emotion"] == EMOTIONS[1] and row["voice"] == "festival:czech_dita"
    assert (row["warp"], row["register"], row["breath"], row["base_pitch"]) == (1.0, 1.0, 0.0, "")
    assert 0.3 <= row["strength"] <= 1.0 and row["rms_db"] == pytest.approx(_rms_db(audio), abs=0.05)
    assert row["pitch_pct"] == round(PROFILES["Angry"].pitch * row["strength"])


def test_reserved_voices_are_refused_by_digest(monkeypatch):
    digest = hashlib.sha256(b"some_voice").hexdigest()[:16]
    monkeypatch.setattr(festival, "RESERVED", frozenset({digest}))
    assert festival.reserved("voice_some_voice") and festival.reserved("SOME_VOICE")
    assert not festival.reserved("czech_dita")
    if shutil.which("text2wave"):
        with pytest.raises(EVCError, match="reserved for independent evaluation"):
            festival.Festival().synth(TEXT, "some_voice")


def test_no_corpus_voice_is_reserved():
    assert not [v for v in FESTIVAL_VOICES if festival.reserved(v)]
    assert len(CORPUS_SPEAKERS) >= 40 and len(set(CORPUS_SPEAKERS)) == len(CORPUS_SPEAKERS)
