"""Causal networks of the conversion path: stepwise == offline, the future never changes
the past, and the state protocol export relies on (names, shapes, purity)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from training.models.content_encoder import ContentEncoder
from training.models.generator import Generator
from training.models.streaming import (
    CausalConv1d,
    CausalUpsample,
    StreamingChain,
    StreamingModule,
    split_state,
)
from training.models.vocoder import CausalHiFiGAN

HOP = 160
N_FRAMES = 61  # ragged against every block size below but 1
BLOCKS = [1, 2, 3, 8]
TOL = 1e-5
KINDS = ["conv", "dilated_conv", "pointwise_conv", "upsample", "encoder", "generator", "vocoder", "chain"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs gain nothing from threads; on a busy 2-core machine the default two
    threads made this module ~3x slower (31 s against 11 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _audible(model: nn.Module) -> nn.Module:
    """Re-draw weights at unit gain: HiFi-GAN's 0.01 init gives near-silence, where a
    tolerance of 1e-5 would prove little."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.ConvTranspose1d):
                _set_weight(m, torch.randn_like(m.weight) * (m.stride[0] / m.weight[:, 0].numel()) ** 0.5)
            elif isinstance(m, (nn.Conv1d, nn.Linear)):
                _set_weight(m, torch.randn_like(m.weight) * m.weight[0].numel() ** -0.5)
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)
    return model


def _set_weight(m: nn.Module, weight: Tensor) -> None:
    if parametrize.is_parametrized(m, "weight"):
        m.weight = weight  # weight norm's right_inverse splits it into magnitude and direction
    else:
        m.weight.copy_(weight)


def tiny_encoder() -> ContentEncoder:
    return ContentEncoder(n_mels=80, channels=16, out_dim=8, n_layers=3, kernel_size=3)


def tiny_generator() -> Generator:
    return Generator(content_dim=8, emotion_dim=6, n_mels=80, channels=16, n_layers=3, kernel_size=3)


def tiny_vocoder(use_weight_norm: bool = False) -> CausalHiFiGAN:
    return CausalHiFiGAN(n_mels=80, upsample_rates=(5, 4, 4, 2), upsample_initial_channel=32,
                         resblock_kernel_sizes=(3, 5), resblock_dilations=((1, 2), (1, 3)),
                         use_weight_norm=use_weight_norm)


def make(kind: str, batch: int = 1, n_frames: int = N_FRAMES) -> tuple[StreamingModule, Tensor, tuple, int]:
    """(model in eval mode, input (B, C, T), condition args, output steps per input frame)."""
    torch.manual_seed(0)
    emotion = torch.randn(batch, 6)
    model, channels, cond, rate = {
        "conv": (lambda: CausalConv1d(4, 5, 3), 4, (), 1),
        "dilated_conv": (lambda: CausalConv1d(4, 5, 5, dilation=4), 4, (), 1),  # context 16 > any block
        "pointwise_conv": (lambda: CausalConv1d(4, 5, 1), 4, (), 1),
        "upsample": (lambda: CausalUpsample(4, 3, 5), 4, (), 5),
        "encoder": (tiny_encoder, 80, (), 1),
        "generator": (tiny_generator, 8, (emotion,), 1),
        "vocoder": (tiny_vocoder, 80, (), HOP),
        "chain": (lambda: StreamingChain(tiny_encoder(), tiny_generator(), tiny_vocoder()), 80, (emotion,), HOP),
    }[kind]
    model = _audible(model()).eval()
    return model, torch.randn(batch, channels, n_frames), cond, rate


def stream(model: StreamingModule, x: Tensor, cond: tuple, block: int, conds: list | None = None) -> Tensor:
    """Run model.step over x in blocks of `block` frames (last one ragged), outputs joined.

    conds, when given, is one condition tuple per block (the engine switching emotion).
    """
    state, outs = model.init_state(x.shape[0]), []
    for i, start in enumerate(range(0, x.shape[-1], block)):
        y, state = model.step(x[..., start:start + block], *(conds[i] if conds else cond), state)
        outs.append(y)
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("kind", KINDS)
def test_stepwise_equals_offline(kind: str, block: int) -> None:
    model, x, cond, rate = make(kind)
    with torch.no_grad():
        offline = model(x, *cond)
        online = stream(model, x, cond, block)
    assert offline.shape[-1] == N_FRAMES * rate
    assert online.shape == offline.shape
    assert offline.std() > 0.05, "outputs too quiet for the tolerance to mean anything"
    assert (online - offline).abs().max().item() < TOL


@pytest.mark.parametrize("kind", ["encoder", "vocoder", "chain"])
def test_stepwise_equals_offline_batched(kind: str) -> None:
    model, x, cond, _ = make(kind, batch=2)
    with torch.no_grad():
        assert (stream(model, x, cond, 3) - model(x, *cond)).abs().max().item() < TOL


