"""What sharing does to a video, as functions of (T, H, W, 3) uint8 frames.

The output gate checks the watermark against these before it publishes a file, and
benchmarks/watermark_robustness.py measures detection after them.
"""

from __future__ import annotations

import numpy as np

from ..video_io import h264_round_trip

__all__ = ["h264_round_trip", "resize", "resize_half_and_back"]


def resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3) with Pillow's antialiased bicubic."""
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def resize_half_and_back(frames: np.ndarray) -> np.ndarray:
    """Down to half size and up again: a thumbnail, or a re-upload at a lower resolution."""
    _, h, w, _ = frames.shape
    return resize(resize(frames, max(1, h // 2), max(1, w // 2)), h, w)
