"""Fréchet Video Distance (FVD) with the Kinetics-400 I3D network.

FVD (Unterthiner et al., 2018) fits a Gaussian to the I3D embeddings of each of two sets of
clips and reports the Fréchet (2-Wasserstein) distance between the two Gaussians:

    FVD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

The embedding is I3D's 400-d time-averaged logits, as in the reference implementation
(``RGB/inception_i3d/Mean:0`` of the TF-Hub module); the 1024-d pooled features that feed
the logits layer are offered too (``feature="pool"``). The weights are those of the
deepmind/kinetics-i3d release (see ``i3d.py``), which differ from the TF-Hub module, so values
are comparable between cinecube evaluations, not with published FVD figures.

Sample size: with n clips per set the covariance has rank at most n - 1, far below the
embedding dimension for the few clips a CPU evaluation can afford. The distance is still
well defined (the matrix square root is taken of a positive semi-definite product, see
``frechet_distance``), but it is biased upwards for small n, so every result carries its
sample counts and is only comparable with results of the same counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from cinecube.errors import CinecubeError

CLIP_FRAMES = 16  # the usual FVD clip length


@dataclass
class FrechetResult:
    """A Fréchet distance with what it was computed from."""

    value: float
    n_a: int
    n_b: int
    dim: int
    feature: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features; N = 1 gives a zero covariance."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (N, D) features with N >= 1, got shape {x.shape}")
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    return mu, np.atleast_2d(sigma)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = scipy.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_from_stats(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

    tr((S_a S_b)^(1/2)) is computed as tr((A S_b A)^(1/2)) with A = S_a^(1/2): the same
    eigenvalues, but of a symmetric PSD matrix, so rank-deficient covariances (few samples)
    give a real, exact answer where ``scipy.linalg.sqrtm(S_a @ S_b)`` can return complex noise.
    """
    diff = np.asarray(mu_a, dtype=np.float64) - np.asarray(mu_b, dtype=np.float64)
    root_a = _psd_sqrt(np.asarray(sigma_a, dtype=np.float64))
    middle = root_a @ np.asarray(sigma_b, dtype=np.float64) @ root_a
    eig = scipy.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    value = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)
    return max(value, 0.0)  # round-off can push identical sets a hair below zero


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, feature: str = "") -> FrechetResult:
    """Fréchet distance between Gaussian fits of two (N, D) feature sets, with a sample-size note."""
    a, b = np.asarray(features_a), np.asarray(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {a.shape} and {b.shape}")
    value = frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))
    dim, n = a.shape[1], min(len(a), len(b))
    note = ""
    if n <= dim:
        note = (
            f"{len(a)} vs {len(b)} samples in {dim} dimensions: covariances have rank <= {n - 1}; "
            f"small samples bias the distance upwards, compare only at equal sample counts"
        )
    return FrechetResult(value, len(a), len(b), dim, feature, note)


# --------------------------------------------------------------------------------------------
# FVD
# --------------------------------------------------------------------------------------------

FEATURES = ("logits", "pool")


def i3d_embeddings(videos: Sequence[np.ndarray], feature: str = "logits") -> np.ndarray:
    """(N, 400) logits or (N, 1024) pooled I3D features of uint8 (T, H, W, 3) videos."""
    from cinecube.evaluate.i3d import i3d_outputs

    if feature not in FEATURES:
        raise CinecubeError(f"unknown FVD feature {feature!r}; allowed: {', '.join(FEATURES)}")
    logits, pooled = i3d_outputs(list(videos))
    return logits if feature == "logits" else pooled


def fvd(videos_a: Sequence[np.ndarray], videos_b: Sequence[np.ndarray], feature: str = "logits") -> FrechetResult:
    """FVD between two sets of uint8 (T, H, W, 3) videos (any size; resized to 224 x 224)."""
    if not videos_a or not videos_b:
        raise CinecubeError("FVD needs at least one video in each set")
    return frechet_distance(i3d_embeddings(videos_a, feature), i3d_embeddings(videos_b, feature), feature)