@pytest.mark.parametrize("kind", KINDS)
def test_future_input_never_changes_past_output(kind: str) -> None:
    model, x, cond, rate = make(kind)
    t0 = 23
    changed = x.clone()
    changed[..., t0:] = torch.randn_like(changed[..., t0:]) * 3.0
    with torch.no_grad():
        before, after = model(x, *cond), model(changed, *cond)
    assert (before[..., : t0 * rate] - after[..., : t0 * rate]).abs().max().item() < 1e-7
    assert (before[..., t0 * rate:] - after[..., t0 * rate:]).abs().max().item() > 1e-3


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("kind", ["generator", "chain"])
def test_emotion_changing_between_blocks_equals_offline_per_frame(kind: str, block: int) -> None:
    model, x, _, _ = make(kind)
    n_blocks = -(-N_FRAMES // block)
    emotions = torch.randn(n_blocks, 1, 6)
    per_frame = emotions.repeat_interleave(block, dim=0)[:N_FRAMES].permute(1, 2, 0)  # (1, D, T)
    with torch.no_grad():
        online = stream(model, x, (), block, conds=[(e,) for e in emotions])
        offline = model(x, per_frame)
    assert (online - offline).abs().max().item() < TOL


def test_generator_constant_per_frame_emotion_equals_global() -> None:
    model, x, (emotion,), _ = make("generator")
    with torch.no_grad():
        global_ = model(x, emotion)
        per_frame = model(x, emotion.unsqueeze(-1).expand(-1, -1, N_FRAMES))
    assert (global_ - per_frame).abs().max().item() < 1e-6


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
    with torch.no_grad():
        y1, new = model.step(x[..., :block], *cond, state)
        y2, _ = model.step(x[..., :block], *cond, state)
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


def test_composite_state_order_follows_registration() -> None:
    model = tiny_vocoder()
    names = model.state_names()
    assert names[0] == "conv_pre_ctx" and names[-1] == "conv_post_ctx"
    assert names[1] == "stages_0_upsample_ctx"
    assert names[2] == "stages_0_mrf_stacks_0_0_conv1_ctx"


def test_init_state_follows_requested_dtype() -> None:
    state = tiny_encoder().init_state(3, dtype=torch.float64)
    assert all(s.dtype == torch.float64 and s.shape[0] == 3 for s in state)


def test_split_state_rejects_wrong_length() -> None:
    a, b = CausalConv1d(2, 2, 3), CausalConv1d(2, 2, 5)
    state = a.init_state() + b.init_state()
    assert [len(part) for part in split_state(state, [a, b])] == [1, 1]
    with pytest.raises(ValueError, match="state has 1 tensors"):
        split_state(state[:1], [a, b])


@pytest.mark.parametrize("rates", [(5, 4, 4), (8, 5, 5), (4, 4, 4, 4)])
def test_vocoder_rejects_rates_not_multiplying_to_hop(rates: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="hop=160"):
        CausalHiFiGAN(upsample_rates=rates, upsample_initial_channel=64)


def test_vocoder_rejects_channels_that_cannot_halve() -> None:
    with pytest.raises(ValueError, match="divisible"):
        CausalHiFiGAN(upsample_rates=(5, 4, 4, 2), upsample_initial_channel=24)


@pytest.mark.parametrize("n_frames", [1, 2, 7])
def test_default_vocoder_gives_hop_samples_per_frame(n_frames: int) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        audio = CausalHiFiGAN().eval()(torch.randn(2, 80, n_frames))
    assert audio.shape == (2, 1, n_frames * HOP)
    assert audio.abs().max().item() <= 1.0


def test_weight_norm_streams_exactly_and_folds_without_changing_output() -> None:
    torch.manual_seed(0)
    model = _audible(tiny_vocoder(use_weight_norm=True)).eval()
    x = torch.randn(1, 80, 20)
    with torch.no_grad():
        before = model(x)
        assert (stream(model, x, (), 3) - before).abs().max().item() < TOL
        model.remove_weight_norm()
        after = model(x)
    assert before.std() > 0.05
    assert not any("parametrizations" in k for k in model.state_dict())
    assert (after - before).abs().max().item() < 1e-6


def test_gradients_reach_every_parameter_of_the_chain() -> None:
    model, x, cond, _ = make("chain")
    model.train()
    model(x, *cond).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_chain_step_exports_to_onnx_and_streams_like_offline(dynamo: bool, tmp_path) -> None:
    """Standard ops only, state as named graph inputs/outputs: what export relies on."""
    ort = pytest.importorskip("onnxruntime")
    model, x, (emotion,), _ = make("chain", n_frames=12)
    names = model.state_names()

    class Step(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.chain = model

        def forward(self, mel: Tensor, emotion: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
            audio, new_state = self.chain.step(mel, emotion, list(state))
            return audio, *new_state

    path = tmp_path / "step.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step(), (x[..., :2], emotion, *model.init_state()), str(path), dynamo=dynamo,
                          opset_version=17, input_names=["mel", "emotion", *names],
                          output_names=["audio", *(f"{n}_out" for n in names)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state, outs = [s.numpy() for s in model.init_state()], []
    for start in range(0, 12, 2):
        feeds = {"mel": x[..., start:start + 2].numpy(), "emotion": emotion.numpy(), **dict(zip(names, state))}
        audio, *state = session.run(None, feeds)
        outs.append(torch.from_numpy(audio))
    with torch.no_grad():
        assert (torch.cat(outs, dim=-1) - model(x, emotion)).abs().max().item() < TOL
