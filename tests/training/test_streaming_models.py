"""Causal networks of the conversion path: stepwise == offline, the future never changes
the past, and the state protocol export relies on (names, shapes, purity).

The synthesiser (SourceFilter) and the vocoder are held to a tolerance relative to their
peak (SYNTH_REL_TOL): their output is unit-power excitation times filters of up to e^2, so
peaks reach 10-15 here, and float32 products blocked differently for different block
lengths round differently. Measured for block sizes 1, 2, 3, 8, batch 1 and 2: the
synthesiser within 3e-7 of its peak (its phase path runs in float64), the vocoder within
1.6e-6 (its filter net's float32 convs move the cepstra by ulps, which exp amplifies).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import Tensor, nn

from support.tiny_checkpoints import audible
from training.models.causal_stack import CausalStack
from training.models.content_encoder import ContentEncoder
from training.models.frames import LF0_SCALE, lifter_matrix
from training.models.generator import Generator, frame_pitch
from training.models.streaming import CausalConv1d, CausalUpsample, StreamingModule, split_state
from training.models.vocoder import SourceFilter, SourceFilterVocoder

HOP = 160
N_FRAMES = 61  # ragged against every block size below but 1
BLOCKS = [1, 2, 3, 8]
TOL = 1e-5
SYNTH_REL_TOL = 1e-5
"""Max abs error / peak of the synthesiser's and the vocoder's audio, stepwise against offline."""
KINDS = ["conv", "dilated_conv", "pointwise_conv", "upsample", "stack", "encoder", "generator", "synth", "vocoder"]
AUDIO_KINDS = ("synth", "vocoder")


def tiny_encoder() -> ContentEncoder:
    return ContentEncoder(n_mels=80, channels=16, out_dim=8, n_layers=3, kernel_size=3)


def tiny_generator() -> Generator:
    return Generator(content_dim=8, emotion_dim=6, n_mels=80, channels=16, n_layers=3, kernel_size=3)


def tiny_vocoder() -> SourceFilterVocoder:
    return SourceFilterVocoder(n_mels=80, channels=16, n_layers=2, kernel_size=3, order=16)


def pitch_rows(batch: int, n_frames: int) -> Tensor:
    """(B, 2, T) [natural-log F0, voicing] like speech: a contour wandering around 100-250 Hz,
    voiced runs with unvoiced gaps and a few frames of partial voicing."""
    lf0 = math.log(160.0) + 0.3 * torch.sin(torch.arange(n_frames) / 7.0 + torch.arange(batch)[:, None])
    voicing = (torch.rand(batch, n_frames) < 0.75).float()
    voicing[:, ::9] = 0.5
    return torch.stack([lf0 + 0.02 * torch.randn(batch, n_frames), voicing], dim=1)


def tracker_rows(batch: int, n_frames: int) -> Tensor:
    """(B, 4, T) the engine tracker's features (engine.pitch.FEATURES): voiced, lf0, reg_mean, reg_std."""
    lf0, voiced = pitch_rows(batch, n_frames).unbind(1)
    reg_mean = math.log(150.0) + 0.05 * torch.randn(batch, 1).expand(-1, n_frames)
    reg_std = torch.full((batch, n_frames), 0.1)
    return torch.stack([(voiced > 0.7).float(), lf0, reg_mean, reg_std], dim=1)


def cepstra(batch: int, n_frames: int, order: int = 16) -> Tensor:
    """(B, 2 * order, T) plausible filter cepstra: gain around -1 neper, decaying detail."""
    decay = 0.5 / (1.0 + torch.arange(order))
    c = torch.randn(batch, 2, order, n_frames) * decay[:, None]
    c[:, :, 0] -= 1.0
    return c.reshape(batch, 2 * order, n_frames)


