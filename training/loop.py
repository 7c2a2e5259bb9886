"""One training loop for every stage: data-parallel, resumable, logged.

Under `torchrun --nproc_per_node N evc train ...` each process trains on its own
batches, gradients are averaged by DistributedDataParallel, and rank 0 alone logs
and writes checkpoints.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.errors import ConfigError, ModelError
from engine.signal import SignalSpec
from training import losses as L
from training import metrics
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from training.config import StageConfig, TrainConfig, degradation
from training.data.batches import VALIDATION, MelCorpus, draw_batch
from training.data.esd import scan
from training.logger import RunLogger
from training.progress import progress as show_progress
from training.stages import Stage1, Stage2, Vocoder
from training.widen import content_width, widen_checkpoint

STAGE_NETWORKS = {
    "stage1": ("content_encoder", "emotion_encoder", "recognition", "generator", "adversary"),
    "stage2": ("content_encoder", "emotion_encoder", "recognition", "generator"),
    "vocoder": ("vocoder",),
}
INIT_FROM = {"stage1": ("stage1", "stage2"), "stage2": ("stage1",)}
"""The checkpoints a stage may start from (--init): Stage I may continue a Stage I or a Stage II's networks
(its adversary then restarts), Stage II must start from a Stage I."""
INIT_REQUIRED = ("stage2",)
OPTIONAL_NETWORKS = {"stage2": ("mel_critic",)}
"""Built for a stage only when its config trains them (a recipe without the critic saves none)."""


@dataclass
class Group:
    """Networks stepped together by one optimizer, on one objective's weighted losses."""

    name: str
    objective: nn.Module
    params: list[nn.Parameter]
    weights: dict[str, float]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes in the environment (one process: no-op)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world)


def _objectives(stage: str, models, cfg: StageConfig):
    """(group name, objective, trainable network names, loss weights) per optimizer."""
    if stage == "stage1":
        return [("main", Stage1(models), cfg.trainable, cfg.weights)]
    if stage == "stage2":
        return [("main", Stage2(models), cfg.trainable, cfg.weights)]
    return [("main", Vocoder(models, spectral=bool(cfg.weights.get("stft"))), cfg.trainable, cfg.weights)]


def make_groups(stage: str, models, cfg: StageConfig, device, ddp: bool) -> list[Group]:
    trainable = {n for _, _, names, _ in _objectives(stage, models, cfg) for n in names}
    for name, net in models.items():
        net.requires_grad_(name in trainable)
        net.train(name in trainable)
    groups = []
    gamma = cfg.lr_decay ** (1 / 1000)  # lr_decay is the factor per 1000 steps
    for name, objective, names, weights in _objectives(stage, models, cfg):
        objective = objective.to(device)
        params = [p for n in names for p in models[n].parameters()]
        if ddp:
            # The networks' buffers (lifter, DFT matrices, noise table) are fixed constants, equal on
            # every rank: broadcasting them would make each forward a collective, which deadlocks
            # when rank 0 validates alone.
            objective = DistributedDataParallel(objective, broadcast_buffers=False)
        betas = (0.8, 0.99) if stage == "vocoder" else (0.9, 0.999)
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=betas)
        groups.append(Group(name, objective, params, weights, opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma)))
    return groups


def train_step(groups: list[Group], batch, cfg: StageConfig, device) -> dict[str, float]:
    """One optimizer step per group; returns every named loss as a float."""
    logged = {}
    for g in groups:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = g.objective(batch)
            total = L.weighted_sum(losses, g.weights)
        g.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(g.params, cfg.grad_clip)
        g.optimizer.step()
        g.scheduler.step()
        logged.update({k: float(v.detach()) for k, v in losses.items()})
        logged[f"total_{g.name}"] = float(total.detach())
    return logged


