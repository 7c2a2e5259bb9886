"""Widen a trained content code: a checkpoint's networks made to fit a wider content encoder.

The content code (``content_encoder.out_dim``) is the autoencoder's bottleneck: the generator
rebuilds the speaker's voice and words from it, so its width bounds the frame-level detail a
conversion keeps. A wider code trained from scratch repeats all of Stage I (an hour here); a
Stage I continuation can start from the narrow one instead, unchanged at its first step::

    content_encoder.stack.proj   rows [0, old)  the checkpoint's; rows [old, new) fresh, bias 0
    generator.conv_pre           input columns [0, old) and the pitch rows the checkpoint's;
                                 columns [old, new) zero

so the generator ignores the new rows until training gives their columns weight, and the
output equals the checkpoint's. The adversary, which reads the code, is left out (a fresh one
is built), as is any network whose widths do not involve the code.
"""

from __future__ import annotations

import torch
from torch import nn

PROJ = "stack.proj"
CONV_PRE = "conv_pre.conv"


def content_width(ckpt: dict) -> int | None:
    """The content code's width in a checkpoint (None without a content encoder)."""
    state = ckpt["models"].get("content_encoder")
    return None if state is None else int(state[f"{PROJ}.weight"].shape[0])


def widen_checkpoint(ckpt: dict, models: dict[str, nn.Module]) -> dict:
    """ckpt's models section with the content encoder and generator grown to ``models``' content width.

    ckpt: a training checkpoint whose content code is narrower than models' (checked by the caller);
    models: the freshly built networks, whose new rows keep their initialisation. Returns a new
    ``{name: state_dict}`` without the adversary.
    """
    old, fresh = content_width(ckpt), models["content_encoder"].state_dict()
    new = fresh[f"{PROJ}.weight"].shape[0]
    states = {k: v for k, v in ckpt["models"].items() if k != "adversary"}
    enc = dict(states["content_encoder"])
    weight, bias = fresh[f"{PROJ}.weight"].clone(), torch.zeros_like(fresh[f"{PROJ}.bias"])
    weight[:old], bias[:old] = enc[f"{PROJ}.weight"], enc[f"{PROJ}.bias"]
    enc[f"{PROJ}.weight"], enc[f"{PROJ}.bias"] = weight, bias
    gen = dict(states["generator"])
    w = gen[f"{CONV_PRE}.weight"]  # (C, old + pitch rows, k)
    zeros = torch.zeros(w.shape[0], new - old, w.shape[2], dtype=w.dtype)
    gen[f"{CONV_PRE}.weight"] = torch.cat([w[:, :old], zeros, w[:, old:]], dim=1)
    states["content_encoder"], states["generator"] = enc, gen
    return states