def make(kind: str, batch: int = 1, n_frames: int = N_FRAMES) -> tuple[StreamingModule, list[Tensor], tuple, int]:
    """(model in eval mode, per-frame inputs [(B, C_i, T)], constant condition args, output steps per frame)."""
    torch.manual_seed(0)
    emotion = torch.randn(batch, 6)
    model, inputs, cond, rate = {
        "conv": (lambda: CausalConv1d(4, 5, 3), lambda: [torch.randn(batch, 4, n_frames)], (), 1),
        "dilated_conv": (lambda: CausalConv1d(4, 5, 5, dilation=4),  # context 16 > any block
                         lambda: [torch.randn(batch, 4, n_frames)], (), 1),
        "pointwise_conv": (lambda: CausalConv1d(4, 5, 1), lambda: [torch.randn(batch, 4, n_frames)], (), 1),
        "upsample": (lambda: CausalUpsample(4, 3, 5), lambda: [torch.randn(batch, 4, n_frames)], (), 5),
        "stack": (lambda: CausalStack(6, 16, 5, n_layers=3, kernel_size=3),
                  lambda: [torch.randn(batch, 6, n_frames)], (), 1),
        "encoder": (tiny_encoder, lambda: [torch.randn(batch, 80, n_frames)], (), 1),
        "generator": (tiny_generator, lambda: [torch.randn(batch, 8, n_frames), tracker_rows(batch, n_frames)],
                      (emotion,), 1),
        "synth": (lambda: SourceFilter(order=16),
                  lambda: [cepstra(batch, n_frames), *pitch_rows(batch, n_frames).split(1, dim=1)], (), HOP),
        "vocoder": (tiny_vocoder, lambda: [torch.randn(batch, 80, n_frames) - 5, pitch_rows(batch, n_frames)], (),
                    HOP),
    }[kind]
    model = audible(model()).eval()
    return model, inputs(), cond, rate


def stream(model: StreamingModule, inputs: list[Tensor], cond: tuple, block: int, conds: list | None = None,
           late: tuple[Tensor, ...] = ()) -> Tensor:
    """Run model.step over the inputs in blocks of `block` frames (last one ragged), outputs joined.

    conds, when given, is one condition tuple per block (the engine switching emotion); late: per-frame
    inputs that step takes after the state (the generator's source log-mel), cut into the same blocks.
    """
    state, outs = model.init_state(inputs[0].shape[0]), []
    for i, start in enumerate(range(0, inputs[0].shape[-1], block)):
        blocks = [x[..., start:start + block] for x in inputs]
        y, state = model.step(*blocks, *(conds[i] if conds else cond), state,
                              *(x[..., start:start + block] for x in late))
        outs.append(y)
    return torch.cat(outs, dim=-1)


def _stream_with_source(model, content, pitch, emotion, source, block: int) -> Tensor:
    with torch.no_grad():
        return stream(model, [content, pitch], (emotion,), block, late=(source,))


def assert_stream_equals_offline(kind: str, online: Tensor, offline: Tensor) -> None:
    err = (online - offline).abs().max().item()
    if kind in AUDIO_KINDS:
        peak = offline.abs().max().item()
        assert err / peak < SYNTH_REL_TOL, f"max abs error {err:.3g}, {err / peak:.3g} of the peak {peak:.3g}"
    else:
        assert err < TOL, f"max abs error {err:.3g}"


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("kind", KINDS)
def test_stepwise_equals_offline(kind: str, block: int) -> None:
    model, x, cond, rate = make(kind)
    with torch.no_grad():
        offline = model(*x, *cond)
        online = stream(model, x, cond, block)
    assert offline.shape[-1] == N_FRAMES * rate
    assert online.shape == offline.shape
    assert offline.std() > 0.05, "outputs too quiet for the tolerance to mean anything"
    assert_stream_equals_offline(kind, online, offline)


@pytest.mark.parametrize("kind", ["encoder", "generator", "synth", "vocoder"])
def test_stepwise_equals_offline_batched(kind: str) -> None:
    model, x, cond, _ = make(kind, batch=2)
    with torch.no_grad():
        assert_stream_equals_offline(kind, stream(model, x, cond, 3), model(*x, *cond))


@pytest.mark.parametrize("kind", KINDS)
def test_future_input_never_changes_past_output(kind: str) -> None:
    model, x, cond, rate = make(kind)
    t0 = 23
    changed = [v.clone() for v in x]
    for v in changed:
        v[..., t0:] *= 1.0 + torch.rand_like(v[..., t0:])  # scaled, not shifted: a register spread stays > 0
    with torch.no_grad():
        before, after = model(*x, *cond), model(*changed, *cond)
    assert (before[..., : t0 * rate] - after[..., : t0 * rate]).abs().max().item() < 1e-7
    assert (before[..., t0 * rate:] - after[..., t0 * rate:]).abs().max().item() > 1e-3