def _payload(stage, step, models, groups, cfg: TrainConfig, spec, run_id, speakers: list[str]) -> dict:
    return {
        "stage": stage, "step": step, "run_id": run_id, "config": cfg.to_dict(), "speakers": speakers,
        "signal": spec.to_dict(), "rng": rng_state(),
        "models": {n: m.state_dict() for n, m in models.items()},
        "optimizers": {g.name: g.optimizer.state_dict() for g in groups},
        "schedulers": {g.name: g.scheduler.state_dict() for g in groups},
    }


def _resume(path: Path, stage, models, groups, spec) -> tuple[int, str | None]:
    if not path.is_file():
        return 0, None
    ckpt = load_checkpoint(path, stage, spec)
    load_weights(models, ckpt)
    for g in groups:
        g.optimizer.load_state_dict(ckpt["optimizers"][g.name])
        g.scheduler.load_state_dict(ckpt["schedulers"][g.name])
    set_rng_state(ckpt["rng"])
    return ckpt["step"], ckpt["run_id"]


@torch.no_grad()
def validate(stage, groups, models, corpus: MelCorpus, cfg: TrainConfig, scfg: StageConfig, device):
    """Mean losses on fixed validation batches, plus the emotion metrics of each stage.

    Runs on a forked RNG so validating never changes the training run's randomness
    (a resumed run stays identical to an uninterrupted one).
    """
    with torch.random.fork_rng(devices=[]):
        return _validate(stage, groups, models, corpus, cfg, scfg, device)


def _validate(stage, groups, models, corpus: MelCorpus, cfg: TrainConfig, scfg: StageConfig, device):
    for m in models.values():
        m.eval()
    sums: dict[str, list[float]] = {}
    for k in range(cfg.val_batches):
        batch = draw_batch(corpus, scfg.batch_size, scfg.segment_frames, cfg.seed, k, stream=VALIDATION).to(device)
        for g in groups:
            for name, v in g.objective(batch).items():
                sums.setdefault(name, []).append(float(v))
    out = {k: float(np.mean(v)) for k, v in sums.items()}
    if stage == "stage1":
        out["acc_emotion"] = metrics.emotion_accuracy(models, corpus, device)
        out["strength_order"] = metrics.strength_order(models, corpus, device)
    elif stage == "stage2":
        out["acc_conversion"] = metrics.conversion_accuracy(models, corpus, device)
    return out


def _log_samples(log: RunLogger, stage, step, models, corpus: MelCorpus, n: int, device):
    with torch.no_grad():
        for i in range(min(n, len(corpus))):
            mel, pitch = corpus.mels[i].to(device)[None], corpus.pitch[i].to(device)[None]
            if stage == "vocoder":
                log.audio(step, f"utt{i}", models["vocoder"](mel, pitch).reshape(-1).cpu().numpy(),
                          corpus.spec.sample_rate)
            else:
                out = metrics.recognise(models["emotion_encoder"], models["recognition"], mel[0], pitch[0],
                                        corpus.anchors[i].to(device))
                mel_in = corpus.mel_in(i).to(device)[None]
                frames = models["generator"](models["content_encoder"](mel_in), corpus.pitch_in[i].to(device)[None],
                                             out.embedding, mel_in)
                log.mel(step, f"utt{i}_recon", frames[0, :corpus.spec.n_mels].cpu().numpy())


def _restore_train_mode(models, groups_trainable: set[str]) -> None:
    for name, net in models.items():
        net.train(name in groups_trainable)


def _checkpoint(out: Path, stage, step, models, groups, cfg, spec, run_id, speakers, final: bool) -> None:
    payload = _payload(stage, step, models, groups, cfg, spec, run_id, speakers)
    save_checkpoint(out / "last.pt", payload)
    if final:
        save_checkpoint(out / f"{stage}.pt", payload)


