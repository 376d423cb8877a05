"""The generated-vs-real detector: features, fitting, AUC, weights file, bundled detector."""

import json

import numpy as np
import pytest

from cinecube.errors import CinecubeError
from cinecube.safety.detector import (
    FEATURE_NAMES,
    Detector,
    fit_logistic,
    load_default_detector,
    roc_auc,
    video_features,
)


def _mosaic(rng, t=8, h=64, w=64, cell=4):
    """Frames assembled from flat 4x4x4 cubes: the seams a pixel-cube model leaves."""
    cubes = rng.integers(0, 256, size=(t // cell + 1, h // cell, w // cell, 3))
    return np.repeat(np.repeat(np.repeat(cubes, cell, 0), cell, 1), cell, 2)[:t].astype(np.uint8)


def _camera(rng, t=8, h=64, w=64):
    """A smooth scene with sensor noise, panning by one pixel a frame."""
    yy, xx = np.mgrid[0:h, 0 : w + t]
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    frames = np.stack([base[:, i : i + w] for i in range(t)])[..., None].repeat(3, -1)
    return np.clip(frames + rng.normal(0, 3, frames.shape), 0, 255).astype(np.uint8)


def test_features_are_finite_and_size_independent():
    rng = np.random.default_rng(0)
    for frames in (_mosaic(rng), _camera(rng), _camera(rng, t=1, h=48, w=80), _mosaic(rng, t=16, h=96, w=64)):
        f = video_features(frames)
        assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()
    # The seam feature sees 4-pixel cubes and not a camera image.
    seam = FEATURE_NAMES.index("spatial_seam_4")
    assert video_features(_mosaic(rng))[seam] > video_features(_camera(rng))[seam] + 0.5


def test_too_small_or_wrong_shape_is_a_clear_error():
    with pytest.raises(CinecubeError, match="16x16"):
        video_features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(CinecubeError, match="shaped"):
        video_features(np.zeros((8, 8, 3), np.uint8))


def test_roc_auc_matches_definition():
    assert roc_auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert roc_auc([0.1, 0.9], [1, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert roc_auc([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0]) == 0.75


def test_fit_separates_and_save_load_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    clips = [_mosaic(rng) for _ in range(12)] + [_camera(rng) for _ in range(12)]
    x = np.stack([video_features(c) for c in clips])
    y = np.array([1] * 12 + [0] * 12)
    detector = fit_logistic(x, y)
    assert roc_auc(detector.score_features(x), y) == 1.0
    detector.save(tmp_path / "d.json")
    loaded = Detector.load(tmp_path / "d.json")
    held_out = _mosaic(np.random.default_rng(7))
    assert loaded.score(held_out) == pytest.approx(detector.score(held_out))
    assert loaded.score(held_out) > loaded.score(_camera(np.random.default_rng(7)))


def test_corrupt_weights_are_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CinecubeError, match="unreadable"):
        Detector.load(tmp_path / "bad.json")
    payload = {
        "format": "cinecube-detector-v1",
        "features": ["x"],
        "mean": [0],
        "scale": [1],
        "coef": [1],
        "intercept": 0,
        "threshold": 0.5,
    }
    (tmp_path / "old.json").write_text(json.dumps(payload))
    with pytest.raises(CinecubeError, match="features differ"):
        Detector.load(tmp_path / "old.json")


def test_bundled_detector_scores_a_real_clip_low_and_a_generated_video_high():
    from cinecube.data.assets import real_clip_paths
    from cinecube.pipeline import Pipeline
    from cinecube.safety.detector_training import read_window, resize_frames

    detector = load_default_detector()
    assert detector.info["test_roc_auc"] >= 0.9
    real = resize_frames(read_window(real_clip_paths(["tree"])["tree"], 10, 12), 64, 64)
    video = Pipeline.from_pretrained()(
        "a red circle moving right on a black background",
        frames=12,
        height=64,
        width=64,
        steps=8,
        seed=3,
        progress=False,
    )
    assert detector.score(video.frames) > detector.score(real)
    assert detector.score(real) < detector.threshold