@pytest.mark.parametrize("block", BLOCKS)
def test_emotion_changing_between_blocks_equals_offline_per_frame(block: int) -> None:
    model, x, _, _ = make("generator")
    n_blocks = -(-N_FRAMES // block)
    emotions = torch.randn(n_blocks, 1, 6)
    per_frame = emotions.repeat_interleave(block, dim=0)[:N_FRAMES].permute(1, 2, 0)  # (1, D, T)
    with torch.no_grad():
        online = stream(model, x, (), block, conds=[(e,) for e in emotions])
        offline = model(*x, per_frame)
    assert (online - offline).abs().max().item() < TOL


def test_generator_constant_per_frame_emotion_equals_global() -> None:
    model, x, (emotion,), _ = make("generator")
    with torch.no_grad():
        global_ = model(*x, emotion)
        per_frame = model(*x, emotion.unsqueeze(-1).expand(-1, -1, N_FRAMES))
    assert (global_ - per_frame).abs().max().item() < 1e-6


def test_generator_predicts_log_f0_on_the_sources_register_and_a_liftered_mel() -> None:
    """Rows [liftered log-mel, log-F0, voicing logit]: log-F0 is the source's contour moved by
    the emotion (shift, range) plus the network's residual. With a zero head and a zero pitch
    map it is exactly the source's log-F0 (z within its clip); a shift moves it by LF0_SCALE
    times the shift and a log-range r scales its distance from the register by exp(r). The mel
    rows are already in the lifter's range (P m = m); the spectral map adds the lifter's image of
    a level and a tilt over the bands."""
    model, (content, pitch), (emotion,), _ = make("generator")
    with torch.no_grad():
        frames = model(content, pitch, emotion)
        projection = torch.from_numpy(lifter_matrix(80))
        assert frames.shape == (1, 82, N_FRAMES)
        assert (torch.matmul(projection, frames[:, :80]) - frames[:, :80]).abs().max() < 1e-4
        model.proj.weight.zero_()
        model.proj.bias.zero_()
        for film in (model.pitch_film, model.spectral_film):
            film.weight.zero_()
            film.bias.zero_()
        passthrough = model(content, pitch, emotion)
        model.pitch_film.bias.copy_(torch.tensor([math.log(1.5), 0.4]))
        model.spectral_film.bias.copy_(torch.tensor([0.8, -1.2]))
        moved = model(content, pitch, emotion)
    z = ((pitch[:, 1] - pitch[:, 2]) / pitch[:, 3]).clamp(-5, 5)
    assert (passthrough[:, 80] - (pitch[:, 2] + pitch[:, 3] * z)).abs().max() < 1e-5
    assert passthrough[:, :80].abs().max() == 0 and passthrough[:, 81].abs().max() == 0
    expected = pitch[:, 2] + LF0_SCALE * 0.4 + 1.5 * pitch[:, 3] * z
    assert (moved[:, 80] - expected).abs().max() < 1e-5
    u = torch.linspace(-0.5, 0.5, 80)
    spectral = torch.matmul(projection, 0.8 - 1.2 * u)
    assert (moved[:, :80] - spectral[None, :, None]).abs().max() < 1e-5
    assert float(spectral[0] - spectral[-1]) == pytest.approx(1.2, abs=0.05)  # the lifter keeps the tilt
    rows = frame_pitch(frames, 80)
    assert torch.equal(rows[:, 0], frames[:, 80]) and torch.allclose(rows[:, 1], torch.sigmoid(frames[:, 81]))


@pytest.mark.parametrize("block", [1, 3, 8])
def test_generator_with_the_source_skip_starts_at_the_liftered_source_and_streams(block: int) -> None:
    """With the source skip the log-mel rows are lifter(the source, gated toward the log floor, + the
    network's change + level and tilt): at initialisation (the change's rows and the spectral map
    zero, the gate closed) the liftered source; opening the gate fully gives the liftered floor;
    trained (rows perturbed) stepwise equals offline; without a source it refuses."""
    torch.manual_seed(0)
    model = Generator(content_dim=8, emotion_dim=6, n_mels=80, channels=16, n_layers=3, kernel_size=3,
                      source_skip=True).eval()
    content, pitch, emotion = torch.randn(1, 8, N_FRAMES), tracker_rows(1, N_FRAMES), torch.randn(1, 6)
    source = torch.randn(1, 80, N_FRAMES) - 5.0
    projection = torch.from_numpy(lifter_matrix(80))
    with torch.no_grad():
        start = model(content, pitch, emotion, source)
        # the closed gate: sigmoid(-8) = 3.4e-4 of the way from the source (about -5) to the floor (-11.5)
        assert (start[:, :80] - torch.matmul(projection, source)).abs().max() < 4e-3
        model.quiet.bias.fill_(30.0)
        floor = torch.full_like(source, math.log(1e-5))
        assert (model(content, pitch, emotion, source)[:, :80] - torch.matmul(projection, floor)).abs().max() < 1e-4
        model.quiet.bias.fill_(-1.0)
        model.quiet.weight.add_(0.1 * torch.randn_like(model.quiet.weight))
        model.proj.weight.add_(0.1 * torch.randn_like(model.proj.weight))
        offline = model(content, pitch, emotion, source)
        assert (offline[:, :80] - start[:, :80]).abs().max() > 0.05
    assert (_stream_with_source(model, content, pitch, emotion, source, block) - offline).abs().max().item() < TOL
    with pytest.raises(ValueError, match="source log-mel"):
        model(content, pitch, emotion)


def test_content_encoder_never_sees_the_harmonic_ripple() -> None:
    """What the lifter drops (quefrencies past LIFTER_KEEP: the harmonics of any F0 up to
    about 330 Hz) leaves the content unchanged: pitch cannot leak into the content."""
    model, (mel,), _, _ = make("encoder")
    ripple = torch.randn_like(mel) * 3.0
    dropped = ripple - torch.matmul(torch.from_numpy(lifter_matrix(80)), ripple)
    with torch.no_grad():
        assert (model(mel + dropped) - model(mel)).abs().max() < 1e-4
        assert (model(mel + ripple) - model(mel)).abs().max() > 0.1


@pytest.mark.parametrize("kind", KINDS)
def test_state_names_match_state_and_are_onnx_safe(kind: str) -> None:
    model, *_ = make(kind)
    names, state = model.state_names("m_"), model.init_state(2)
    assert len(names) == len(state) == model.n_states == len(model.state_shapes(2))
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) and n.startswith("m_") for n in names)
    assert [tuple(s.shape) for s in state] == model.state_shapes(2)
    assert all(s.shape[0] == 2 and s.dtype == torch.float32 and not s.any() for s in state)