# --------------------------------------------------------------------------------------------
# Real clips
# --------------------------------------------------------------------------------------------


def read_frames(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames [start, start + count) of a video as (T, H, W, 3) uint8, decoding no further."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i < start:
                    continue
                if count is not None and len(frames) >= count:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except (OSError, av.FFmpegError) as error:
        raise CinecubeError(f"cannot read video '{path}': {error}") from error
    if not frames:
        raise CinecubeError(f"video '{path}' has no frames from {start}")
    return np.stack(frames)


def clip_windows(video: np.ndarray, frames: int = CLIP_FRAMES, stride: int | None = None) -> list[np.ndarray]:
    """Non-overlapping (or ``stride``-spaced) windows of ``frames`` frames from a (T, H, W, 3) video."""
    stride = stride or frames
    return [video[s : s + frames] for s in range(0, len(video) - frames + 1, stride)]


def real_clip_validation(
    names: Sequence[str] | None = None, frames: int = CLIP_FRAMES, windows_per_half: int = 4
) -> dict[str, Any]:
    """Check the I3D port on the held-out real clips.

    For each clip, the first ``2 * windows_per_half * frames`` frames are read and cut into
    windows: the first half's windows and the second half's. Reports:

    * each clip's top-5 Kinetics labels (on its first window), and
    * FVD between the two halves of each clip ("same") and between the first half of each
      clip and the first half of the next one ("different").

    FVD(same) far below FVD(different) shows that the features separate content.
    """
    from cinecube.data.assets import real_clip_paths
    from cinecube.evaluate.i3d import i3d_outputs, top_k_labels

    paths = real_clip_paths(list(names) if names is not None else None)
    need = 2 * windows_per_half * frames
    halves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    top5: dict[str, list[tuple[str, float]]] = {}
    for name, path in paths.items():
        video = read_frames(path, 0, need)
        windows = clip_windows(video, frames)
        if len(windows) < 2:
            raise CinecubeError(f"real clip {name!r} has {len(video)} frames; at least {2 * frames} needed")
        half = len(windows) // 2
        logits, pooled = i3d_outputs(windows)
        top5[name] = top_k_labels(logits[0])
        halves[name] = (logits[:half], logits[half : 2 * half], pooled[:half], pooled[half : 2 * half])
    names_list = list(halves)
    same, different = {}, {}
    for i, name in enumerate(names_list):
        la1, la2, pa1, pa2 = halves[name]
        same[name] = {
            "logits": frechet_distance(la1, la2, "logits").value,
            "pool": frechet_distance(pa1, pa2, "pool").value,
        }
        if len(names_list) > 1:
            other = names_list[(i + 1) % len(names_list)]
            lb1, _, pb1, _ = halves[other]
            different[f"{name} vs {other}"] = {
                "logits": frechet_distance(la1, lb1, "logits").value,
                "pool": frechet_distance(pa1, pb1, "pool").value,
            }
    summary = {}
    for feat in FEATURES:
        s = [v[feat] for v in same.values()]
        d = [v[feat] for v in different.values()]
        summary[feat] = {
            "same_clip_halves_mean": float(np.mean(s)),
            "different_clips_mean": float(np.mean(d)) if d else None,
            "same_max": float(np.max(s)),
            "different_min": float(np.min(d)) if d else None,
        }
    return {
        "frames_per_window": frames,
        "windows_per_half": windows_per_half,
        "top5": {k: [[label, round(p, 4)] for label, p in v] for k, v in top5.items()},
        "fvd_same_clip_halves": same,
        "fvd_different_clips": different,
        "summary": summary,
        "note": (
            f"{windows_per_half} vs {windows_per_half} windows per FVD: covariances are rank "
            f"<= {windows_per_half - 1}, so values are large in absolute terms; compare same vs different"
        ),
    }
