"""Emotion encoder, recognition network (cue, embedding, Rc, Rs) and the gradient-reversal adversary."""

from __future__ import annotations

import pytest
import torch

from training.losses import emotion_ce
from training.models.adversary import ContentEmotionClassifier, grad_reverse
from training.models.emotion_encoder import EmotionEncoder
from training.models.frames import lifter_matrix
from training.models.recognition import EmotionOutput, Recognition

N_MELS, DIM, K = 80, 16, 5


@pytest.fixture
def nets():
    torch.manual_seed(0)
    return EmotionEncoder(N_MELS, channels=32, dim=DIM, n_layers=2).eval(), Recognition(DIM, K, 8).eval()


def padded_batch(lengths: list[int], fill: float = 7.0, seed: int = 1) -> torch.Tensor:
    """Random log-mels (B, N_MELS, max(lengths)) whose frames beyond each length hold `fill`."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(len(lengths), N_MELS, max(lengths), generator=g) * 2 - 5
    for b, n in enumerate(lengths):
        mel[b, :, n:] = fill
    return mel


def padded_pitch(lengths: list[int], fill: float = 7.0, seed: int = 2) -> torch.Tensor:
    """Random pitch rows (B, 2, max(lengths)), [natural-log F0 around 150 Hz, voicing in {0, 1}],
    whose frames beyond each length hold `fill`."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    lf0 = 5.0 + 0.2 * torch.randn(B, 1, T, generator=g)
    voiced = (torch.rand(B, 1, T, generator=g) < 0.6).float()
    pitch = torch.cat([lf0, voiced], dim=1)
    for b, n in enumerate(lengths):
        pitch[b, :, n:] = fill
    return pitch


def test_encoder_shapes_and_zero_padding(nets):
    ee, _ = nets
    mel, lengths = padded_batch([37, 50, 12]), torch.tensor([37, 50, 12])
    F = ee(mel, padded_pitch([37, 50, 12]), lengths)
    assert F.shape == (3, DIM, 50)
    assert F[0, :, 37:].abs().max() == 0 and F[2, :, 12:].abs().max() == 0
    assert F[0, :, :37].abs().mean() > 0.1


def test_the_anchor_moves_the_reference_to_the_average_voice(nets):
    """A voice 4 nepers louder, brighter by a slope over the bands and 0.3 higher in log-F0 (+30 %)
    gives the same features as the original once each is read from its own neutral voice; read
    as it is, it does not. The centre as anchor is no move at all."""
    ee, _ = nets
    ee.centre.copy_(torch.cat([torch.full((N_MELS,), -5.0), torch.tensor([5.0])]))
    mel, pitch = padded_batch([40]), padded_pitch([40])
    voice = torch.cat([-5.0 + 0.5 * torch.randn(N_MELS), torch.tensor([5.1])])[None]
    move = torch.cat([4.0 + torch.linspace(0, 2, N_MELS), torch.tensor([0.3])])[None]
    moved_mel = mel + move[:, :N_MELS, None]
    moved_pitch = torch.cat([pitch[:, :1] + 0.3, pitch[:, 1:]], dim=1)
    with torch.no_grad():
        own = ee(mel, pitch, anchor=voice)
        assert (ee(moved_mel, moved_pitch, anchor=voice + move) - own).abs().max() < 1e-4
        assert (ee(moved_mel, moved_pitch, anchor=voice) - own).abs().max() > 0.1
        assert (ee(mel, pitch, anchor=ee.centre[None]) - ee(mel, pitch)).abs().max() < 1e-6


def test_the_centre_is_saved_with_the_weights(nets):
    ee, _ = nets
    ee.centre.fill_(2.5)
    fresh = EmotionEncoder(N_MELS, channels=32, dim=DIM, n_layers=2)
    fresh.load_state_dict(ee.state_dict())
    assert torch.equal(fresh.centre, ee.centre)


def test_encoder_is_local_with_the_stated_receptive_field(nets):
    """Frame t depends on frames t ± (kernel_size − 1)·2^n_layers / 2 only (±8 for kernel 5, 2 layers):
    the cue can only localise emotion if silent frames cannot borrow other frames' evidence.
    The same holds for the pitch rows."""
    ee, _ = nets
    mel, pitch = padded_batch([60]), padded_pitch([60])
    for moved in ("mel", "pitch"):
        inputs = {"mel": mel.clone(), "pitch": pitch.clone()}
        inputs[moved][0, :, 30] += 3.0
        with torch.no_grad():
            diff = (ee(inputs["mel"], inputs["pitch"]) - ee(mel, pitch)).abs().amax(dim=(0, 1))
        changed = torch.nonzero(diff > 0).flatten()
        assert changed.min() == 30 - 8 and changed.max() == 30 + 8, moved


