"""The causal 3D video autoencoder (`kind="causal3d"`, in the manner of the CogVideoX,
Open-Sora-Plan and Wan causal VAEs):

    video (B, 3, 1 + k*tf, H, W) in [-1, 1]  <->  latent (B, C, 1 + k, H/s, W/s)

With `patch_size` p > 1 the encoder starts by folding p x p pixel blocks into channels and
the decoder ends by unfolding them (space-to-depth, as in LTX-Video's VAE), so the costly
full-resolution convolutions are gone; s = p * 2 ** (levels - 1). A linear path (each block
of pixels to its latent cell and back, fitted in closed form by `linear_fit.py`) can run
beside the networks or alone.

Frame 0 becomes latent frame 0 on its own and every later group of tf frames one latent
frame, so an image is a one-latent-frame video in the same latent space. Because every layer
is causal (layers.py), a video can be encoded or decoded a few frames at a time with bounded
memory and the same result as one pass (to float rounding, ~1e-6). Spatial tiling (tiling.py)
bounds memory in space, approximately.

Frame counts outside 1 + tf*k are refused with an InvalidRequestError naming the nearest
allowed counts, not padded or cropped silently: the caller knows whether to trim or repeat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AutoencoderConfig
from ..errors import InvalidRequestError
from .base import Autoencoder
from .layers import (
    CausalCache,
    CausalConv3d,
    Downsample,
    FrameGroupNorm,
    ResidualBlock,
    Upsample,
    depth_to_space,
    fold_blocks,
    is_video_start,
    space_to_depth,
    unfold_blocks,
)
from .tiling import tiled

# Chunked processing is exact, so it is the default: frame 0, then this many latent frames
# (tf times as many pixel frames) at a time.
CHUNK_LATENT_FRAMES = 4
TILE_OVERLAP = 32  # pixels; the default overlap of spatial tiles


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
        self.linear_path = nn.Conv3d(3 * self.tf * self.s**2, config.latent_channels, 1) if config.linear_path else None
        self.networks = config.networks
        if not self.networks:
            # The linear code alone: a learned posterior log-variance per channel.
            self.logvar = nn.Parameter(torch.full((config.latent_channels,), -8.0))
            return
        widths = [config.base_channels * m for m in config.channel_multipliers]
        temporal = _temporal_steps(config)
        groups = config.norm_groups
        self.patch = config.patch_size
        self.conv_in = CausalConv3d(3 * self.patch**2, widths[0])
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
            mean = self._linear(video, cache)  # (B, C, T', H', W')
            return torch.cat([mean, self.logvar.view(1, -1, 1, 1, 1).expand_as(mean)], dim=1)
        x = space_to_depth(x, self.patch)  # (B, 3p^2, T, H/p, W/p)
        x = self.conv_in(x, cache)  # (B, C0, T, H/p, W/p)
        for block in self.blocks:
            x = block(x, cache)
        moments = self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 2C, T', H', W')
        if self.linear_path is not None:
            mean = self._linear(video, cache)  # (B, C, T', H', W')
            moments = moments + torch.cat([mean, torch.zeros_like(mean)], dim=1)
        return moments

    def _linear(self, video: Tensor, cache: CausalCache | None) -> Tensor:  # (B, 3, T, H, W) -> (B, C, T', H', W')
        start = is_video_start(self.linear_path, cache)
        return self.linear_path(fold_blocks(video, self.tf, self.s, start))


class Decoder(nn.Module):
    """latent (B, C, 1 + k, h, w) -> video (B, 3, 1 + k*tf, h*s, w*s), unclamped."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.tf, self.s = config.temporal_factor, config.spatial_factor
        # latent cell and its 8 neighbours (C x 3 x 3, edges repeated) -> pixel block (3*tf*s*s
        # values), see AutoencoderConfig.linear_path: neighbours undo the blocking a
        # cell-by-cell code leaves.
        self.linear_path = (
            nn.Conv3d(config.latent_channels, 3 * self.tf * self.s**2, (1, 3, 3)) if config.linear_path else None
        )
        self.networks = config.networks
        if not self.networks:
            return
        widths = [config.base_channels * m for m in config.channel_multipliers]
        temporal = _temporal_steps(config)
        groups = config.norm_groups
        channels = widths[-1]
        self.conv_in = CausalConv3d(config.latent_channels, channels)
        blocks: list[nn.Module] = [ResidualBlock(channels, channels, groups), ResidualBlock(channels, channels, groups)]
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
        self.conv_out = CausalConv3d(channels, 3 * self.patch**2)

    def _linear(self, z: Tensor, start: bool) -> Tensor:  # (B, C, T', h, w) -> (B, 3, T, H, W)
        blocks = self.linear_path(F.pad(z, (1, 1, 1, 1, 0, 0), mode="replicate"))  # (B, 3*tf*s*s, T', h, w)
        return unfold_blocks(blocks, self.tf, self.s, start)

    def forward(self, z: Tensor, cache: CausalCache | None = None) -> Tensor:
        start = self.linear_path is not None and is_video_start(self.linear_path, cache)
        if not self.networks:
            return self._linear(z, start)
        x = self.conv_in(z, cache)  # (B, Cmax, T', h, w)
        for block in self.blocks:
            x = block(x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 3p^2, T, H/p, W/p)
        video = depth_to_space(x, self.patch)  # (B, 3, T, H, W)
        if self.linear_path is not None:
            video = video + self._linear(z, start)
        return video


