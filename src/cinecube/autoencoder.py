"""The video compression network: the interface, the pixel-space identity, and the causal 3D
video autoencoder.

The pipeline and the training loop see only `Autoencoder`: frames in, latents out, and the
sizes that are allowed. The trained causal 3D autoencoder implements the same interface and
drops in without touching the transformer.

The causal 3D autoencoder (`kind="causal3d"`, in the manner of the CogVideoX, Open-Sora-Plan
and Wan causal VAEs) maps

    video (B, 3, 1 + k*tf, H, W) in [-1, 1]  <->  latent (B, C, 1 + k, H/s, W/s)

With `patch_size` p > 1 the encoder starts by folding p x p pixel blocks into channels and
the decoder ends by unfolding them (space-to-depth, as in LTX-Video's VAE), so the costly
full-resolution convolutions are gone; s = p * 2 ** (levels - 1).

Frame 0 becomes latent frame 0 on its own and every later group of tf frames one latent
frame, so an image is a one-latent-frame video in the same latent space. Every convolution
is causal in time (past-side padding; copies of frame 0 at the start) and every norm works
on one frame at a time, so no output depends on a later frame. That is what makes chunked
processing exact: a video can be encoded or decoded a few frames at a time, each causal
convolution keeping the last frames it needs from the previous chunk, with bounded memory
and the same result as one pass (to float rounding, ~1e-6). Spatial tiling, for large frames,
is an approximation: tiles overlap and are blended linearly, and each tile sees zero padding
and its own GroupNorm statistics at its borders (see tests/test_autoencoder.py for the
tolerance measured on the tiny network).

Frame counts outside 1 + tf*k are refused with an InvalidRequestError naming the nearest
allowed counts, not padded or cropped silently: the caller knows whether to trim or repeat.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AutoencoderConfig, ModelConfig
from .errors import CheckpointError, InvalidRequestError
from .train.checkpoint import load_checkpoint, load_weights_into, save_checkpoint


class Autoencoder(nn.Module, ABC):
    """video (3, T, H, W) in [-1, 1]  <->  latent (C, T', H', W')."""

    config: AutoencoderConfig

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def latent_frames(self, frames: int) -> int:
        """Causal temporal compression: the first frame alone, then groups of temporal_factor."""
        return 1 + (frames - 1) // self.config.temporal_factor

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.config.temporal_factor

    def latent_frames_covering(self, frames: int) -> int:
        """The fewest latent frames whose decoding has at least `frames` frames (generation
        makes those and drops the surplus, so any frame count can be asked for)."""
        return 1 + -(-(frames - 1) // self.config.temporal_factor)

    def frames_covering(self, frames: int) -> int:
        """How many frames generation makes for a request of `frames` (before dropping the surplus)."""
        return self.pixel_frames(self.latent_frames_covering(frames))

    def valid_frames(self, frames: int) -> bool:
        return frames >= 1 and (frames - 1) % self.config.temporal_factor == 0

    @abstractmethod
    def encode(self, video: Tensor) -> Tensor: ...

    @abstractmethod
    def decode(self, latent: Tensor) -> Tensor: ...


class PixelAutoencoder(Autoencoder):
    """The identity: latents are the frames themselves, scaled to [-1, 1]."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config or AutoencoderConfig()
        if (self.config.latent_channels, self.config.temporal_factor, self.config.spatial_factor) != (3, 1, 1):
            raise ValueError("the pixel autoencoder has 3 channels and no compression")

    def encode(self, video: Tensor) -> Tensor:
        return video

    def decode(self, latent: Tensor) -> Tensor:
        return latent.clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# The causal 3D autoencoder
# --------------------------------------------------------------------------------------------

# What each causal convolution keeps between the chunks of one video: the input frames its
# next output window still needs. An empty cache means "this is the start of the video".
CausalCache = dict[nn.Module, Tensor]

# Chunked processing is exact, so it is the default: frame 0, then this many latent frames
# (tf times as many pixel frames) at a time.
CHUNK_LATENT_FRAMES = 4
TILE_OVERLAP = 32          # pixels; the default overlap of spatial tiles


class CausalConv3d(nn.Conv3d):
    """A 3D convolution that never looks at later frames.

    Space is zero-padded on both sides as usual. Time is padded on the past side only, with
    kernel_t - 1 frames: at the start of a video, copies of frame 0 (so frame 0 is computed
    from itself alone and an image encodes like the first frame of a video); in later chunks,
    the frames this layer kept from the previous chunk in `cache`, which makes chunked
    processing equal to one pass over the whole video.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__(in_channels, out_channels, kernel, stride=stride,
                         padding=(0, kernel[1] // 2, kernel[2] // 2))

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:   # (B, C, T, H, W)
        kt, st = self.kernel_size[0], self.stride[0]
        if kt > 1:
            if cache is not None and self in cache:
                past = cache[self]
            else:
                past = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)
            x = torch.cat([past, x], dim=2)                                  # (B, C, kt-1+T, H, W)
            if cache is not None:
                # The next chunk's first window starts right after the last window used here;
                # with chunks aligned to the strides that leaves kt - st frames.
                windows = (x.shape[2] - kt) // st + 1
                cache[self] = x[:, :, windows * st:]
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own.

    Statistics over (T, H, W) would let frame 0 depend on later frames: neither causal nor
    chunkable. Per frame, normalisation is both.
    """

    def forward(self, x: Tensor) -> Tensor:                                 # (B, C, T, H, W)
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))      # (B*T, C, H, W)
        return y.view(b, t, c, h, w).transpose(1, 2)


class ResidualBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))), projecting x with a 1x1x1 conv if the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = FrameGroupNorm(groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:   # (B, C, T, H, W)
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W with a strided conv; with `temporal`, also halve time, frame 0 kept alone.

    The temporal conv has kernel 3, stride 2 and two frames of causal padding: output 0 sees
    frame 0 only, output i >= 1 sees frames 2i-2, 2i-1, 2i. So 1 + 2k frames become 1 + k.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2))
        self.temporal = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None
        if self.temporal is not None:
            # Start as the mean of the window, a plain temporal resampling that training refines.
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.bias.zero_()
                for c in range(channels):
                    self.temporal.weight[c, c, :, 0, 0] = 1.0 / 3.0

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        x = self.spatial(x)                                                  # (B, C, T, H/2, W/2)
        if self.temporal is not None:
            x = self.temporal(x, cache)                                      # (B, C, 1 + (T-1)/2, H/2, W/2)
        return x


class Upsample(nn.Module):
    """Double H and W (nearest + conv); with `temporal`, also double time, frame 0 kept alone.

    The temporal conv (causal, kernel 3) makes two frames' worth of channels from each
    frame; they are interleaved into 2T frames and the very first one is dropped, so 1 + k
    frames become 1 + 2k, mirroring `Downsample`.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3))
        if self.temporal is not None:
            # Start as "repeat the current frame twice" (nearest upsampling in time).
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.bias.zero_()
                for c in range(channels):
                    self.temporal.weight[c, c, -1, 0, 0] = 1.0
                    self.temporal.weight[channels + c, c, -1, 0, 0] = 1.0

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:   # (B, C, T, H, W)
        if self.temporal is not None:
            video_start = cache is None or self.temporal not in cache
            y = self.temporal(x, cache)                                      # (B, 2C, T, H, W)
            b, c2, t, h, w = y.shape
            y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5)     # (B, C, T, 2, H, W)
            x = y.reshape(b, c2 // 2, 2 * t, h, w)                           # (B, C, 2T, H, W)
            if video_start:
                x = x[:, :, 1:]                                              # (B, C, 2T-1, H, W)
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")   # (B, C, T', 2H, 2W)
        return self.spatial(x)


def _temporal_steps(config: AutoencoderConfig) -> list[bool]:
    """Which of the levels-1 spatial downsamplings also halve time: the deepest log2(tf).

    Compressing time where frames are small is cheap, and the high-resolution levels still
    see every frame (as in Wan's VAE).
    """
    steps = len(config.channel_multipliers) - 1
    temporal = int(round(math.log2(config.temporal_factor)))
    return [i >= steps - temporal for i in range(steps)]


class Encoder(nn.Module):
    """video (B, 3, 1 + k*tf, H, W) -> moments (B, 2C, 1 + k, H/s, W/s): posterior mean and log-variance."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.tf, self.s = config.temporal_factor, config.spatial_factor
        # pixel block (3*tf*s*s values) -> latent mean (C), see AutoencoderConfig.linear_path
        self.linear_path = (nn.Conv3d(3 * self.tf * self.s ** 2, config.latent_channels, 1)
                            if config.linear_path else None)
        self.networks = config.networks
        if not self.networks:
            # The linear code alone: a learned posterior log-variance per channel.
            self.logvar = nn.Parameter(torch.full((config.latent_channels,), -8.0))
            return
        widths = [config.base_channels * m for m in config.channel_multipliers]
        temporal = _temporal_steps(config)
        groups = config.norm_groups
        self.patch = config.patch_size
        self.conv_in = CausalConv3d(3 * self.patch ** 2, widths[0])
        blocks: list[nn.Module] = []
        channels = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                blocks.append(ResidualBlock(channels, width, groups))
                channels = width
            if level < len(widths) - 1:
                blocks.append(Downsample(channels, temporal[level]))
        blocks += [ResidualBlock(channels, channels, groups), ResidualBlock(channels, channels, groups)]
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = FrameGroupNorm(groups, channels)
        self.conv_out = CausalConv3d(channels, 2 * config.latent_channels)

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        video = x
        if not self.networks:
            mean = self._linear(video, cache)                                # (B, C, T', H', W')
            return torch.cat([mean, self.logvar.view(1, -1, 1, 1, 1).expand_as(mean)], dim=1)
        x = space_to_depth(x, self.patch)                                    # (B, 3p^2, T, H/p, W/p)
        x = self.conv_in(x, cache)                                           # (B, C0, T, H/p, W/p)
        for block in self.blocks:
            x = block(x, cache)
        moments = self.conv_out(F.silu(self.norm_out(x)), cache)            # (B, 2C, T', H', W')
        if self.linear_path is not None:
            mean = self._linear(video, cache)                                # (B, C, T', H', W')
            moments = moments + torch.cat([mean, torch.zeros_like(mean)], dim=1)
        return moments

    def _linear(self, video: Tensor, cache: CausalCache | None) -> Tensor:   # (B, 3, T, H, W) -> (B, C, T', H', W')
        start = _video_start(self.linear_path, cache)
        return self.linear_path(fold_blocks(video, self.tf, self.s, start))


class Decoder(nn.Module):
    """latent (B, C, 1 + k, h, w) -> video (B, 3, 1 + k*tf, h*s, w*s), unclamped."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.tf, self.s = config.temporal_factor, config.spatial_factor
        # latent cell and its 8 neighbours (C x 3 x 3, edges repeated) -> pixel block (3*tf*s*s
        # values), see AutoencoderConfig.linear_path: neighbours undo the blocking a
        # cell-by-cell code leaves.
        self.linear_path = (nn.Conv3d(config.latent_channels, 3 * self.tf * self.s ** 2, (1, 3, 3))
                            if config.linear_path else None)
        self.networks = config.networks
        if not self.networks:
            return
        widths = [config.base_channels * m for m in config.channel_multipliers]
        temporal = _temporal_steps(config)
        groups = config.norm_groups
        channels = widths[-1]
        self.conv_in = CausalConv3d(config.latent_channels, channels)
        blocks: list[nn.Module] = [ResidualBlock(channels, channels, groups),
                                   ResidualBlock(channels, channels, groups)]
        for level in reversed(range(len(widths))):
            # One block more than the encoder: decoding is the harder direction.
            for _ in range(config.blocks_per_level + 1):
                blocks.append(ResidualBlock(channels, widths[level], groups))
                channels = widths[level]
            if level > 0:
                blocks.append(Upsample(channels, temporal[level - 1]))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = FrameGroupNorm(groups, channels)
        self.patch = config.patch_size
        self.conv_out = CausalConv3d(channels, 3 * self.patch ** 2)

    def _linear(self, z: Tensor, start: bool) -> Tensor:                    # (B, C, T', h, w) -> (B, 3, T, H, W)
        blocks = self.linear_path(F.pad(z, (1, 1, 1, 1, 0, 0), mode="replicate"))   # (B, 3*tf*s*s, T', h, w)
        return unfold_blocks(blocks, self.tf, self.s, start)

    def forward(self, z: Tensor, cache: CausalCache | None = None) -> Tensor:
        start = self.linear_path is not None and _video_start(self.linear_path, cache)
        if not self.networks:
            return self._linear(z, start)
        x = self.conv_in(z, cache)                                           # (B, Cmax, T', h, w)
        for block in self.blocks:
            x = block(x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)                   # (B, 3p^2, T, H/p, W/p)
        video = depth_to_space(x, self.patch)                                # (B, 3, T, H, W)
        if self.linear_path is not None:
            video = video + self._linear(z, start)
        return video


def _video_start(module: nn.Module, cache: CausalCache | None) -> bool:
    """Whether this call sees the start of a video (no cache, or `module` not yet in it); marks it seen."""
    if cache is None:
        return True
    if module in cache:
        return False
    cache[module] = torch.empty(0)
    return True


def fold_blocks(video: Tensor, tf: int, s: int, video_start: bool) -> Tensor:
    """(B, 3, T, H, W) -> (B, 3*tf*s*s, T', H/s, W/s): each latent cell's pixels as one vector.

    At the start of a video frame 0 stands for a whole block on its own (tf copies of it), as
    in the causal layout; later frames come in whole groups of tf.
    """
    if video_start:
        video = torch.cat([video[:, :, :1].expand(-1, -1, tf - 1, -1, -1), video], dim=2)
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tf, tf, h // s, s, w // s, s)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)                                   # (B, 3, tf, s, s, T', H/s, W/s)
    return x.reshape(b, c * tf * s * s, t // tf, h // s, w // s)


def unfold_blocks(blocks: Tensor, tf: int, s: int, video_start: bool) -> Tensor:
    """(B, 3*tf*s*s, T', h, w) -> (B, 3, T, h*s, w*s), the inverse of fold_blocks (frame 0 is
    the last frame of the first block)."""
    b, n, t, h, w = blocks.shape
    c = n // (tf * s * s)
    x = blocks.reshape(b, c, tf, s, s, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)   # (B, 3, T', tf, h, s, w, s)
    video = x.reshape(b, c, t * tf, h * s, w * s)
    return video[:, :, tf - 1:] if video_start else video


@torch.no_grad()
def fit_linear_path(model: "CausalVideoAutoencoder", videos: Iterable[Tensor],
                    ridge: float = 1e-3) -> dict[str, float]:
    """Fit the linear path in closed form on `videos` ((3, T, H, W) in [-1, 1], on the grid):

    - encoder: the principal components of the pixel blocks (PCA, the best linear code of C
      numbers per block);
    - decoder: the least-squares map from a latent cell and its 8 neighbours to the cell's
      pixel block (ridge-regularised), which removes most of the blocking of a per-block code
      (measured: +1.0 dB over the PCA's own reconstruction on the fit clips, ~+0.8 dB on
      the held-out real clips);

    and quieten the networks (outputs at a tenth of their initial scale, so the linear code
    dominates and every layer still gets gradients; outputs zeroed outright sit on a saddle
    where nothing moves). Returns {"blocks": how many blocks were used, "explained": the share
    of the block variance the C components keep, "pca_mse" / "mse": the mean squared error
    (in [-1, 1] units) on these videos of the PCA's own reconstruction and of the fitted decoder}.
    """
    encoder, decoder = model.encoder, model.decoder
    if encoder.linear_path is None:
        raise ValueError("this autoencoder has no linear path (AutoencoderConfig.linear_path=False)")
    c, tf, s = model.config.latent_channels, encoder.tf, encoder.s
    folded = []
    for video in videos:
        x, _ = model._video_batch(video)
        folded.append(fold_blocks(x.float(), tf, s, True))                 # (B, N, T', h, w); float64 below
    if not folded:
        raise ValueError("fit_linear_path needs at least one video")
    n = folded[0].shape[1]

    # PCA of the blocks.
    total, outer, count = torch.zeros(n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64), 0
    for blocks in folded:
        flat = blocks.permute(0, 2, 3, 4, 1).reshape(-1, n).double()        # (cells, N)
        total += flat.sum(0)
        outer += flat.T @ flat
        count += flat.shape[0]
    mean = total / count                                                   # (N,)
    values, vectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))     # ascending
    basis = vectors[:, values.argsort(descending=True)[:c]]                # (N, C), orthonormal
    explained = float(values.sort(descending=True).values[:c].sum() / values.sum())

    # Least squares from the 3x3 neighbourhood of latent cells (edges repeated, as the decoder
    # pads) to the centre cell's block: normal equations over cells.
    features = 9 * c + 1
    gram = torch.zeros(features, features, dtype=torch.float64)
    cross = torch.zeros(features, n, dtype=torch.float64)
    pca_error = y_square = 0.0
    for blocks in folded:
        centred = blocks.double() - mean.view(1, n, 1, 1, 1)
        z = torch.einsum("bntij,nc->bctij", centred, basis)                 # (B, C, T', h, w)
        padded = F.pad(z, (1, 1, 1, 1, 0, 0), mode="replicate")
        h, w = z.shape[-2:]
        shifts = [padded[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
        f = torch.cat(shifts + [torch.ones_like(z[:, :1])], dim=1)          # (B, 9C+1, T', h, w)
        f = f.permute(0, 2, 3, 4, 1).reshape(-1, features)
        y = centred.permute(0, 2, 3, 4, 1).reshape(-1, n)
        gram += f.T @ f
        cross += f.T @ y
        pca_error += float((y - (y @ basis) @ basis.T).square().sum())
        y_square += float(y.square().sum())
    damping = ridge * float(gram.diagonal().mean())
    solution = torch.linalg.solve(gram + damping * torch.eye(features, dtype=torch.float64), cross)  # (9C+1, N)
    # Error of the fit from the normal equations: sum |y|^2 - 2 tr(W^T X^T y) + tr(W^T X^T X W).
    fit_error = y_square - 2 * float((solution * cross).sum()) + float((solution * (gram @ solution)).sum())

    dtype = encoder.linear_path.weight.dtype
    encoder.linear_path.weight.copy_(basis.T.reshape(c, n, 1, 1, 1).to(dtype))
    encoder.linear_path.bias.copy_((-basis.T @ mean).to(dtype))
    kernel = solution[:-1].view(3, 3, c, n).permute(3, 2, 0, 1)             # (N, C, 3, 3): [dy, dx] taps
    decoder.linear_path.weight.copy_(kernel.unsqueeze(2).to(dtype))         # (N, C, 1, 3, 3)
    decoder.linear_path.bias.copy_((solution[-1] + mean).to(dtype))
    if encoder.networks:
        for conv in (encoder.conv_out, decoder.conv_out):
            conv.weight.mul_(0.1)
            conv.bias.zero_()
        # A tiny posterior variance (exp(-8) ~ 3e-4) so that sampling does not drown the weaker components.
        encoder.conv_out.weight[c:].zero_()
        encoder.conv_out.bias[c:] = -8.0
    return {"blocks": count, "explained": explained, "pca_mse": pca_error / (count * n),
            "mse": fit_error / (count * n)}


def space_to_depth(x: Tensor, p: int) -> Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p): each p x p pixel block becomes channels."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)  # (B, C, p, p, T, H/p, W/p)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: Tensor, p: int) -> Tensor:
    """(B, C*p*p, T, h, w) -> (B, C, T, h*p, w*p), the inverse of space_to_depth."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.view(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)            # (B, C, T, h, p, w, p)
    return x.reshape(b, c, t, h * p, w * p)


@dataclass
class DiagonalGaussian:
    """The encoder's posterior q(z | x) = N(mean, exp(logvar)), independent per latent element."""

    mean: Tensor
    logvar: Tensor

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(-30.0, 20.0)       # keeps exp() finite early in training

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=device)
        return self.mean + torch.exp(0.5 * self.logvar) * noise.to(self.mean.device)

    def kl(self) -> Tensor:
        """KL(q || N(0, I)), averaged over latent elements."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar).mean()


def _check_config(config: AutoencoderConfig) -> None:
    levels = len(config.channel_multipliers)
    tf, s = config.temporal_factor, config.spatial_factor
    if config.kind != "causal3d":
        raise ValueError(f"CausalVideoAutoencoder needs kind='causal3d', got {config.kind!r}")
    if levels < 1 or min(config.channel_multipliers) < 1 or config.base_channels < 1:
        raise ValueError("channel_multipliers and base_channels must be positive, with at least one level")
    if not config.networks:
        if not config.linear_path:
            raise ValueError("an autoencoder without networks needs the linear path (linear_path=True)")
        if tf < 1 or s < 1 or config.latent_channels < 1:
            raise ValueError("temporal_factor, spatial_factor and latent_channels must be at least 1")
        return
    p = config.patch_size
    if p < 1:
        raise ValueError(f"patch_size must be at least 1, got {p}")
    if s != p * 2 ** (levels - 1):
        raise ValueError(f"spatial_factor {s} must be patch_size * 2 ** (levels - 1) = {p * 2 ** (levels - 1)} "
                         f"for patch_size {p} and {levels} channel multipliers")
    if tf < 1 or tf & (tf - 1) or tf > 2 ** (levels - 1):
        raise ValueError(f"temporal_factor {tf} must be a power of two from 1 to 2 ** (levels - 1) = "
                         f"{2 ** (levels - 1)} (one halving of time per spatial downsampling)")
    if config.latent_channels < 1 or config.blocks_per_level < 1:
        raise ValueError("latent_channels and blocks_per_level must be at least 1")
    for m in config.channel_multipliers:
        if (config.base_channels * m) % config.norm_groups:
            raise ValueError(f"norm_groups {config.norm_groups} does not divide the width "
                             f"{config.base_channels * m}")


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` overlapping by at least `overlap`, covering `size`."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]       # the last tile is moved back to end at the border


def _ramp(n: int, width: int, rising: bool, falling: bool) -> Tensor:
    """Blend weights along one axis of a tile: 1 inside, a linear ramp over `width` cells at
    each side that overlaps a neighbour, never 0 (so the weight sum is never 0)."""
    w = torch.ones(n)
    r = min(width, n)
    if r > 0:
        up = torch.arange(1, r + 1, dtype=torch.float32) / (r + 1)
        if rising:
            w[:r] = torch.minimum(w[:r], up)
        if falling:
            w[n - r:] = torch.minimum(w[n - r:], up.flip(0))
    return w


def _tiled(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, up: int, down: int) -> Tensor:
    """Apply `fn` to overlapping spatial tiles of x (B, C, T, H, W) and blend the results.

    fn maps a (B, C, T, h, w) tile to (B, C', T', h*up/down, w*up/down). Each result is
    weighted by linear ramps across the overlaps it shares with its neighbours, and the
    weighted sum is divided by the summed weights, so seams fade out over the overlap.
    """
    height, width = x.shape[-2:]
    out_h, out_w = height * up // down, width * up // down
    ramp = overlap * up // down
    out = weight = None
    for r in _tile_starts(height, tile, overlap):
        for c in _tile_starts(width, tile, overlap):
            y = fn(x[..., r:r + tile, c:c + tile])                           # (B, C', T', th, tw)
            if out is None:
                out = y.new_zeros(*y.shape[:3], out_h, out_w)
                weight = y.new_zeros(out_h, out_w)
            th, tw = y.shape[-2:]
            w = (_ramp(th, ramp, r > 0, r + tile < height)[:, None]
                 * _ramp(tw, ramp, c > 0, c + tile < width)[None, :]).to(y)  # (th, tw)
            r0, c0 = r * up // down, c * up // down
            out[..., r0:r0 + th, c0:c0 + tw] += y * w
            weight[r0:r0 + th, c0:c0 + tw] += w
    return out / weight


class CausalVideoAutoencoder(Autoencoder):
    """The causal 3D VAE: video (3, 1 + k*tf, H, W) <-> scaled latent (C, 1 + k, H/s, W/s).

    Every public method also takes a batch, (B, 3, T, H, W) or (B, C, T', H', W'), and returns
    the same rank it was given.

    - `encode` returns the posterior mean (or a sample) normalised by the latent statistics,
      `decode` undoes them and returns frames clamped to [-1, 1];
    - `chunk` (latent frames per chunk after the first; None = one pass) bounds memory in
      time, exactly; `tile_size`/`tile_overlap` (pixels; None = no tiling) bound it in space,
      approximately;
    - `forward` is the training pass: a posterior sample decoded in one pass, unscaled and
      unclamped, with the posterior for the KL term.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        _check_config(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Per-channel latent statistics, saved with the weights. The diffusion model wants
        # ~zero-mean unit-variance latents: encode returns (z - shift) * scale.
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------ input checks

    def _video_batch(self, video: Tensor) -> tuple[Tensor, bool]:
        """(3, T, H, W) or (B, 3, T, H, W) -> (B, 3, T, H, W), whether it was batched; or a clear error."""
        if not isinstance(video, Tensor) or video.dim() not in (4, 5) or video.shape[-4] != 3:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise InvalidRequestError(f"video has shape {shape}; expected (3, T, H, W) or (B, 3, T, H, W)")
        frames, height, width = video.shape[-3:]
        tf, s = self.config.temporal_factor, self.config.spatial_factor
        if not self.valid_frames(frames):
            lower = 1 + (frames - 1) // tf * tf
            fix = f"crop it to {lower} or pad it to {lower + tf}" if frames > 1 else "give at least 1"
            raise InvalidRequestError(f"video has {frames} frames; the causal layout holds 1 + {tf}k frames "
                                      f"(1, {1 + tf}, {1 + 2 * tf}, ...): {fix}")
        for name, size in (("height", height), ("width", width)):
            if size < s or size % s:
                raise InvalidRequestError(f"video {name} {size} is not allowed: height and width must be "
                                          f"multiples of {s} (one latent cell), at least {s}")
        batched = video.dim() == 5
        return (video if batched else video[None]).to(self._dtype()), batched

    def _latent_batch(self, latent: Tensor) -> tuple[Tensor, bool]:
        c = self.config.latent_channels
        if (not isinstance(latent, Tensor) or latent.dim() not in (4, 5) or latent.shape[-4] != c
                or min(latent.shape[-3:]) < 1):
            shape = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise InvalidRequestError(f"latent has shape {shape}; expected ({c}, T', H', W') or (B, {c}, T', H', W')")
        batched = latent.dim() == 5
        return (latent if batched else latent[None]).to(self._dtype()), batched

    def _check_tiles(self, tile_size: int | None, tile_overlap: int) -> None:
        s = self.config.spatial_factor
        if tile_size is None:
            return
        if tile_size % s or tile_overlap % s or not 0 <= tile_overlap < tile_size:
            raise InvalidRequestError(f"tile_size {tile_size} and tile_overlap {tile_overlap} must be multiples "
                                      f"of {s} with 0 <= tile_overlap < tile_size")

    # ------------------------------------------------------------------------ chunks in time

    def _encode_chunks(self, x: Tensor, chunk: int | None) -> Tensor:
        """(B, 3, T, H, W) -> moments (B, 2C, T', H', W'), frame 0 first, then chunk*tf frames at a time."""
        if chunk is None:
            return self.encoder(x)
        cache: CausalCache = {}
        step = chunk * self.config.temporal_factor
        pieces = [self.encoder(x[:, :, :1], cache)]
        pieces += [self.encoder(x[:, :, i:i + step], cache) for i in range(1, x.shape[2], step)]
        return torch.cat(pieces, dim=2)

    def _decode_chunks(self, z: Tensor, chunk: int | None) -> Tensor:
        """(B, C, T', h, w) -> (B, 3, T, H, W), latent frame 0 first, then chunk latent frames at a time."""
        if chunk is None:
            return self.decoder(z)
        cache: CausalCache = {}
        pieces = [self.decoder(z[:, :, :1], cache)]
        pieces += [self.decoder(z[:, :, i:i + chunk], cache) for i in range(1, z.shape[2], chunk)]
        return torch.cat(pieces, dim=2)

    # ------------------------------------------------------------------------ public API

    def posterior(self, video: Tensor, *, chunk: int | None = CHUNK_LATENT_FRAMES,
                  tile_size: int | None = None, tile_overlap: int = TILE_OVERLAP) -> DiagonalGaussian:
        """The unscaled latent distribution of a video; mean and logvar (C, T', H', W') (or batched)."""
        x, batched = self._video_batch(video)
        if chunk is not None and chunk < 1:
            raise InvalidRequestError(f"chunk {chunk} must be at least 1 latent frame (or None for one pass)")
        self._check_tiles(tile_size, tile_overlap)
        if tile_size is None:
            moments = self._encode_chunks(x, chunk)                          # (B, 2C, T', H', W')
        else:
            moments = _tiled(lambda part: self._encode_chunks(part, chunk), x, tile_size, tile_overlap,
                             up=1, down=self.config.spatial_factor)
        mean, logvar = moments.chunk(2, dim=1)
        if not batched:
            mean, logvar = mean[0], logvar[0]
        return DiagonalGaussian(mean, logvar)

    def encode(self, video: Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
               chunk: int | None = CHUNK_LATENT_FRAMES, tile_size: int | None = None,
               tile_overlap: int = TILE_OVERLAP) -> Tensor:
        """video (3, T, H, W) in [-1, 1] -> scaled latent (C, T', H', W'): the posterior mean, or a sample."""
        posterior = self.posterior(video, chunk=chunk, tile_size=tile_size, tile_overlap=tile_overlap)
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize_latent(z)

    def decode(self, latent: Tensor, *, chunk: int | None = CHUNK_LATENT_FRAMES,
               tile_size: int | None = None, tile_overlap: int = TILE_OVERLAP) -> Tensor:
        """scaled latent (C, T', H', W') -> video (3, 1 + (T'-1)*tf, H'*s, W'*s) in [-1, 1]."""
        z, batched = self._latent_batch(latent)
        if chunk is not None and chunk < 1:
            raise InvalidRequestError(f"chunk {chunk} must be at least 1 latent frame (or None for one pass)")
        self._check_tiles(tile_size, tile_overlap)
        z = self.denormalize_latent(z)
        s = self.config.spatial_factor
        if tile_size is None:
            video = self._decode_chunks(z, chunk)                            # (B, 3, T, H, W)
        else:
            video = _tiled(lambda part: self._decode_chunks(part, chunk), z, tile_size // s,
                           tile_overlap // s, up=s, down=1)
        video = video.clamp(-1, 1)
        return video if batched else video[0]

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """Training pass: (B, 3, T, H, W) -> (reconstruction (B, 3, T, H, W), unscaled posterior)."""
        x, _ = self._video_batch(video)
        mean, logvar = self.encoder(x).chunk(2, dim=1)                      # (B, C, T', H', W') each
        posterior = DiagonalGaussian(mean, logvar)
        return self.decoder(posterior.sample(generator)), posterior

    def normalize_latent(self, z: Tensor) -> Tensor:
        """Unscaled -> scaled latent, (C, ...) or (B, C, ...)."""
        return (z - self.latent_shift.view(-1, 1, 1, 1)) * self.latent_scale.view(-1, 1, 1, 1)

    def denormalize_latent(self, z: Tensor) -> Tensor:
        return z / self.latent_scale.view(-1, 1, 1, 1) + self.latent_shift.view(-1, 1, 1, 1)

    @torch.no_grad()
    def estimate_latent_stats(self, videos: Iterable[Tensor], *,
                              chunk: int | None = CHUNK_LATENT_FRAMES) -> tuple[Tensor, Tensor]:
        """Set the latent statistics from videos (each (3, T, H, W) or a batch) and return (shift, scale).

        shift is each channel's mean over every latent cell of every video (posterior means)
        and scale 1 / its standard deviation, so these videos' latents become zero-mean and
        unit-variance per channel.
        """
        c = self.config.latent_channels
        total = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        count = 0
        for video in videos:
            mean = self.posterior(video, chunk=chunk).mean                 # (C, T', H', W') or (B, C, ...)
            values = mean.movedim(-4, 0).reshape(c, -1).double().cpu()       # (C, N)
            total += values.sum(dim=1)
            squares += values.square().sum(dim=1)
            count += values.shape[1]
        if count == 0:
            raise ValueError("estimate_latent_stats needs at least one video")
        shift = total / count
        std = (squares / count - shift.square()).clamp_min(0).sqrt().clamp_min(1e-6)
        self.latent_shift.copy_(shift.to(self.latent_shift))
        self.latent_scale.copy_((1.0 / std).to(self.latent_scale))
        return self.latent_shift.clone(), self.latent_scale.clone()


def save_autoencoder(folder: str | Path, model: CausalVideoAutoencoder, *, dtype: torch.dtype | None = None) -> Path:
    """Write an autoencoder checkpoint folder atomically: config.json + model.safetensors.

    The config.json is an ordinary cinecube checkpoint config: a ModelConfig whose
    `autoencoder` field is this network's config (its other fields are defaults, unused here).
    So `load_checkpoint` reads it like any checkpoint, and a transformer to be trained on these
    latents takes its `autoencoder` field from it.
    """
    return save_checkpoint(folder, ModelConfig(autoencoder=model.config), model, dtype=dtype)


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> CausalVideoAutoencoder:
    """Load a causal autoencoder checkpoint (or a run folder's newest) in eval mode.

    Raises CheckpointError for a missing or corrupt folder, or one that holds another model.
    """
    checkpoint = load_checkpoint(path)
    config = checkpoint.model_config.autoencoder
    if config.kind != "causal3d":
        raise CheckpointError(f"checkpoint '{checkpoint.path}' holds no causal3d autoencoder "
                              f"(its autoencoder kind is {config.kind!r})")
    try:
        model = CausalVideoAutoencoder(config)
    except ValueError as error:
        raise CheckpointError(f"checkpoint '{checkpoint.path}': invalid autoencoder config ({error})") from None
    load_weights_into(model, checkpoint.weights, str(checkpoint.path))
    return model.to(device).eval()


def build_autoencoder(config: AutoencoderConfig) -> Autoencoder:
    if config.kind == "pixel":
        return PixelAutoencoder(config)
    if config.kind == "causal3d":
        return CausalVideoAutoencoder(config)
    raise ValueError(f"unknown autoencoder kind {config.kind!r}; allowed: 'pixel', 'causal3d'")


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def tensor_to_frames(video: Tensor) -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
