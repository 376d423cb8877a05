"""The `Autoencoder` interface, the pixel-space identity, and conversions between uint8
frames and the [-1, 1] tensors autoencoders take.

The pipeline and the training loops see only `Autoencoder`: frames in, latents out, and the
sizes that are allowed. The trained causal 3D autoencoder (causal.py) implements the same
interface and drops in without touching the transformer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor, nn

from ..config import AutoencoderConfig
from ..errors import CinecubeError


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


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def tensor_to_frames(video: Tensor) -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def crop_to_layout(frames: np.ndarray, temporal_factor: int, spatial_factor: int) -> np.ndarray:
    """Crop uint8 (T, H, W, 3) to the largest 1 + tf*k frames and multiples of s pixels.

    Training may drop a few frames or edge pixels of a clip; inference refuses such sizes
    instead (see CausalVideoAutoencoder.encode), where the caller decides.
    """
    t, h, w = frames.shape[:3]
    t = 1 + (t - 1) // temporal_factor * temporal_factor
    h, w = h // spatial_factor * spatial_factor, w // spatial_factor * spatial_factor
    if t < 1 or h < spatial_factor or w < spatial_factor:
        raise CinecubeError(
            f"training video of shape {frames.shape} is smaller than one latent cell "
            f"({spatial_factor}x{spatial_factor} pixels)"
        )
    top, left = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
    return frames[:t, top : top + h, left : left + w]
