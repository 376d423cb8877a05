"""What sharing does to a video, as functions of (T, H, W, 3) uint8 frames.

The output gate checks the watermark against these before it publishes a file, and
benchmarks/watermark_robustness.py measures detection after them.
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np


def h264_round_trip(frames: np.ndarray, crf: int = 23, fps: float = 8.0) -> np.ndarray:
    """(T, H, W, 3) uint8 through libx264 (yuv420p, preset medium) and back, in memory: what
    sharing a video does to it. Odd sides are padded for the encoder and cropped after."""
    import av

    t, h, w, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.options = {"crf": str(crf), "preset": "medium"}
        stream.height, stream.width = padded.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in padded:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as container:
        out = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return out[:, :h, :w]


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