def test_encoder_reads_the_log_mel_through_the_lifter(nets):
    """What the lifter drops (the harmonic ripple: quefrencies past LIFTER_KEEP) changes
    nothing: pitch reaches Ee through its own rows only."""
    ee, _ = nets
    mel, pitch = padded_batch([40]), padded_pitch([40])
    projection = torch.from_numpy(lifter_matrix(N_MELS))
    ripple = torch.randn(1, N_MELS, 40) * 3.0
    dropped = ripple - torch.matmul(projection, ripple)  # the part the lifter removes
    with torch.no_grad():
        assert (ee(mel + dropped, pitch) - ee(mel, pitch)).abs().max() < 1e-4
        assert (ee(mel + ripple, pitch) - ee(mel, pitch)).abs().max() > 0.1


def test_padding_changes_nothing(nets):
    """Each item of a padded batch gives the features and outputs of the same item alone, unpadded."""
    ee, rec = nets
    lens = [37, 50, 12]
    mel, pitch, lengths = padded_batch(lens), padded_pitch(lens), torch.tensor(lens)
    with torch.no_grad():
        F = ee(mel, pitch, lengths)
        out = rec(F, lengths)
        for b, n in enumerate(lens):
            F1 = ee(mel[b:b + 1, :, :n], pitch[b:b + 1, :, :n])
            one = rec(F1)
            assert (F[b:b + 1, :, :n] - F1).abs().max() < 1e-5
            for name in ("embedding", "logits", "strength"):
                assert (getattr(out, name)[b] - getattr(one, name)[0]).abs().max() < 1e-5, name
            assert (out.cue[b, :n] - one.cue[0]).abs().max() < 1e-6


def test_recognition_ignores_nonzero_padded_features(nets):
    _, rec = nets
    F = torch.randn(2, DIM, 30)
    lengths = torch.tensor([30, 18])
    junk = F.clone()
    junk[1, :, 18:] = 100.0
    with torch.no_grad():
        a, b = rec(F, lengths), rec(junk, lengths)
    for name in EmotionOutput._fields:
        assert (getattr(a, name) - getattr(b, name)).abs().max() < 1e-6, name


def test_cue_is_a_distribution_over_valid_frames(nets):
    _, rec = nets
    F = torch.randn(3, DIM, 40) * 3
    lengths = torch.tensor([40, 25, 1])
    with torch.no_grad():
        out = rec(F, lengths)
    assert out.embedding.shape == (3, DIM) and out.logits.shape == (3, K)
    assert out.strength.shape == (3,) and out.cue.shape == (3, 40)
    assert torch.allclose(out.cue.sum(-1), torch.ones(3), atol=1e-6)
    assert out.cue[1, 25:].abs().max() == 0 and out.cue[2, 1:].abs().max() == 0
    assert out.cue[2, 0] == pytest.approx(1.0)
    assert ((out.strength >= 0) & (out.strength <= 1)).all()


def test_embedding_is_cue_weighted_pooling_and_rc_rs_act_on_it(nets):
    _, rec = nets
    F = torch.randn(2, DIM, 20)
    with torch.no_grad():
        out = rec(F)
        assert torch.allclose(out.embedding, (F * out.cue[:, None]).sum(-1), atol=1e-6)
        assert torch.allclose(out.logits, out.embedding @ rec.rc.weight.T + rec.rc.bias, atol=1e-6)
        assert torch.allclose(rec.classify(out.embedding), out.logits)
        assert torch.allclose(rec.strength(out.embedding), out.strength)


def test_a_frame_with_equal_evidence_for_every_class_weighs_like_silence(nets):
    """Class-centred CAM: a frame raising all classes equally (W v = c·1) scores as a zero frame."""
    _, rec = nets
    W = rec.rc.weight.detach()
    v = torch.linalg.lstsq(W, torch.full((K, 1), 5.0)).solution[:, 0]  # D > K: exact solution
    assert torch.allclose(W @ v, torch.full((K,), 5.0), atol=1e-4)
    F = torch.randn(1, DIM, 10)
    F[0, :, 3] = 0.0
    F[0, :, 7] = v
    with torch.no_grad():
        cue = rec(F).cue[0]
    assert cue[7] == pytest.approx(float(cue[3]), rel=1e-4)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        EmotionEncoder(kernel_size=4)
    with pytest.raises(ValueError, match="temperature"):
        Recognition(8, temperature=0.0)