def _check_in_sync(models, d: Dist) -> float:
    """Largest difference of any rank's weights from rank 0's (0 when DDP kept them equal)."""
    flat = torch.cat([p.detach().float().reshape(-1) for m in models.values() for p in m.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def _initialise(models: dict[str, torch.nn.Module], ckpt: dict, stage: str) -> None:
    """Load the previous stage's networks. An emotion encoder written before it read references
    from an anchor (training.models.emotion_encoder) has no centre: a Stage I continuing it gets the
    training speakers' (train sets it), a later stage cannot use it. A generator given the source skip or view
    (training.models.generator) after a stage trained without them gets them new: the skip's
    quieting gate, with its log-mel rows and spectral map restarted (Generator.restart_mel_head:
    they predicted the whole log-mel, and now predict the change from the source), and the view's
    zero conv. A content encoder wider than the checkpoint's is grown from it (training.widen) in a
    Stage I continuation; later stages need a checkpoint of their own width."""
    _anchored(ckpt, models, stage)
    _widened(ckpt, models, stage)
    gen = models.get("generator")
    before = ((ckpt.get("config") or {}).get("models") or {}).get("generator") or {}
    added = {name: prefix for name, prefix in (("source_skip", "quiet."), ("source_input", "source_pre."))
             if gen is not None and getattr(gen, name) and not before.get(name, False)}
    if not added:
        load_weights(models, ckpt)
        return
    load_weights({k: v for k, v in models.items() if k != "generator"}, ckpt)
    missing, unexpected = gen.load_state_dict(ckpt["models"]["generator"], strict=False)
    if unexpected or not all(k.startswith(tuple(added.values())) for k in missing):
        raise ModelError(f"the {ckpt.get('stage')} checkpoint's generator does not match this one: "
                         f"{', '.join([*missing, *unexpected][:3])}")
    if "source_skip" in added:
        gen.restart_mel_head()


def _anchored(ckpt: dict, models: dict[str, torch.nn.Module], stage: str) -> None:
    """Give a Stage I continuation a centre where ckpt's emotion encoder has none; ModelError otherwise."""
    state = ckpt["models"].get("emotion_encoder")
    if state is None or "centre" in state or "emotion_encoder" not in models:
        return
    if stage != "stage1":
        raise ModelError(f"the {ckpt.get('stage')} checkpoint's emotion encoder reads references without a "
                         "neutral anchor: continue it with a Stage I run (train stage1 --init CKPT)")
    ckpt["models"]["emotion_encoder"] = {**state, "centre": models["emotion_encoder"].centre}


def _widened(ckpt: dict, models: dict[str, torch.nn.Module], stage: str) -> None:
    """Grow ckpt's content code to the content encoder's width for Stage I; ModelError where the widths
    cannot meet."""
    if "content_encoder" not in models:
        return
    old, new = content_width(ckpt), models["content_encoder"].out_dim
    if old is None or old == new:
        return
    if stage != "stage1" or old > new:
        raise ModelError(f"the {ckpt.get('stage')} checkpoint's content code is {old} wide, the config's {new}: "
                         "a wider code is grown with a Stage I continuation (train stage1 --init CKPT)")
    ckpt["models"] = widen_checkpoint(ckpt, models)


def train(stage: str, cfg: TrainConfig, data: str | Path, out: str | Path,
          init: str | Path | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) one stage; returns the final validation metrics and the checkpoint path.

    init: checkpoint of the previous stage (Stage II starts from Stage I's networks).
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    d = setup_distributed(dev)
    if d.world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", d.rank % torch.cuda.device_count())
    if stage not in cfg.stages:
        raise ConfigError(f"stages.{stage}: not in the training config {cfg.name!r}")
    cfg = cfg.for_stage(stage)
    scfg, spec, out = cfg.stages[stage], SignalSpec(lookahead_frames=cfg.lookahead_frames), Path(out)
    torch.manual_seed(cfg.seed + d.rank)
    optional = tuple(n for n in OPTIONAL_NETWORKS.get(stage, ()) if n in scfg.trainable)
    models = build_models(cfg.models, spec, STAGE_NETWORKS[stage] + optional)
    if stage in INIT_REQUIRED and init is None:
        raise ConfigError(f"{stage} starts from a {INIT_FROM[stage][0]} checkpoint: pass --init CKPT")
    if init is not None and stage in INIT_FROM:
        _initialise(models, load_checkpoint(init, INIT_FROM[stage], spec), stage)
    models = {n: m.to(dev) for n, m in models.items()}
    train_set, val_set = (_corpus(data, spec, split, cfg, stage) for split in ("train", "evaluation"))
    if stage == "stage1":
        models["emotion_encoder"].centre.copy_(train_set.anchor_centre.to(dev))
    speakers = sorted({u.speaker for u in train_set.utts})
    groups = make_groups(stage, models, scfg, dev, ddp=d.world > 1)
    trainable = {n for n, m in models.items() if m.training}
    start, run_id = _resume(out / "last.pt", stage, models, groups, spec)
    run_id = run_id or f"{cfg.name}-{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    log = RunLogger(out, enabled=d.main)
    bar = show_progress(range(start, scfg.steps), progress and d.main, desc=stage)
    for step in bar:
        batch = draw_batch(train_set, scfg.batch_size, scfg.segment_frames, cfg.seed, step, d.rank).to(dev)
        values = train_step(groups, batch, scfg, dev)
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"{stage} step {step}: non-finite loss {values}")
        done = step + 1
        if d.main and (done % cfg.log_every == 0 or done == scfg.steps):
            log.scalars(done, values, "train/")
            _postfix(bar, values)
        if d.main and (done % cfg.val_every == 0 or done == scfg.steps):
            log.scalars(done, validate(stage, groups, models, val_set, cfg, scfg, dev), "val/")
            _log_samples(log, stage, done, models, val_set, cfg.samples_per_val, dev)
            _restore_train_mode(models, trainable)
        if d.main and (done % cfg.ckpt_every == 0 or done == scfg.steps):
            _checkpoint(out, stage, done, models, groups, cfg, spec, run_id, speakers, final=done == scfg.steps)
    result = {"stage": stage, "run_id": run_id, "checkpoint": str(out / f"{stage}.pt"),
              "world_size": d.world, "rank": d.rank, "speakers": speakers}
    if d.world > 1:
        result["max_rank_weight_diff"] = _check_in_sync(models, d)
        dist.barrier()
    log.close()
    return result


def _corpus(data, spec: SignalSpec, split: str, cfg: TrainConfig, stage: str) -> MelCorpus:
    """The split's utterances of the training speakers (cfg.speakers minus cfg.exclude_speakers);
    the vocoder stage loads its envelope targets, on at most scfg.max_utterances utterances, and
    Stage II its conversion rows (parallel partners, noise alone)."""
    scfg = cfg.stages[stage]
    order = (cfg.models.get("vocoder") or {}).get("order", 128) if stage == "vocoder" else None
    augment = degradation(stage, scfg.augment) if scfg.augment is not None and split == "train" else None
    corpus = MelCorpus(data, spec, split, training_speakers(data, cfg), envelope_order=order,
                       jobs=cfg.analysis_jobs, limit=scfg.max_utterances, augment=augment,
                       conversion=stage == "stage2")
    if not len(corpus):
        raise ConfigError(f"{data}: no {split} utterance of the training speakers")
    return corpus


def training_speakers(data, cfg: TrainConfig) -> list[str]:
    """The corpus's speakers that cfg trains on: cfg.speakers (all when None) minus cfg.exclude_speakers."""
    known = sorted({u.speaker for u in scan(data)})
    wanted = [s for s in known if cfg.speakers is None or s in cfg.speakers]
    return [s for s in wanted if s not in cfg.exclude_speakers]


def _postfix(bar, values: dict[str, float]) -> None:
    if hasattr(bar, "set_postfix"):
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if not k.startswith("str_")})
