"""Tests of the real-footage worlds (fashion, pans), their mix, and corpus folders."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cinecube import cli
from cinecube.errors import CinecubeError

try:
    from cinecube.data.assets import fashion_mnist_dir, photo_paths

    fashion_mnist_dir()
    photo_paths()
except CinecubeError:  # pragma: no cover - data not installed
    pytest.skip("offline photos / Fashion-MNIST not installed", allow_module_level=True)

from cinecube.data.corpus import MixedWorld, build_corpus, corpus_source, inspect_corpus, make_world
from cinecube.data.fashion import CLASS_NAMES, CLASS_NOUNS, FashionWorld, load_fashion_mnist
from cinecube.data.folder import VideoFolderDataset
from cinecube.data.pans import EVAL_PHOTOS, PansWorld, scene_photos
from cinecube.data.vocab import BACKGROUND_COLORS

MOTION_WORDS = re.compile(r"\b(moving|moves|sliding|drifting|pan|tilt|zoom\w*|left|right|up|down)\b")


@pytest.fixture(scope="module")
def fashion():
    return FashionWorld("train", seed=3)


@pytest.fixture(scope="module")
def pans():
    return PansWorld("train", seed=3)


def _find(world, predicate, height=64, width=96, frames=9, limit=400):
    for index in range(limit):
        sample = world.sample_at(index, height, width, frames)
        if predicate(sample):
            return sample
    raise AssertionError("no matching sample drawn")


def test_fashion_mnist_files_parse():
    images, labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("eval")
    assert images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert set(np.unique(labels)) == set(range(10)) and len(test_labels) == 10000
    assert images.mean() > 40  # real pictures, not a zero-filled buffer


def test_fashion_samples_are_deterministic_and_shaped(fashion):
    a, b = fashion.sample_at(5, 48, 80, 9), fashion.sample_at(5, 48, 80, 9)
    assert a.video.shape == (9, 48, 80, 3) and a.video.dtype == np.uint8
    assert np.array_equal(a.video, b.video) and a.caption == b.caption
    assert not np.array_equal(a.video, fashion.sample_at(6, 48, 80, 9).video)
    drawn = fashion.sample(0)
    assert drawn.video.shape[0] in fashion.frame_counts


def test_fashion_caption_names_class_colour_motion_and_background(fashion):
    for index in range(30):
        sample = fashion.sample_at(index, 64, 64, 9)
        truth = sample.truth
        assert truth["background"] in sample.caption
        for obj in truth["objects"]:
            assert CLASS_NOUNS.get(obj["label"], obj["label"]) in sample.caption
            assert obj["label"] in CLASS_NAMES
            if obj["color"] != "natural":
                assert obj["color"] in sample.caption
        moving = [o for o in truth["objects"] if o["motion"] != "still"]
        if moving:
            assert MOTION_WORDS.search(sample.caption)
    image = fashion.sample_at(0, 64, 64, 1)
    assert not MOTION_WORDS.search(image.caption.replace(image.truth["background"], ""))


def test_fashion_object_moves_as_its_truth_says(fashion):
    sample = _find(
        fashion,
        lambda s: (
            s.truth["background_kind"] == "color"
            and len(s.truth["objects"]) == 1
            and s.truth["objects"][0]["motion"] == "right"
            and s.truth["objects"][0]["speed"] != "slowly"
        ),
    )
    background = np.asarray(BACKGROUND_COLORS[sample.truth["background"]], dtype=np.int16)
    mask = np.abs(sample.video.astype(np.int16) - background).sum(axis=-1) > 40  # (T, H, W)
    xs = np.arange(sample.video.shape[2])
    centroid_x = (mask * xs).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
    truth_x = np.array(sample.truth["objects"][0]["centers"])[:, 0]
    assert np.all(np.diff(truth_x) > 0) and centroid_x[-1] - centroid_x[0] > 5
    assert np.abs(centroid_x - truth_x).max() < 4  # the item's outline and shape shift it a little


def test_fashion_eval_split_uses_test_images_and_heldout_photos():
    world = FashionWorld("eval")
    assert len(world.images) == 10000
    assert set(world.photos) <= EVAL_PHOTOS
    with pytest.raises(ValueError, match="split"):
        FashionWorld("validation")


def test_pan_direction_matches_pixels(pans):
    import cv2

    sample = _find(pans, lambda s: s.truth["move"] == "pan right" and s.truth["speed"] != "slow", frames=9)
    windows = np.array(sample.truth["windows"])
    assert np.all(np.diff(windows[:, 0]) > 0)  # the camera window moves right ...
    first = sample.video[0].mean(axis=-1).astype(np.float32)
    last = sample.video[-1].mean(axis=-1).astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(first, last)
    assert dx < -1 and abs(dy) < 1  # ... so the content moves left
    assert "pan right" in sample.caption and sample.truth["scene"] in sample.caption


def test_zoom_in_shrinks_the_window(pans):
    sample = _find(pans, lambda s: s.truth["move"] == "zoom in")
    widths = np.array(sample.truth["windows"])[:, 2]
    assert np.all(np.diff(widths) < 0)
    assert "zoom" in sample.caption and "in" in sample.caption


def test_pan_splits_are_disjoint():
    train, held_out = set(scene_photos("train")), set(scene_photos("eval"))
    assert held_out == EVAL_PHOTOS and not (train & held_out)
    assert all(s.truth["photo"] in EVAL_PHOTOS for s in (PansWorld("eval").sample(i) for i in range(5)))


def test_mix_draws_every_world_and_the_requested_size():
    world = make_world("mix", seed=1)
    assert isinstance(world, MixedWorld)
    kinds = {world.world_of(i) for i in range(60)}
    assert kinds == {"shapes", "fashion", "pans"}
    for index in range(6):
        sample = world.sample_at(index, 40, 56, 5)
        assert sample.video.shape == (5, 40, 56, 3) and sample.caption
        assert sample.truth["world"] == world.world_of(index)
    with pytest.raises(CinecubeError, match="unknown world"):
        make_world("kinetics")


def test_corpus_source_is_a_pure_function_of_the_step():
    from cinecube.train.autoencoder_loop import AUTOENCODER_TRAIN_PRESETS

    train = AUTOENCODER_TRAIN_PRESETS["tiny"]
    source = corpus_source(train, canvases=((32, 48),), frame_counts=(5,))
    first, again = source(3), source(3)
    assert len(first) == train.videos_per_step
    assert all(v.shape == (5, 32, 48, 3) for v in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_build_then_read_back_and_inspect(tmp_path):
    out = tmp_path / "corpus"
    manifest = build_corpus(out, "mix", n=6, seed=2, min_size=32, max_size=48, frames=5, progress=False)
    assert sum(manifest["worlds"].values()) == 6
    lines = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert [line["video"] for line in lines] == [f"clips/{i:06d}.mp4" for i in range(6)]
    dataset = VideoFolderDataset(out, fps=8, max_frames=33)
    clips = list(dataset)
    assert [caption for _, caption in clips] == [line["caption"] for line in lines]
    assert all(frames.shape[0] == 5 and 32 <= frames.shape[1] <= 48 and frames.shape[2] % 8 == 0 for frames, _ in clips)
    assert not dataset.skipped
    summary = inspect_corpus(out)
    assert summary["videos"] == 6 and summary["skipped"] == {}
    assert summary["total_seconds"] == pytest.approx(6 * 5 / 8)
    assert sum(summary["worlds"].values()) == 6
    from cinecube.train.autoencoder_loop import AUTOENCODER_TRAIN_PRESETS

    (out / "clips" / "000001.mp4").write_bytes(b"")  # broken after the build: its slot moves on
    from_folder = corpus_source(AUTOENCODER_TRAIN_PRESETS["tiny"], folder=out)
    videos = from_folder(0)
    assert len(videos) == 2 and np.array_equal(videos[0], clips[0][0]) and np.array_equal(videos[1], clips[2][0])
    with pytest.raises(CinecubeError, match="already holds a corpus"):
        build_corpus(out, "mix", n=1, progress=False)


def test_data_commands(tmp_path, capsys):
    out = tmp_path / "fashion"
    assert (
        cli.main(
            [
                "data",
                "build",
                "--world",
                "fashion",
                "--n",
                "2",
                "--out",
                str(out),
                "--frames",
                "5",
                "--min-size",
                "32",
                "--max-size",
                "32",
            ]
        )
        == 0
    )
    assert "wrote 2 clips" in capsys.readouterr().out
    (out / "clips" / "000001.mp4").write_bytes(b"")  # a file broken after the build
    assert cli.main(["data", "inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 readable captioned videos" in printed and "empty 1" in printed
    assert cli.main(["data", "build", "--world", "pans", "--n", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
