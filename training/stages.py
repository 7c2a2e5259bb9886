"""The training stages as objectives: modules whose forward maps a batch to named losses.

One loop (training/loop.py) runs every stage; what differs between stages is data
(the StageConfig: steps, trainable networks, weights) and the objective below.
Each objective is an nn.Module so DistributedDataParallel can wrap it whole.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.signal import SignalSpec
from training import losses as L
from training.data.batches import Batch
from training.features import LogMel


class Stage1(nn.Module):
    """Self-reconstruction, emotion classification, contrastive strength, cue-weighted disentanglement."""

    def __init__(self, models: dict[str, nn.Module], margin: float = 0.2):
        super().__init__()
        self.ec, self.ee, self.rec = models["content_encoder"], models["emotion_encoder"], models["recognition"]
        self.gen, self.adv = models["generator"], models["adversary"]
        self.margin = margin

    def forward(self, b: Batch) -> dict[str, torch.Tensor]:
        content = self.ec(b.mel)
        out = self.rec(self.ee(b.mel, b.lengths), b.lengths)
        losses = {
            "rec": L.mel_l1(self.gen(content, out.embedding), b.mel, b.lengths),
            "cls": L.emotion_ce(out.logits, b.labels),
            "dis": L.cue_weighted_adversarial(self.adv(content), b.labels, out.cue.detach(), b.lengths),
        }
        parts = self.strength_parts(out.embedding, b)
        losses["str"] = sum(parts.values())
        losses.update({f"str_{k}": v.detach() for k, v in parts.items()})
        return losses

    def strength_parts(self, e: torch.Tensor, b: Batch) -> dict[str, torch.Tensor]:
        """Triplet across speakers, ranking neutral < emotional, mixup for intermediate strengths.

        Each emotional item is paired with a neutral item of the batch (cycling); a batch
        without both kinds contributes the triplet alone.
        """
        neutral = torch.nonzero(b.labels == 0).flatten()
        emotional = torch.nonzero(b.labels != 0).flatten()
        if not (len(neutral) and len(emotional)):
            return {"triplet": L.triplet_strength(e, e[b.positive], e[b.negative], self.margin)}
        e_neu = e[neutral[torch.arange(len(emotional), device=e.device) % len(neutral)]]
        return L.contrastive_strength_loss(self.rec, e, e[b.positive], e[b.negative], e_neu, e[emotional],
                                           self.margin)


class Stage2(nn.Module):
    """Conversion adaptation: G learns from multi-view consistency with frozen Ec, Ee and R."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.ec, self.ee, self.rec = models["content_encoder"], models["emotion_encoder"], models["recognition"]
        self.gen = models["generator"]

    def forward(self, b: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            content = self.ec(b.mel)
            own = self.rec(self.ee(b.mel, b.lengths), b.lengths)
        e_ref, s_ref = own.embedding[b.reference], own.strength[b.reference]
        converted = self.gen(content, e_ref)
        seen = self.rec(self.ee(converted, b.lengths), b.lengths)
        return {
            "rec": L.mel_l1(self.gen(content, own.embedding), b.mel, b.lengths),
            "cc": L.content_consistency(self.ec(converted), content, b.lengths),
            "ecc": L.emotion_category_consistency(seen.logits, b.labels[b.reference]),
            "esc": L.emotion_strength_consistency(seen.strength, s_ref),
        }


def _waveform(audio: torch.Tensor) -> torch.Tensor:
    """(B, N) or (B, 1, N) → (B, 1, N), the discriminators' input."""
    return audio.reshape(audio.shape[0], 1, -1)


class VocoderGenerator(nn.Module):
    """Causal HiFi-GAN generator: mel L1 + multi-resolution STFT + adversarial + feature matching."""

    def __init__(self, models: dict[str, nn.Module], spec: SignalSpec):
        super().__init__()
        self.voc, self.mpd, self.msd = models["vocoder"], models["mpd"], models["msd"]
        self.logmel = LogMel(spec)

    def forward(self, b: Batch, adversarial: bool = True) -> dict[str, torch.Tensor]:
        """adversarial=False (the warm-up): spectral losses only, adv and fm reported as 0,
        so the discriminators cost nothing while the generator learns the envelope."""
        fake = _waveform(self.voc(b.mel))
        real = _waveform(b.audio)
        losses = {"mel": L.mel_l1(self.logmel(fake[:, 0]), self.logmel(real[:, 0]), b.lengths),
                  "stft": L.multi_resolution_stft(fake[:, 0], real[:, 0])}
        if not adversarial:
            zero = fake.new_zeros(())
            return {**losses, "adv": zero, "fm": zero}
        adv, fm = [], []
        for disc in (self.mpd, self.msd):
            fake_logits, fake_feats = disc(fake)
            with torch.no_grad():
                _, real_feats = disc(real)
            adv.append(L.lsgan_generator(fake_logits))
            fm.append(L.feature_matching(real_feats, fake_feats))
        losses["adv"], losses["fm"] = sum(adv), sum(fm)
        return losses


class VocoderDiscriminator(nn.Module):
    """Multi-period and multi-scale discriminators, least-squares loss on real vs generated audio."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.voc, self.mpd, self.msd = models["vocoder"], models["mpd"], models["msd"]

    def forward(self, b: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = _waveform(self.voc(b.mel))
        real = _waveform(b.audio)
        losses = {}
        for name, disc in (("mpd", self.mpd), ("msd", self.msd)):
            losses[f"d_{name}"] = L.lsgan_discriminator(disc(real)[0], disc(fake)[0])
        return losses
