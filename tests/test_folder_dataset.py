"""Tests of the video folder dataset: captions, resampling, native sizes, clips and bad files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from cinecube.data.folder import VideoFolderDataset, iter_frames, read_frames, round_to_grid
from cinecube.errors import CinecubeError
from cinecube.video_io import write_video


def _ramp_video(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 whose brightness encodes the frame index (10 levels per frame)."""
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        video[t] = min(255, 10 + 4 * t)
    return video


@pytest.fixture()
def folder(tmp_path):
    """A folder with good and bad files, captions via captions.jsonl and via .txt."""
    write_video(tmp_path / "long.mp4", _ramp_video(50, 36, 52), fps=25)  # 2 s at 25 fps
    write_video(tmp_path / "short.gif", _ramp_video(10, 24, 40), fps=10)  # 1 s at 10 fps
    (tmp_path / "short.txt").write_text("a short gif\n")
    data = (tmp_path / "long.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("these are notes, not a video\n")
    write_video(tmp_path / "uncaptioned.mp4", _ramp_video(4, 16, 16), fps=8)
    records = [
        {"video": "long.mp4", "caption": "a long ramp"},
        {"video": "truncated.mp4", "caption": "cut off"},
        {"video": "zero.mp4", "caption": "nothing"},
        {"video": "notes.mp4", "caption": "text"},
        {"video": "gone.mp4", "caption": "missing"},
        {"video": "still.png", "caption": "an image, not a video"},
    ]
    write_video(tmp_path / "still.png", _ramp_video(1, 16, 16))
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    return tmp_path


def test_good_files_are_read_with_their_captions_and_bad_ones_counted(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="cinecube.data.folder"):
        dataset = VideoFolderDataset(folder, fps=8, max_frames=33)
        clips = list(dataset)
    captions = [caption for _, caption in clips]
    assert captions == ["a long ramp", "a short gif"]
    assert dict(dataset.skipped) == {
        "bad caption line": 1,
        "no caption": 1,
        "missing file": 1,
        "not a video": 1,
        "truncated": 1,
        "empty": 1,
        "unreadable": 1,
    }
    messages = " ".join(r.getMessage() for r in caplog.records)
    for name in ("truncated.mp4", "zero.mp4", "notes.mp4", "uncaptioned.mp4", "gone.mp4"):
        assert name in messages


def test_fps_resampling_by_frame_count(folder):
    # 50 frames at 25 fps = 2 s -> 16 frames at 8 fps; 10 frames at 10 fps = 1 s -> 8 frames.
    assert len(read_frames(folder / "long.mp4", fps=8)) == 16
    assert len(read_frames(folder / "short.gif", fps=8)) == 8
    assert len(read_frames(folder / "long.mp4", fps=None)) == 50
    # Up-sampling repeats frames: 1 s at 10 fps -> 20 frames at 20 fps.
    assert len(read_frames(folder / "short.gif", fps=20)) == 20
    # Resampled frames keep time order: frame k shows source frame floor(k * 25 / 8).
    frames = read_frames(folder / "long.mp4", fps=8)
    levels = frames[:, 10, 10, 0].astype(int)
    expected = 10 + 4 * np.floor(np.arange(16) * 25 / 8)
    assert np.abs(levels - expected).max() <= 3


def test_native_size_rounded_down_never_square(folder):
    dataset = VideoFolderDataset(folder, fps=8, max_frames=33, patch_multiple=8)
    shapes = {caption: frames.shape for frames, caption in dataset}
    assert shapes["a long ramp"] == (16, 32, 48, 3)  # 36x52 -> 32x48, not 32x32
    assert shapes["a short gif"] == (8, 24, 40, 3)  # already on the grid
    video = np.arange(1 * 13 * 21 * 3, dtype=np.uint8).reshape(1, 13, 21, 3)
    cropped = round_to_grid(video, 8)
    assert cropped.shape == (1, 8, 16, 3)
    assert np.array_equal(cropped, video[:, 2:10, 2:18])  # the remainder split between both sides


def test_long_video_is_cut_into_clips(folder):
    dataset = VideoFolderDataset(folder, fps=8, max_frames=6)
    long_clips = [frames for frames, caption in dataset if caption == "a long ramp"]
    assert [len(c) for c in long_clips] == [6, 6, 4]  # 16 frames
    joined = np.concatenate(long_clips)
    assert np.array_equal(joined, round_to_grid(read_frames(folder / "long.mp4", fps=8), 8))
    overlapping = VideoFolderDataset(folder, fps=8, max_frames=6, clip_stride=5)
    lengths = [len(f) for f, c in overlapping if c == "a long ramp"]
    assert lengths == [6, 6, 6]  # starts 0, 5, 10; the last ends at 16


def test_iter_frames_errors_are_one_line(tmp_path):
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01garbage" * 50)
    for name in ("zero.mp4", "junk.mp4", "absent.mp4"):
        with pytest.raises(CinecubeError) as info:
            list(iter_frames(tmp_path / name))
        assert "\n" not in str(info.value) and name in str(info.value)


def test_too_small_video_is_skipped(tmp_path):
    write_video(tmp_path / "tiny.mp4", _ramp_video(3, 6, 6), fps=8)
    (tmp_path / "tiny.txt").write_text("tiny")
    dataset = VideoFolderDataset(tmp_path, patch_multiple=8)
    assert list(dataset) == []
    assert dataset.skipped["too small"] == 1


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CinecubeError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nope")