@pytest.mark.parametrize("block", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_step_is_pure_and_keeps_state_shapes(kind: str, block: int) -> None:
    model, x, cond, _ = make(kind)
    state = [torch.randn_like(s) for s in model.init_state()]
    kept = [s.clone() for s in state]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    first = [v[..., :block] for v in x]
    with torch.no_grad():
        y1, new = model.step(*first, *cond, state)
        y2, _ = model.step(*first, *cond, state)
    assert new is not state and len(new) == len(state)
    assert all(torch.equal(a, b) for a, b in zip(state, kept)), "step mutated its input state"
    assert [s.shape for s in new] == [s.shape for s in kept]
    assert torch.equal(y1, y2), "same input and state must give the same output"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in params.items())


def test_leaf_state_layouts() -> None:
    assert CausalConv1d(4, 5, 1).state_shapes(2) == []
    assert CausalConv1d(4, 5, 3, dilation=2).state_shapes(2) == [(2, 4, 4)]
    assert CausalUpsample(4, 3, 5).state_shapes(2) == [(2, 4, 1)]
    assert CausalConv1d(4, 5, 3).state_names("enc_conv0_") == ["enc_conv0_ctx"]
    # phase, previous log-F0, previous voicing, noise position, overlap-add tail (n_fft - hop)
    assert SourceFilter(order=16, n_fft=512).state_shapes(2) == [(2, 1)] * 4 + [(2, 352)]
    assert SourceFilter().state_names("voc_") == ["voc_phase", "voc_lf0", "voc_voicing", "voc_noise_pos", "voc_tail"]


def test_composite_state_order_follows_registration() -> None:
    """The vocoder: its filter net's convs in order, then the synthesiser's state."""
    names = tiny_vocoder().state_names()
    assert names == ["net_conv_pre_ctx", "net_blocks_0_conv_ctx", "net_blocks_1_conv_ctx",
                     "synth_phase", "synth_lf0", "synth_voicing", "synth_noise_pos", "synth_tail"]


def test_init_state_follows_requested_dtype() -> None:
    state = tiny_encoder().init_state(3, dtype=torch.float64)
    assert all(s.dtype == torch.float64 and s.shape[0] == 3 for s in state)


def test_split_state_rejects_wrong_length() -> None:
    a, b = CausalConv1d(2, 2, 3), CausalConv1d(2, 2, 5)
    state = a.init_state() + b.init_state()
    assert [len(part) for part in split_state(state, [a, b])] == [1, 1]
    with pytest.raises(ValueError, match="state has 1 tensors"):
        split_state(state[:1], [a, b])


