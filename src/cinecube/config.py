"""Typed configurations with named presets.

A checkpoint stores its `ModelConfig` as JSON next to the weights, so the checkpoint alone
rebuilds the model. Presets are plain dataclass instances in a dict: no registries, no
environment variables, no `get(key, default)` lookups.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InvalidRequestError


@dataclass(frozen=True)
class TransformerConfig:
    """The diffusion transformer's shape."""

    width: int = 256  # model dimension D
    depth: int = 6  # number of blocks
    heads: int = 4  # attention heads (head dim = width / heads)
    mlp_ratio: float = 4.0
    text_dim: int = 384  # width of the text encoder's token embeddings
    rope_theta: float = 100.0  # small grids want a small base so low frequencies still turn
    # How the head dimension is split between the (t, h, w) rotary axes, as fractions.
    rope_axes: tuple[float, float, float] = (0.25, 0.375, 0.375)
    # Rotary positions per token step along (t, h, w). 1 everywhere unless the model was refined
    # from coarser cubes (see `transformer.refined_model_config`): a 1x2x2 -> 1x1x1 model keeps
    # its source's geometry with (1, 0.5, 0.5), two fine tokens per coarse one.
    rope_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.width % self.heads != 0:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if (self.width // self.heads) % 2 != 0:
            raise ValueError("head dimension must be even for rotary embeddings")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Which video compression network turns frames into latents.

    `kind="pixel"` is the identity map (frames in [-1, 1] are the latents); the trained
    causal 3D autoencoder plugs in here with its own kind.
    """

    kind: str = "pixel"
    latent_channels: int = 3
    temporal_factor: int = 1  # frames per latent frame (after the first, for causal AEs)
    spatial_factor: int = 1  # pixels per latent cell along each side
    # The causal 3D autoencoder's shape (kind="causal3d"; the pixel autoencoder ignores these).
    # One level per multiplier; every level but the last ends in a 2x spatial downsampling,
    # so spatial_factor = patch_size * 2 ** (levels - 1); the deepest log2(temporal_factor) of those
    # downsamplings also halve time.
    base_channels: int = 64
    # Space-to-depth stem (as in LTX-Video's VAE): the encoder first folds each patch_size x
    # patch_size block of pixels into channels and the decoder unfolds its output the same
    # way, so no convolution runs at full resolution. spatial_factor = patch_size * 2 ** (levels - 1).
    patch_size: int = 1
    # A linear path beside the convolutional one (in the spirit of DC-AE's space-to-channel
    # shortcuts): each tf x s x s block of pixels maps linearly to the latent cell's mean and
    # back, and the networks add residual corrections. Initialised from a PCA of the training
    # clips (`fit_linear_path`), training starts from the best linear code instead of noise.
    linear_path: bool = False
    # False: the linear path alone, no convolutional networks (a lapped transform code fitted in
    # closed form; the "linear" preset). The fields above that shape the networks are then unused.
    networks: bool = True
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    blocks_per_level: int = 2  # residual blocks per encoder level (the decoder has one more)
    norm_groups: int = 32  # GroupNorm groups; must divide every level's width


@dataclass(frozen=True)
class DiffusionConfig:
    """The training objective: a probability path and what the network predicts."""

    path: str = "flow"  # "flow" (rectified flow) or "vp" (DDPM, cosine schedule)
    prediction: str = "x0"  # flow: "velocity" | "x0";  vp: "noise" | "v" | "x0"
    # Logit-normal timestep sampling (SD3): t = sigmoid(N(mean, std)).
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # Fraction of training timesteps drawn uniformly instead (then shifted like the rest), so
    # the ends of [0, 1] that the sampler visits are trained too: logit-normal(0, 1) puts only
    # 0.2 % of its mass above t = 0.95, where every sample starts.
    uniform_fraction: float = 0.0
    # Resolution-dependent shift: more tokens carry more redundant signal, so they need more
    # noise to be destroyed. shift = sqrt(tokens / shift_base_tokens), clamped to [1, max].
    shift_base_tokens: int = 256
    shift_max: float = 3.0
    min_t_for_x0: float = 0.05  # training loss: clamp t when converting an x0 prediction to velocity
    # How the per-token velocity error is weighted over t. "velocity": plain MSE, which weighs
    # the clean-video error by 1/t^2 and so mostly trains the low-noise end. "x0": the velocity
    # error times t^2, i.e. the clean-video MSE, which gives the high-noise steps, where layout,
    # colour and motion are decided, their share (docs/training.md, "Objective and loss weighting").
    loss_weighting: str = "velocity"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from its weights."""

    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    patch_size: tuple[int, int, int] = (2, 4, 4)  # (pt, ph, pw) in latent cells
    max_frames: int = 32
    max_side: int = 512  # pixels, per side
    max_tokens: int = 16384  # per video, to refuse over-long requests
    text_max_tokens: int = 64

    @property
    def latent_channels(self) -> int:
        return self.autoencoder.latent_channels

    @property
    def patch_dim(self) -> int:
        pt, ph, pw = self.patch_size
        return self.latent_channels * pt * ph * pw

    @property
    def token_pixels(self) -> tuple[int, int]:
        """How many pixels one token covers along (height, width): a patch of latent cells,
        each the autoencoder's spatial factor wide. Allowed sides are multiples of these."""
        s = self.autoencoder.spatial_factor
        return s * self.patch_size[1], s * self.patch_size[2]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


# How a training video can be conditioned on its own frames (see cinecube/conditioning.py), and
# the share of samples each kind gets by default; the rest are plain text-to-video. First frames
# dominate, as in Open-Sora's and LTX-Video's mixes; the ends and clips serve extension,
# connection and loops.
CONDITION_KINDS = ("first_frame", "last_frame", "first_last", "first_clip", "last_clip", "random_frames")
DEFAULT_CONDITIONING: tuple[tuple[str, float], ...] = (
    ("first_frame", 0.10),
    ("first_last", 0.04),
    ("last_frame", 0.03),
    ("first_clip", 0.04),
    ("last_clip", 0.03),
    ("random_frames", 0.01),
)


@dataclass(frozen=True)
class TrainConfig:
    """How one training run goes. Saved in every checkpoint next to the model config."""

    steps: int = 1000
    tokens_per_step: int = 4096  # token budget that fills each step (packing)
    max_tokens_per_video: int = 1024  # a drawn video above this is re-drawn smaller
    lr: float = 5e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    cooldown_steps: int = 0  # > 0: lr decays linearly to 0 over the last this many steps
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    # Which training videos are conditioned on some of their own frames, and how: (kind, share)
    # pairs of CONDITION_KINDS; the share they leave is plain text-to-video (cinecube/conditioning.py).
    conditioning: tuple[tuple[str, float], ...] = DEFAULT_CONDITIONING
    condition_noise: float = 0.0  # the noise level (t) of conditioning tokens: 0 is clean
    bf16: bool = False  # autocast, where bf16 matmuls measure faster (train.loop.bf16_supported)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    world_max_frames: int = 16
    world_canvases: tuple[tuple[int, int], ...] = ()  # empty: the world's training canvases
    world_frame_counts: tuple[int, ...] = ()  # empty: the world's training frame counts

    def __post_init__(self) -> None:
        # One line naming the field (the CLI's --flag has the same name), before any work.
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise InvalidRequestError(f"--{name.replace('_', '-')} must be {allowed}, got {getattr(self, name)!r}")

        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        need(isinstance(self.steps, int) and self.steps >= 0, "steps", "0 or more")
        for name in ("tokens_per_step", "max_tokens_per_video", "log_every", "sample_every", "checkpoint_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "a positive integer")
        need(finite(self.lr) and self.lr > 0, "lr", "a positive number")
        need(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "0 or more")
        need(
            all(finite(b) and 0 <= b < 1 for b in self.betas) and len(self.betas) == 2, "betas", "two numbers in [0, 1)"
        )
        need(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", "0 or more")
        need(
            isinstance(self.cooldown_steps, int) and 0 <= self.cooldown_steps <= self.steps,
            "cooldown_steps",
            f"0..{self.steps} (the run's steps)",
        )
        need(finite(self.grad_clip) and self.grad_clip > 0, "grad_clip", "a positive number")
        need(finite(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", "a number in [0, 1)")
        need(finite(self.caption_dropout) and 0 <= self.caption_dropout <= 1, "caption_dropout", "0..1")
        need(isinstance(self.keep_checkpoints, int) and self.keep_checkpoints >= 0, "keep_checkpoints", "0 or more")
        need(finite(self.condition_noise) and 0 <= self.condition_noise < 1, "condition_noise", "a number in [0, 1)")
        need(
            all(len(e) == 2 and e[0] in CONDITION_KINDS and finite(e[1]) and e[1] >= 0 for e in self.conditioning)
            and sum(e[1] for e in self.conditioning) <= 1 + 1e-9,
            "conditioning",
            f"(kind, share) pairs of {', '.join(CONDITION_KINDS)} with shares adding up to at most 1",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) frozen dataclass from `asdict` output; JSON lists become tuples."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls.__name__, name))
        kwargs[name] = _from_dict(nested, value) if nested is not None else _to_tuples(value)
    return cls(**kwargs)


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


_NESTED: dict[tuple[str, str], type] = {
    ("ModelConfig", "transformer"): TransformerConfig,
    ("ModelConfig", "autoencoder"): AutoencoderConfig,
    ("ModelConfig", "diffusion"): DiffusionConfig,
}


# Named presets. `tiny` is for tests (seconds), `small` is the bundled default trained on a
# 2-core CPU, `base` and `large` are for GPUs.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        transformer=TransformerConfig(width=64, depth=2, heads=2),
        text_max_tokens=32,
    ),
    # 4x4x4 pixel cubes: 192 values per token (below the width, so the noise fits) and a
    # quarter of the tokens of 1x4x4, so a 2-core CPU sees several times more videos per hour.
    "small": ModelConfig(
        transformer=TransformerConfig(width=256, depth=6, heads=4),
        diffusion=DiffusionConfig(loss_weighting="x0", uniform_fraction=0.5),
        patch_size=(4, 4, 4),
    ),
    "base": ModelConfig(
        transformer=TransformerConfig(width=768, depth=12, heads=12, rope_theta=10000.0),
    ),
    "large": ModelConfig(
        transformer=TransformerConfig(width=1152, depth=28, heads=16, rope_theta=10000.0),
    ),
}

# Video compression networks. `tiny` is for tests, `small` trains on a CPU, `base` (the
# field defaults) is the GPU-scale network: 4x temporal, 8x spatial, 16 latent channels.
AUTOENCODER_PRESETS: dict[str, AutoencoderConfig] = {
    "tiny": AutoencoderConfig(
        kind="causal3d",
        latent_channels=8,
        temporal_factor=4,
        spatial_factor=8,
        base_channels=8,
        channel_multipliers=(1, 2, 2, 4),
        blocks_per_level=1,
        norm_groups=4,
    ),
    # A 2x2 space-to-depth stem, then levels at 1/2, 1/4 and 1/8 size (widths 48, 96, 192; the
    # two deeper downsamplings also halve time), 16.7 M parameters: no convolution runs at full
    # resolution, where most of a video autoencoder's time goes (docs/autoencoder.md).
    "small": AutoencoderConfig(
        kind="causal3d",
        latent_channels=16,
        temporal_factor=4,
        spatial_factor=8,
        patch_size=2,
        base_channels=48,
        channel_multipliers=(1, 2, 4),
        blocks_per_level=1,
        norm_groups=8,
        linear_path=True,
    ),
    # The bundled one: the linear code alone (PCA encoder, 3x3 least-squares decoder), 0.12 M
    # parameters, fitted in closed form in under a minute; "small" trains networks on top of it.
    "linear": AutoencoderConfig(
        kind="causal3d", latent_channels=16, temporal_factor=4, spatial_factor=8, linear_path=True, networks=False
    ),
    "base": AutoencoderConfig(kind="causal3d", latent_channels=16, temporal_factor=4, spatial_factor=8),
}

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        steps=200,
        tokens_per_step=1024,
        max_tokens_per_video=512,
        warmup_steps=20,
        sample_every=100,
        checkpoint_every=50,
        world_max_frames=8,
    ),
    # fp32: the small model's batches are many short videos, where elementwise work and casts,
    # not matmuls, dominate a step and bf16 autocast does not pay (docs/training.md).
    "small": TrainConfig(
        steps=20000,
        tokens_per_step=4096,
        max_tokens_per_video=1024,
        warmup_steps=300,
        ema_decay=0.998,
        sample_every=250,
    ),
    "base": TrainConfig(
        steps=200000,
        tokens_per_step=65536,
        max_tokens_per_video=16384,
        lr=2e-4,
        warmup_steps=2000,
        bf16=True,
        world_max_frames=32,
    ),
    "large": TrainConfig(
        steps=400000,
        tokens_per_step=131072,
        max_tokens_per_video=16384,
        lr=1e-4,
        warmup_steps=5000,
        bf16=True,
        world_max_frames=32,
    ),
}
