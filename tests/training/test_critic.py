"""The mel critic and Stage II's adversarial terms: shapes, a neutral start, the emotion's part in the
score, and each loss reaching only its own network."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint
from training.config import load_train_config
from training.data.batches import MelCorpus, draw_batch
from training.loop import STAGE_NETWORKS, train
from training.models.critic import MelCritic
from training.stages import Stage2


def _grad_sum(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_critic_scores_every_frame_and_starts_at_zero():
    torch.manual_seed(0)
    critic = MelCritic(n_mels=16, n_emotions=5, hidden=8)
    mel = torch.randn(3, 16, 40) * 4.0
    scores = critic(mel, torch.tensor([0, 2, 4]))
    assert scores.shape == (3, 40)
    assert scores.abs().max() == 0.0


def test_critic_score_depends_on_the_emotion_through_its_projection_only():
    """Two labels on the same frames differ by exactly the inner product of the frames' features with
    the difference of the labels' vectors; frames beyond the receptive field do not move a score."""
    torch.manual_seed(0)
    critic = MelCritic(n_mels=16, n_emotions=5, hidden=8, n_layers=3, kernel_size=3)
    for p in critic.parameters():
        torch.nn.init.normal_(p, std=0.3)
    mel = torch.randn(1, 16, 60)
    a, b = critic(mel, torch.tensor([1])), critic(mel, torch.tensor([3]))
    assert (a - b).abs().max() > 1e-3
    far = mel.clone()
    far[..., 40:] += 5.0  # the receptive field is 15 frames: frame 30 sees 23..37
    assert torch.allclose(critic(far, torch.tensor([1]))[:, :33], a[:, :33])
    assert not torch.allclose(critic(far, torch.tensor([1]))[:, 33:], a[:, 33:])


@pytest.mark.slow
def test_stage2_adversarial_terms_reach_only_their_own_network(tiny_corpus):
    """"critic" trains the critic and nothing else; "adv" trains the generator through the critic's
    detached weights (the encoders and the critic get no gradient)."""
    torch.manual_seed(0)
    cfg = load_train_config("tiny")
    models = build_models(cfg.models, SignalSpec(), (*STAGE_NETWORKS["stage2"], "mel_critic"))
    for p in models["mel_critic"].out.parameters():
        torch.nn.init.normal_(p, std=0.1)  # past the zero start, so the generator's gradient is non-zero
    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=60, conversion=True)
    losses = Stage2(models)(draw_batch(corpus, 6, 64, seed=3, step=0))
    losses["critic"].backward()
    assert _grad_sum(models["mel_critic"]) > 0.0
    assert all(_grad_sum(models[n]) == 0.0 for n in STAGE_NETWORKS["stage2"])
    for m in models.values():
        m.zero_grad(set_to_none=True)
    losses["adv"].backward()
    assert _grad_sum(models["generator"]) > 0.0
    assert _grad_sum(models["mel_critic"]) == 0.0
    assert _grad_sum(models["content_encoder"]) == _grad_sum(models["emotion_encoder"]) == 0.0


@pytest.mark.slow
def test_stage2_builds_and_saves_the_critic_only_when_it_trains_it(tiny_corpus, tmp_path):
    """A Stage II whose trainable networks name the critic trains it beside the generator (both
    saved, the critic's scores no longer zero); the tiny recipe without it saves no critic."""
    cfg = load_train_config("tiny")
    s1_cfg = dataclasses.replace(cfg, stages={**cfg.stages, "stage1": dataclasses.replace(
        cfg.stages["stage1"], steps=2)}, ckpt_every=2, log_every=1)
    s1 = train("stage1", s1_cfg, tiny_corpus, tmp_path / "s1", progress=False)
    weights = {**cfg.stages["stage2"].weights, "adv": 0.1, "critic": 1.0}
    for name, trainable, extra in (("plain", ("generator",), {}), ("critic", ("generator", "mel_critic"), weights)):
        stage2 = dataclasses.replace(cfg.stages["stage2"], steps=3, trainable=trainable,
                                     weights=extra or cfg.stages["stage2"].weights)
        short = dataclasses.replace(cfg, stages={**cfg.stages, "stage2": stage2}, ckpt_every=3, log_every=1)
        result = train("stage2", short, tiny_corpus, tmp_path / name, init=s1["checkpoint"], progress=False)
        saved = load_checkpoint(result["checkpoint"], "stage2")["models"]
        assert ("mel_critic" in saved) == (name == "critic"), sorted(saved)
    assert saved["mel_critic"]["embed.weight"].abs().max() > 0.0