@pytest.mark.parametrize("kwargs", [{"hop": 600, "n_fft": 512}, {"order": 300, "n_fft": 512}])
def test_synthesiser_rejects_impossible_sizes(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="hop <= n_fft and order <= n_fft // 2"):
        SourceFilter(**kwargs)


@pytest.mark.parametrize("n_frames", [1, 2, 7])
def test_default_vocoder_gives_hop_samples_per_frame(n_frames: int) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        audio = SourceFilterVocoder().eval()(torch.randn(2, 80, n_frames) - 5, pitch_rows(2, n_frames))
    assert audio.shape == (2, 1, n_frames * HOP)
    assert torch.isfinite(audio).all()


def test_gradients_reach_every_parameter_of_the_conversion_path() -> None:
    """Content encoder -> generator -> vocoder (its mel rows and frame_pitch), as the step graph chains them."""
    torch.manual_seed(0)
    nets = nn.ModuleDict({"ec": audible(tiny_encoder()), "gen": audible(tiny_generator()),
                          "voc": audible(tiny_vocoder())}).train()
    mel, pitch, emotion = torch.randn(2, 80, 20) - 5, tracker_rows(2, 20), torch.randn(2, 6)
    frames = nets["gen"](nets["ec"](mel), pitch, emotion)
    nets["voc"](frames[:, :80], frame_pitch(frames, 80)).square().mean().backward()
    for name, p in nets.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("block", [1, 3, 8])
def test_generator_with_the_source_view_starts_as_without_it_and_streams(block: int) -> None:
    """The source view (a causal conv of the liftered source added to conv_pre's output) starts at
    zero: the output is the same generator's without it; trained (weights perturbed) it depends on
    the source, and stepwise equals offline; without a source it refuses."""
    torch.manual_seed(0)
    kwargs = dict(content_dim=8, emotion_dim=6, n_mels=80, channels=16, n_layers=3, kernel_size=3)
    model = Generator(**kwargs, source_skip=True, source_input=True).eval()
    plain = Generator(**kwargs, source_skip=True).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith("source_pre.") for k in unexpected)
    content, pitch, emotion = torch.randn(1, 8, N_FRAMES), tracker_rows(1, N_FRAMES), torch.randn(1, 6)
    source = torch.randn(1, 80, N_FRAMES) - 5.0
    with torch.no_grad():
        model.proj.weight.add_(0.1 * torch.randn_like(model.proj.weight))
        plain.proj.weight.copy_(model.proj.weight)
        assert (model(content, pitch, emotion, source) - plain(content, pitch, emotion, source)).abs().max() < 1e-6
        model.source_pre.conv.weight.add_(0.1 * torch.randn_like(model.source_pre.conv.weight))
        offline = model(content, pitch, emotion, source)
        other = model(content, pitch, emotion, source + torch.randn_like(source))
        assert (offline - other)[:, :80].abs().mean() > 0.05
    assert (_stream_with_source(model, content, pitch, emotion, source, block) - offline).abs().max().item() < TOL
    assert len(model.init_state(1)) == len(plain.init_state(1)) + 1
    with pytest.raises(ValueError, match="source log-mel"):
        model(content, pitch, emotion)


def test_generator_with_the_levelled_source_ignores_the_microphones_level_and_streams() -> None:
    """With level_ref the skip and the view read the source moved to that level (training.models.level):
    the same source 2 nepers quieter or louder converts alike (voiced from the first frame, where the
    follower starts levelling); stepwise equals offline."""
    torch.manual_seed(0)
    model = Generator(content_dim=8, emotion_dim=6, n_mels=80, channels=16, n_layers=3, kernel_size=3,
                      source_skip=True, source_input=True, level_ref=-3.0).eval()
    content, pitch, emotion = torch.randn(1, 8, N_FRAMES), tracker_rows(1, N_FRAMES), torch.randn(1, 6)
    pitch[:, 0, 0] = 1.0
    source = torch.randn(1, 80, N_FRAMES) - 5.0
    with torch.no_grad():
        for p in (model.proj.weight, model.source_pre.conv.weight, model.quiet.weight):
            p.add_(0.1 * torch.randn_like(p))
        offline = model(content, pitch, emotion, source)
        for gain in (-2.0, 2.0):
            assert (model(content, pitch, emotion, source + gain) - offline).abs().max() < 1e-4
    assert (_stream_with_source(model, content, pitch, emotion, source, 3) - offline).abs().max().item() < TOL
    assert "level_peak" in model.state_names()
