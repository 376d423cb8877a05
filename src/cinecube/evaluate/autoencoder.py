"""How well the video compression network reconstructs real footage: PSNR and SSIM on the
held-out real clips, at their native sizes, plus side-by-side images.

    from cinecube.autoencoder import load_autoencoder
    from cinecube.evaluate.autoencoder import evaluate_autoencoder
    report = evaluate_autoencoder(load_autoencoder("runs/vae"), out_dir="ae_images")
    report["mean_psnr"], report["mean_ssim"]

Each clip's first `max_frames` frames are decoded (never the whole file), then cropped to
what the autoencoder's grid holds: 1 + k*temporal_factor frames and height and width rounded
down to multiples of spatial_factor (the remainder cropped evenly from both sides; with
`max_side`, frames are first shrunk so their longer side is at most max_side). Encoding and
decoding run in time chunks (exact) and, for frames larger than `tile_size`, overlapping
spatial tiles (approximate; see autoencoder.py), so memory stays bounded on 1280x720 clips.

PSNR is over the whole clip (one MSE over every pixel of every frame, 8-bit range), capped
at 100 dB for an exact copy (MSE 0). SSIM is skimage's structural_similarity on each RGB
frame (channel_axis, data_range 255, 7x7 window), averaged over frames. Means are over clips.
The clips are held out: they are never trained on (see data/assets.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..autoencoder import Autoencoder, CausalVideoAutoencoder, frames_to_tensor, tensor_to_frames
from ..errors import InvalidRequestError

PSNR_CAP = 100.0  # dB, reported for an exact reconstruction (MSE 0)
DEFAULT_TILE = 256  # pixels; frames larger than this are encoded and decoded in tiles
TILE_OVERLAP = 32
SIDE_BY_SIDE_FRAMES = 3


def compression_of(autoencoder: Autoencoder) -> str:
    """'TxHxW' compression factors, e.g. '4x8x8'."""
    c = autoencoder.config
    return f"{c.temporal_factor}x{c.spatial_factor}x{c.spatial_factor}"


def fit_to_grid(frames: np.ndarray, autoencoder: Autoencoder, name: str = "clip") -> np.ndarray:
    """Crop uint8 (T, H, W, 3) to 1 + k*tf frames and multiples of s pixels, centred.

    Raises InvalidRequestError if a side is smaller than one latent cell.
    """
    tf, s = autoencoder.config.temporal_factor, autoencoder.config.spatial_factor
    t, h, w = frames.shape[:3]
    if h < s or w < s:
        raise InvalidRequestError(
            f"{name} is {w}x{h} pixels, smaller than one latent cell ({s}x{s}) of this autoencoder"
        )
    t = 1 + (t - 1) // tf * tf
    nh, nw = h // s * s, w // s * s
    top, left = (h - nh) // 2, (w - nw) // 2
    return frames[:t, top : top + nh, left : left + nw]


def pad_to_grid(frames: np.ndarray, autoencoder: Autoencoder) -> np.ndarray:
    """Pad uint8 (T, H, W, 3) at the end of time and the bottom/right edges (repeating the
    last frame, row and column) to 1 + k*tf frames and multiples of s; crop the result back
    with [:T, :H, :W]."""
    tf, s = autoencoder.config.temporal_factor, autoencoder.config.spatial_factor
    t, h, w = frames.shape[:3]
    if h < s or w < s:
        raise InvalidRequestError(
            f"video is {w}x{h} pixels, smaller than one latent cell ({s}x{s}) of this autoencoder"
        )
    pad_t = (-(t - 1)) % tf
    pad_h, pad_w = (-h) % s, (-w) % s
    if pad_t or pad_h or pad_w:
        frames = np.pad(frames, ((0, pad_t), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


@torch.no_grad()
def round_trip(autoencoder: Autoencoder, frames: np.ndarray, tile_size: int | None = DEFAULT_TILE) -> np.ndarray:
    """Encode then decode uint8 (T, H, W, 3) already on the grid; returns uint8 of the same shape.

    The causal autoencoder runs chunked in time and, when a side exceeds tile_size, in
    overlapping tiles; other autoencoders (the pixel identity) in one pass.
    """
    device = next((p.device for p in autoencoder.parameters()), torch.device("cpu"))
    video = frames_to_tensor(frames).to(device)  # (3, T, H, W)
    if isinstance(autoencoder, CausalVideoAutoencoder):
        tiles = tile_size if tile_size is not None and max(frames.shape[1:3]) > tile_size else None
        s = autoencoder.config.spatial_factor
        overlap = min(TILE_OVERLAP, (tiles or 0) // 2 // s * s)  # always < tile_size
        latent = autoencoder.encode(video, tile_size=tiles, tile_overlap=overlap)
        decoded = autoencoder.decode(latent, tile_size=tiles, tile_overlap=overlap)
    else:
        decoded = autoencoder.decode(autoencoder.encode(video))
    return tensor_to_frames(decoded.float().cpu())


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR in dB over all pixels of two uint8 arrays (capped at PSNR_CAP when identical)."""
    mse = float(np.mean((original.astype(np.float64) - reconstruction.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean over frames of the RGB SSIM of two uint8 (T, H, W, 3) arrays."""
    from skimage.metrics import structural_similarity

    side = min(original.shape[1:3])
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        raise InvalidRequestError(
            f"frames of {original.shape[2]}x{original.shape[1]} are too small for SSIM (at least 3x3)"
        )
    return float(
        np.mean(
            [
                structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=window)
                for a, b in zip(original, reconstruction)
            ]
        )
    )


def side_by_side(
    original: np.ndarray, reconstruction: np.ndarray, count: int = SIDE_BY_SIDE_FRAMES, max_width: int = 1600
) -> np.ndarray:
    """One image: rows of (original | reconstruction) for `count` evenly spaced frames, (H', W', 3) uint8."""
    from PIL import Image

    t, h, w = original.shape[:3]
    picks = sorted(set(np.linspace(0, t - 1, min(count, t)).round().astype(int).tolist()))
    gap = max(2, w // 64)
    rows = []
    for i in picks:
        row = np.full((h, 2 * w + gap, 3), 255, dtype=np.uint8)
        row[:, :w], row[:, w + gap :] = original[i], reconstruction[i]
        rows.append(row)
        rows.append(np.full((gap, 2 * w + gap, 3), 255, dtype=np.uint8))
    sheet = np.concatenate(rows[:-1], axis=0)
    if sheet.shape[1] > max_width:
        scale = max_width / sheet.shape[1]
        size = (max_width, max(1, round(sheet.shape[0] * scale)))
        sheet = np.asarray(Image.fromarray(sheet).resize(size, Image.Resampling.LANCZOS))
    return sheet


def _shrink(frames: np.ndarray, max_side: int) -> np.ndarray:
    """Resize (T, H, W, 3) so the longer side is at most max_side (area averaging), aspect kept."""
    import cv2

    h, w = frames.shape[1:3]
    if max(h, w) <= max_side:
        return frames
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def evaluate_autoencoder(
    autoencoder: Autoencoder,
    clip_paths: dict[str, Path] | None = None,
    max_frames: int = 33,
    out_dir: Path | None = None,
    max_side: int | None = None,
    tile_size: int | None = DEFAULT_TILE,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """PSNR/SSIM of encode -> decode on each clip, and their means.

    Returns {"clips": [{"name", "height", "width", "frames", "psnr", "ssim", "seconds",
    "source": {...native size...}, "image"}], "mean_psnr", "mean_ssim", "compression":
    "TxHxW", "kind", "latent_channels", "max_frames", "max_side", "seconds"}. With out_dir, one
    side-by-side PNG per clip (original | reconstruction) is written there.
    """
    from ..data.assets import real_clip_paths
    from ..data.folder import read_frames
    from ..video_io import write_video

    if max_frames < 1:
        raise InvalidRequestError(f"max_frames must be at least 1, got {max_frames}")
    if max_side is not None and max_side < autoencoder.config.spatial_factor:
        raise InvalidRequestError(
            f"max_side {max_side} is smaller than one latent cell ({autoencoder.config.spatial_factor} pixels)"
        )
    paths = real_clip_paths() if clip_paths is None else dict(clip_paths)
    out_dir = Path(out_dir) if out_dir is not None else None
    autoencoder.eval()
    started = time.time()
    rows = []
    sheets: dict[str, np.ndarray] = {}  # name -> side-by-side image
    for name, path in paths.items():
        clip_started = time.time()
        frames = read_frames(path, fps=None, max_frames=max_frames)  # (T, H, W, 3) native
        source = {"height": int(frames.shape[1]), "width": int(frames.shape[2]), "frames": int(frames.shape[0])}
        if max_side is not None:
            frames = _shrink(frames, max_side)
        frames = fit_to_grid(frames, autoencoder, name=f"clip {name!r}")
        reconstruction = round_trip(autoencoder, frames, tile_size)
        row = {
            "name": name,
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            "frames": int(frames.shape[0]),
            "psnr": round(psnr(frames, reconstruction), 3),
            "ssim": round(ssim(frames, reconstruction), 5),
            "source": source,
        }
        if out_dir is not None:
            sheets[name] = side_by_side(frames, reconstruction)
            row["image"] = str(out_dir / f"{name}.png")
        row["seconds"] = round(time.time() - clip_started, 2)
        rows.append(row)
        if progress is not None:
            progress(
                f"{name}: {row['width']}x{row['height']}x{row['frames']}  PSNR {row['psnr']:.2f} dB  "
                f"SSIM {row['ssim']:.4f}  ({row['seconds']:.1f} s)"
            )
    if not rows:
        raise InvalidRequestError("no clips to evaluate")
    # Images only once every clip has been measured: a failing clip leaves nothing half-written.
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, sheet in sheets.items():
            write_video(out_dir / f"{name}.png", sheet)
    return {
        "clips": rows,
        "mean_psnr": round(float(np.mean([r["psnr"] for r in rows])), 3),
        "mean_ssim": round(float(np.mean([r["ssim"] for r in rows])), 5),
        "compression": compression_of(autoencoder),
        "kind": autoencoder.config.kind,
        "latent_channels": autoencoder.config.latent_channels,
        "max_frames": max_frames,
        "max_side": max_side,
        "psnr_cap": PSNR_CAP,
        "seconds": round(time.time() - started, 2),
    }