def test_bfloat16_autocast_keeps_a_float32_cue(nets):
    ee, rec = nets
    mel, pitch, lengths = padded_batch([30, 20]), padded_pitch([30, 20]), torch.tensor([30, 20])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = rec(ee(mel, pitch, lengths), lengths)
    assert out.cue.dtype == torch.float32
    assert torch.allclose(out.cue.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(out.embedding.float()).all() and torch.isfinite(out.logits.float()).all()


def test_toy_cue_finds_the_emotional_frames():
    """On features where emotional frames carry a class direction and the rest is near-zero noise,
    Rc trained on the pooled logits alone classifies and its cue lands on the emotional frames
    (a uniform cue would put about 0.3 there; 100 steps reach about 0.82, 200 about 0.9)."""
    torch.manual_seed(0)
    B, T, D = 100, 40, DIM
    labels = torch.arange(B) % K
    directions = torch.nn.functional.normalize(torch.randn(K, D), dim=-1) * 2.0
    F = 0.05 * torch.randn(B, D, T)
    emotional = torch.rand(B, T) < 0.3
    F += (emotional[:, None] * directions[labels][:, :, None]) * (1 + 0.2 * torch.randn(B, 1, T))
    F += 0.3 * torch.randn(B, D, T) * emotional[:, None]
    lengths = torch.randint(T // 2, T + 1, (B,))
    valid = torch.arange(T)[None] < lengths[:, None]
    F = F * valid[:, None]
    rec = Recognition(D, K, 8)
    opt = torch.optim.Adam(rec.parameters(), lr=1e-2)
    for _ in range(200):
        loss = emotion_ce(rec(F, lengths).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = rec(F, lengths)
    mass = (out.cue * (emotional & valid)).sum(-1)
    share = (emotional & valid).sum(-1) / lengths
    assert mass.mean() > 0.8, f"cue mass on emotional frames {mass.mean():.3f} (their share {share.mean():.2f})"
    assert (out.logits.argmax(-1) == labels).float().mean() > 0.9


def test_grad_reverse_flips_and_scales_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    g = torch.randn(3, 4)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * g).sum().backward()
    assert torch.allclose(x.grad, -0.3 * g)


def test_content_classifier_is_per_frame_and_reverses_its_input_gradient():
    torch.manual_seed(0)
    clf = ContentEmotionClassifier(content_dim=8, n_emotions=K, hidden=16)
    content = torch.randn(2, 8, 12, requires_grad=True)
    logits = clf(content, reverse_scale=0.5)
    assert logits.shape == (2, K, 12)
    moved = content.detach().clone()
    moved[:, :, 5] += 1.0
    diff = (clf(moved) - logits).abs().amax(dim=(0, 1))
    assert diff[5] > 1e-3 and torch.cat([diff[:5], diff[6:]]).max() == 0
    w = torch.randn_like(logits)
    (logits * w).sum().backward()
    plain = content.detach().clone().requires_grad_(True)
    (clf.net(plain) * w).sum().backward()
    assert torch.allclose(content.grad, -0.5 * plain.grad, atol=1e-6)
    assert content.grad.abs().max() > 0


class EmotionGraph(torch.nn.Module):
    """Ee then R on one whole utterance, outputs as a flat tuple (what the engine's bank runs)."""

    def __init__(self, ee: EmotionEncoder, rec: Recognition):
        super().__init__()
        self.ee, self.rec = ee, rec

    def forward(self, mel: torch.Tensor, pitch: torch.Tensor):
        return tuple(self.rec(self.ee(mel, pitch)))


@pytest.mark.slow
def test_encoder_and_recognition_export_to_onnx_with_dynamic_length(nets, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    graph = EmotionGraph(*nets).eval()
    path = tmp_path / "ee.onnx"
    frames = torch.export.Dim("T", min=1, max=100_000)
    torch.onnx.export(graph, (padded_batch([60]), padded_pitch([60])), str(path), input_names=["mel", "pitch"],
                      output_names=list(EmotionOutput._fields), dynamic_shapes=({2: frames}, {2: frames}),
                      verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T in (1, 23, 97):
        mel, pitch = padded_batch([T], seed=T), padded_pitch([T], seed=T)
        got = sess.run(None, {"mel": mel.numpy(), "pitch": pitch.numpy()})
        with torch.no_grad():
            want = graph(mel, pitch)
        for name, g, w in zip(EmotionOutput._fields, got, want):
            assert g.shape == tuple(w.shape), name
            assert abs(g - w.numpy()).max() < 1e-5, name
