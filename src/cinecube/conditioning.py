"""Prompting with images and videos: the frames a video is conditioned on, as extra clean tokens.

One way for every kind of condition (an image to animate, the clip a video extends, the two
ends of a transition or a loop): a condition is a clip (an image is one frame) and the output
frame where its first frame belongs.

- **Encoded on its own.** The causal autoencoder encodes frame 0 of a clip alone and every later
  group of tf frames together, so a clip placed anywhere but the start of a video cannot be
  encoded in place: its frames would be grouped differently, and a group would mix them with
  frames to be generated. So each condition clip is encoded by itself (`encode_clip`).
- **Appended as extra tokens at shifted times.** Its tokens join the video's segment after the
  video's own tokens (`patches.pack(..., extras=...)`), with time positions moved to where the
  clip sits: a latent frame's time is the last pixel frame it covers divided by tf (latent 0
  covers frame 0; latent j covers frames tf*(j-1)+1 .. tf*j), so a clip whose frame 0 is output
  frame f has its latent i at time f/tf + i, and in tokens (f/tf + i)/pt. Times may be
  fractional: positions are rotary angles.
- **Clean next to noisy.** The condition tokens are at t = 0 (or a small noise level) while the
  video's own tokens are denoised; the transformer takes a timestep per token, so conditioning
  is a set of tokens, not another model. After sampling they are dropped; the video's own
  tokens hold every generated frame, and the pipeline puts the user's frames back, untouched,
  where they belong.

Training (train/loop.py) draws conditions from its own clips (`draw_condition_spans`) for a
fraction of samples and takes the loss on the video's own tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .autoencoder import Autoencoder, frames_to_tensor
from .config import CONDITION_KINDS, ModelConfig
from .errors import InvalidRequestError
from .patches import Extra


@dataclass(frozen=True)
class Keyframes:
    """Frames the video must show: uint8 (T, H, W, 3) at the video's size (an image is one
    frame), from output frame `at` on. Only the first 1 + tf*k of them (the causal code's
    layout) are given to the model; the pipeline's helpers put all of them back as they were."""

    frames: np.ndarray
    at: int = 0


@dataclass(frozen=True)
class EditFrom:
    """SDEdit: start from this video (uint8 (T, H, W, 3), the request's frames and size) noised to
    `strength`: 0 returns it as it is, 1 ignores it."""

    frames: np.ndarray
    strength: float


Condition = Keyframes | EditFrom


@dataclass(frozen=True)
class ConditionLatent:
    """A condition clip encoded on its own: latent (C, T', H', W') whose frame 0 is output frame `frame`."""

    latent: Tensor
    frame: int


def layout_length(frames: int, temporal_factor: int) -> int:
    """The longest clip of at most `frames` frames that the causal code takes whole (1 + tf*k)."""
    return 1 + (frames - 1) // temporal_factor * temporal_factor


def encode_clip(autoencoder: Autoencoder, frames: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """uint8 (T, H, W, 3) with T = 1 + tf*k -> its latent (C, 1 + k, H/s, W/s), encoded on its own."""
    tf = autoencoder.config.temporal_factor
    if len(frames) != layout_length(len(frames), tf):
        raise InvalidRequestError(f"a condition clip has {len(frames)} frames; the autoencoder takes 1 + {tf}k")
    with torch.no_grad():
        return autoencoder.encode(frames_to_tensor(frames).to(device))


def extras_for(conditions: list[ConditionLatent], config: ModelConfig) -> list[Extra]:
    """The (latent, time offset in tokens) of each condition, for `patches.pack(extras=...)`."""
    tf, pt = config.autoencoder.temporal_factor, config.patch_size[0]
    return [(c.latent, c.frame / tf / pt) for c in conditions]


def draw_condition_spans(
    kind: str, frames: int, temporal_factor: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """The (first frame, frame count) of each condition clip of `kind` for a training clip of
    `frames` frames; [] when the clip is too short for the kind."""
    tf, last = temporal_factor, frames - 1
    latent_frames = 1 + (frames - 1) // tf
    if kind == "first_frame":
        return [(0, 1)]
    if kind == "last_frame":
        return [(last, 1)] if frames > 1 else []
    if kind == "first_last":
        return [(0, 1), (last, 1)] if frames > 1 else []
    if kind in ("first_clip", "last_clip"):
        if latent_frames < 3:
            return []
        length = 1 + tf * int(rng.integers(1, latent_frames - 1))  # 2 .. latent_frames-1 latent frames
        return [(0, length)] if kind == "first_clip" else [(frames - length, length)]
    if kind == "random_frames":
        count = min(frames, int(rng.integers(1, 4)))
        return [(int(f), 1) for f in sorted(rng.choice(frames, size=count, replace=False))]
    raise ValueError(f"unknown condition kind {kind!r}; allowed: {', '.join(CONDITION_KINDS)}")


def draw_kind(mix: tuple[tuple[str, float], ...], rng: np.random.Generator) -> str | None:
    """One kind from the mix (None: unconditioned, the share the weights leave)."""
    u = rng.random()
    for kind, weight in mix:
        if u < weight:
            return kind
        u -= weight
    return None


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3) scaled to cover (height, width) and centre-cropped to it (aspect kept)."""
    from PIL import Image

    t, h, w = frames.shape[:3]
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    size = (max(width, math.ceil(w * scale)), max(height, math.ceil(h * scale)))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    for i in range(t):
        resized = np.asarray(Image.fromarray(frames[i]).resize(size, Image.LANCZOS))
        out[i] = resized[top : top + height, left : left + width]
    return out