@dataclass
class DiagonalGaussian:
    """The encoder's posterior q(z | x) = N(mean, exp(logvar)), independent per latent element."""

    mean: Tensor
    logvar: Tensor

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

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
        raise ValueError(
            f"spatial_factor {s} must be patch_size * 2 ** (levels - 1) = {p * 2 ** (levels - 1)} "
            f"for patch_size {p} and {levels} channel multipliers"
        )
    if tf < 1 or tf & (tf - 1) or tf > 2 ** (levels - 1):
        raise ValueError(
            f"temporal_factor {tf} must be a power of two from 1 to 2 ** (levels - 1) = "
            f"{2 ** (levels - 1)} (one halving of time per spatial downsampling)"
        )
    if config.latent_channels < 1 or config.blocks_per_level < 1:
        raise ValueError("latent_channels and blocks_per_level must be at least 1")
    for m in config.channel_multipliers:
        if (config.base_channels * m) % config.norm_groups:
            raise ValueError(f"norm_groups {config.norm_groups} does not divide the width {config.base_channels * m}")


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
            raise InvalidRequestError(
                f"video has {frames} frames; the causal layout holds 1 + {tf}k frames "
                f"(1, {1 + tf}, {1 + 2 * tf}, ...): {fix}"
            )
        for name, size in (("height", height), ("width", width)):
            if size < s or size % s:
                raise InvalidRequestError(
                    f"video {name} {size} is not allowed: height and width must be "
                    f"multiples of {s} (one latent cell), at least {s}"
                )
        batched = video.dim() == 5
        return (video if batched else video[None]).to(self._dtype()), batched

    def _latent_batch(self, latent: Tensor) -> tuple[Tensor, bool]:
        c = self.config.latent_channels
        if (
            not isinstance(latent, Tensor)
            or latent.dim() not in (4, 5)
            or latent.shape[-4] != c
            or min(latent.shape[-3:]) < 1
        ):
            shape = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise InvalidRequestError(f"latent has shape {shape}; expected ({c}, T', H', W') or (B, {c}, T', H', W')")
        batched = latent.dim() == 5
        return (latent if batched else latent[None]).to(self._dtype()), batched

    def _check_tiles(self, tile_size: int | None, tile_overlap: int) -> None:
        s = self.config.spatial_factor
        if tile_size is None:
            return
        if tile_size % s or tile_overlap % s or not 0 <= tile_overlap < tile_size:
            raise InvalidRequestError(
                f"tile_size {tile_size} and tile_overlap {tile_overlap} must be multiples "
                f"of {s} with 0 <= tile_overlap < tile_size"
            )

    # ------------------------------------------------------------------------ chunks in time

    def _encode_chunks(self, x: Tensor, chunk: int | None) -> Tensor:
        """(B, 3, T, H, W) -> moments (B, 2C, T', H', W'), frame 0 first, then chunk*tf frames at a time."""
        if chunk is None:
            return self.encoder(x)
        cache: CausalCache = {}
        step = chunk * self.config.temporal_factor
        pieces = [self.encoder(x[:, :, :1], cache)]
        pieces += [self.encoder(x[:, :, i : i + step], cache) for i in range(1, x.shape[2], step)]
        return torch.cat(pieces, dim=2)

    def _decode_chunks(self, z: Tensor, chunk: int | None) -> Tensor:
        """(B, C, T', h, w) -> (B, 3, T, H, W), latent frame 0 first, then chunk latent frames at a time."""
        if chunk is None:
            return self.decoder(z)
        cache: CausalCache = {}
        pieces = [self.decoder(z[:, :, :1], cache)]
        pieces += [self.decoder(z[:, :, i : i + chunk], cache) for i in range(1, z.shape[2], chunk)]
        return torch.cat(pieces, dim=2)

    # ------------------------------------------------------------------------ public API

    def posterior(
        self,
        video: Tensor,
        *,
        chunk: int | None = CHUNK_LATENT_FRAMES,
        tile_size: int | None = None,
        tile_overlap: int = TILE_OVERLAP,
    ) -> DiagonalGaussian:
        """The unscaled latent distribution of a video; mean and logvar (C, T', H', W') (or batched)."""
        x, batched = self._video_batch(video)
        if chunk is not None and chunk < 1:
            raise InvalidRequestError(f"chunk {chunk} must be at least 1 latent frame (or None for one pass)")
        self._check_tiles(tile_size, tile_overlap)
        if tile_size is None:
            moments = self._encode_chunks(x, chunk)  # (B, 2C, T', H', W')
        else:
            moments = tiled(
                lambda part: self._encode_chunks(part, chunk),
                x,
                tile_size,
                tile_overlap,
                up=1,
                down=self.config.spatial_factor,
            )
        mean, logvar = moments.chunk(2, dim=1)
        if not batched:
            mean, logvar = mean[0], logvar[0]
        return DiagonalGaussian(mean, logvar)

    def encode(
        self,
        video: Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk: int | None = CHUNK_LATENT_FRAMES,
        tile_size: int | None = None,
        tile_overlap: int = TILE_OVERLAP,
    ) -> Tensor:
        """video (3, T, H, W) in [-1, 1] -> scaled latent (C, T', H', W'): the posterior mean, or a sample."""
        posterior = self.posterior(video, chunk=chunk, tile_size=tile_size, tile_overlap=tile_overlap)
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize_latent(z)

    def decode(
        self,
        latent: Tensor,
        *,
        chunk: int | None = CHUNK_LATENT_FRAMES,
        tile_size: int | None = None,
        tile_overlap: int = TILE_OVERLAP,
    ) -> Tensor:
        """scaled latent (C, T', H', W') -> video (3, 1 + (T'-1)*tf, H'*s, W'*s) in [-1, 1]."""
        z, batched = self._latent_batch(latent)
        if chunk is not None and chunk < 1:
            raise InvalidRequestError(f"chunk {chunk} must be at least 1 latent frame (or None for one pass)")
        self._check_tiles(tile_size, tile_overlap)
        z = self.denormalize_latent(z)
        s = self.config.spatial_factor
        if tile_size is None:
            video = self._decode_chunks(z, chunk)  # (B, 3, T, H, W)
        else:
            video = tiled(
                lambda part: self._decode_chunks(part, chunk), z, tile_size // s, tile_overlap // s, up=s, down=1
            )
        video = video.clamp(-1, 1)
        return video if batched else video[0]

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """Training pass: (B, 3, T, H, W) -> (reconstruction (B, 3, T, H, W), unscaled posterior)."""
        x, _ = self._video_batch(video)
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # (B, C, T', H', W') each
        posterior = DiagonalGaussian(mean, logvar)
        return self.decoder(posterior.sample(generator)), posterior

    def normalize_latent(self, z: Tensor) -> Tensor:
        """Unscaled -> scaled latent, (C, ...) or (B, C, ...)."""
        return (z - self.latent_shift.view(-1, 1, 1, 1)) * self.latent_scale.view(-1, 1, 1, 1)

    def denormalize_latent(self, z: Tensor) -> Tensor:
        return z / self.latent_scale.view(-1, 1, 1, 1) + self.latent_shift.view(-1, 1, 1, 1)

    @torch.no_grad()
    def estimate_latent_stats(
        self, videos: Iterable[Tensor], *, chunk: int | None = CHUNK_LATENT_FRAMES
    ) -> tuple[Tensor, Tensor]:
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
            mean = self.posterior(video, chunk=chunk).mean  # (C, T', H', W') or (B, C, ...)
            values = mean.movedim(-4, 0).reshape(c, -1).double().cpu()  # (C, N)
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
