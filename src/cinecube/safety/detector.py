"""A detector that tells cinecube's videos from real footage by how they look.

The watermark and the C2PA manifest are the first line of provenance; both can be lost (a
crop, an aggressive re-encode, a screen recording). The detector needs neither: it scores the
pixels themselves. A generated cinecube video carries traces of how it was made — the seams of
the spacetime cubes it was assembled from (every 4 pixels and 4 frames for the bundled pixel
model, every 8 or 16 pixels for latent models), flat colour fields with no sensor noise, a
power spectrum far from natural images' 1/f^2 — and these survive H.264 well.

The model is deliberately small and readable: `video_features` turns a clip into a fixed
vector of such statistics (each one documented below) and a logistic regression, fitted by
`train_detector`, turns it into a probability. Weights are a JSON file
(`weights/detector/detector.json`) holding the feature names, standardisation and
coefficients — no pickle. `cinecube detector train` rebuilds it and measures ROC AUC on
held-out data (real clips and generated videos the fit never saw).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CinecubeError
from ..outputs import staged_file

SEAM_PERIODS = (4, 8, 16)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"spatial_seam_{p}" for p in SEAM_PERIODS),  # log ratio: |step| across a p-pixel seam vs anywhere
    "temporal_seam_4",  # log ratio: frame change across a 4-frame seam vs any frame change
    "noise_level",  # log median |high-pass residual| (sensor noise is never zero)
    "flat_fraction",  # share of pixels whose 3x3 neighbourhood is exactly flat
    "gradient_to_laplacian",  # log mean |grad| / mean |laplacian|: edges vs fine texture
    "spectrum_slope",  # log-log slope of the radial power spectrum (natural ~ -2)
    "saturation_mean",  # HSV saturation statistics
    "saturation_std",
    "colour_diversity",  # log distinct colours (5 bits/channel) per 1000 pixels
    "temporal_change",  # log mean |frame difference| / intensity std
    "static_fraction",  # share of pixels that do not change between frames
    "single_frame",  # 1 for an image, 0 for a video
)


def _luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]  # (T, H, W)


def _seam_ratio(steps: np.ndarray, period: int, axis: int) -> float:
    """Mean |step| at positions that end a `period`-long cell, over the mean of all steps.

    `steps[..., i]` (along `axis`) is the change between pixel i and i+1; a cube seam sits
    between pixel k*period-1 and k*period, i.e. at step index k*period-1.
    """
    n = steps.shape[axis]
    if n < 2 * period:
        return 0.0
    idx = np.arange(period - 1, n, period)
    at_seam = np.take(steps, idx, axis=axis).mean()
    return float(np.log((at_seam + 1e-3) / (steps.mean() + 1e-3)))


def _spectrum_slope(luma: np.ndarray) -> float:
    """Slope of log power vs log frequency, averaged over a few frames."""
    slopes = []
    for frame in luma[:: max(1, len(luma) // 4)][:4]:
        h, w = frame.shape
        if min(h, w) < 16:
            continue
        window = np.outer(np.hanning(h), np.hanning(w))
        power = np.abs(np.fft.fftshift(np.fft.fft2((frame - frame.mean()) * window))) ** 2
        yy, xx = np.indices((h, w))
        radius = np.hypot((yy - h / 2) / h, (xx - w / 2) / w)  # cycles/pixel
        bins = np.linspace(0.02, 0.5, 16)
        which = np.digitize(radius.ravel(), bins)
        mean_power = np.array(
            [power.ravel()[which == b].mean() if np.any(which == b) else np.nan for b in range(1, len(bins))]
        )
        centres = (bins[:-1] + bins[1:]) / 2
        ok = np.isfinite(mean_power) & (mean_power > 0)
        if ok.sum() >= 4:
            slopes.append(np.polyfit(np.log(centres[ok]), np.log(mean_power[ok]), 1)[0])
    return float(np.mean(slopes)) if slopes else -2.0


def video_features(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (len(FEATURE_NAMES),) float64. Size- and length-independent."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise CinecubeError(f"the detector needs frames shaped (T, H, W, 3), got {frames.shape}")
    if min(frames.shape[1:3]) < 16:
        raise CinecubeError(
            f"the detector needs frames of at least 16x16 pixels, got {frames.shape[2]}x{frames.shape[1]}"
        )
    frames = frames[:32]  # enough evidence, bounded cost
    luma = _luma(frames)  # (T, H, W)
    dx = np.abs(np.diff(luma, axis=2))  # (T, H, W-1)
    dy = np.abs(np.diff(luma, axis=1))  # (T, H-1, W)
    seams = [(_seam_ratio(dx, p, 2) + _seam_ratio(dy, p, 1)) / 2 for p in SEAM_PERIODS]

    if len(luma) >= 8:
        dt = np.abs(np.diff(luma, axis=0)).mean(axis=(1, 2))  # (T-1,)
        temporal_seam = _seam_ratio(dt, 4, 0)
        temporal_change = float(np.log(dt.mean() / (luma.std() + 1e-3) + 1e-4))
        static = float((np.abs(np.diff(luma, axis=0)) < 0.5).mean())
    else:
        temporal_seam, temporal_change, static = 0.0, float(np.log(1e-4)), 1.0

    # High-pass residual: pixel minus the mean of its 4 neighbours (a discrete Laplacian).
    lap = np.abs(
        4 * luma[:, 1:-1, 1:-1] - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2] - luma[:, 1:-1, 2:]
    )
    noise = float(np.log(np.median(lap) + 0.1))
    neighbourhood_range = np.maximum.reduce(
        [luma[:, 1:-1, 1:-1], luma[:, :-2, 1:-1], luma[:, 2:, 1:-1], luma[:, 1:-1, :-2], luma[:, 1:-1, 2:]]
    ) - np.minimum.reduce(
        [luma[:, 1:-1, 1:-1], luma[:, :-2, 1:-1], luma[:, 2:, 1:-1], luma[:, 1:-1, :-2], luma[:, 1:-1, 2:]]
    )
    flat = float((neighbourhood_range < 0.5).mean())
    grad_to_lap = float(np.log((dx.mean() + dy.mean()) / 2 + 1e-3) - np.log(lap.mean() + 1e-3))

    f = frames.astype(np.float32)
    cmax, cmin = f.max(axis=-1), f.min(axis=-1)
    saturation = (cmax - cmin) / (cmax + 1e-3)
    quantised = (frames >> 3).astype(np.int32)
    codes = (quantised[..., 0] << 10) | (quantised[..., 1] << 5) | quantised[..., 2]
    diversity = float(np.log(len(np.unique(codes)) / codes.size * 1000 + 1e-3))

    return np.array(
        [
            *seams,
            temporal_seam,
            noise,
            flat,
            grad_to_lap,
            _spectrum_slope(luma),
            float(saturation.mean()),
            float(saturation.std()),
            diversity,
            temporal_change,
            static,
            float(len(frames) == 1),
        ],
        dtype=np.float64,
    )


@dataclass
class Detector:
    """Standardised features -> logistic regression -> P(generated by cinecube)."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (F,)
    intercept: float
    threshold: float = 0.5  # score above which `is_generated` says yes
    info: dict[str, Any] = field(default_factory=dict)

    def score_features(self, features: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(features) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))

    def score(self, frames: np.ndarray) -> float:
        """Probability that the clip was made by cinecube, in [0, 1]."""
        return float(self.score_features(video_features(frames))[0])

    def is_generated(self, frames: np.ndarray) -> bool:
        return self.score(frames) >= self.threshold

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": "cinecube-detector-v1",
            "features": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "info": self.info,
        }
        with staged_file(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Detector:
        try:
            payload = json.loads(Path(path).read_text())
            if payload.get("format") != "cinecube-detector-v1":
                raise ValueError(f"format {payload.get('format')!r}")
            if tuple(payload["features"]) != FEATURE_NAMES:
                raise ValueError("its features differ from this version's")
            return cls(
                np.array(payload["mean"]),
                np.array(payload["scale"]),
                np.array(payload["coef"]),
                float(payload["intercept"]),
                float(payload["threshold"]),
                payload.get("info", {}),
            )
        except FileNotFoundError:
            raise CinecubeError(f"detector weights not found at {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CinecubeError(f"detector weights at {path} are unreadable ({exc})") from None


DEFAULT_DETECTOR_PATH = Path(__file__).resolve().parents[1] / "weights" / "detector" / "detector.json"
_default: Detector | None = None


def load_default_detector() -> Detector:
    global _default
    if _default is None:
        _default = Detector.load(DEFAULT_DETECTOR_PATH)
    return _default


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 3000) -> Detector:
    """Standardise and fit an L2-regularised logistic regression by Newton's method."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])  # (N, F+1), bias last
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2 * len(x))
    penalty[-1] = 0.0  # no penalty on the bias
    for _ in range(min(steps, 100)):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        update = np.linalg.solve(hessian, gradient)
        w -= update
        if np.abs(update).max() < 1e-8:
            break
    return Detector(mean, scale, w[:-1], float(w[-1]))


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count 1/2."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs both positives and negatives")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
