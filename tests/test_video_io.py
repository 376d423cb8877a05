"""Tests of video and image reading and writing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cinecube import video_io
from cinecube.errors import VideoIOError
from cinecube.video_io import read_video, video_info, write_video


def _smooth_video(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """Slowly moving colour gradients, (T, H, W, 3) uint8."""
    tt = np.arange(t)[:, None, None]
    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    r = 128 + 90 * np.sin(xx / 11 + tt / 4) + 0 * yy
    g = 128 + 90 * np.cos(yy / 9 + tt / 5) + 0 * xx
    b = 128 + 60 * np.sin((xx + yy) / 14 + tt / 6)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _leftovers(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------- round trips


def test_mp4_round_trip(tmp_path):
    video = _smooth_video()
    out = write_video(tmp_path / "clip.mp4", video, fps=12.0)
    assert out == tmp_path / "clip.mp4"
    frames, fps = read_video(out)
    assert frames.shape == video.shape and frames.dtype == np.uint8
    assert fps == pytest.approx(12.0)
    assert _psnr(frames, video) > 35.0
    assert video_info(out) == {"frames": 12, "height": 48, "width": 64, "fps": pytest.approx(12.0)}
    assert _leftovers(tmp_path) == ["clip.mp4"]


def test_mp4_odd_size_round_trip_keeps_the_size(tmp_path):
    video = _smooth_video(t=5, h=33, w=47)
    path = write_video(str(tmp_path / "odd.mp4"), video)
    frames, fps = read_video(str(path))
    assert frames.shape == (5, 33, 47, 3)
    assert fps == pytest.approx(8.0)
    assert _psnr(frames, video) > 33.0
    info = video_info(path)
    assert (info["height"], info["width"], info["frames"]) == (33, 47, 5)


def test_mp4_single_frame(tmp_path):
    video = _smooth_video(t=1)
    frames, _ = read_video(write_video(tmp_path / "one.mp4", video))
    assert frames.shape == video.shape


def test_gif_round_trip(tmp_path):
    # Few flat colours, as in the shapes world: a palette holds them exactly.
    video = np.zeros((6, 24, 32, 3), dtype=np.uint8)
    video[:] = (15, 25, 90)
    for t in range(6):
        video[t, 4:12, 2 + 3 * t : 10 + 3 * t] = (230, 40, 40)
    path = write_video(tmp_path / "anim.gif", video, fps=10.0)
    frames, fps = read_video(path)
    assert frames.shape == video.shape
    assert np.abs(frames.astype(int) - video).max() <= 2
    assert fps == pytest.approx(10.0)
    assert video_info(path)["frames"] == 6


def test_gif_smooth_video_is_close(tmp_path):
    video = _smooth_video()
    frames, _ = read_video(write_video(tmp_path / "smooth.gif", video))
    assert frames.shape == video.shape
    assert _psnr(frames, video) > 25.0


def test_gif_keeps_identical_frames(tmp_path):
    video = np.repeat(_smooth_video(t=1), 5, axis=0)
    frames, _ = read_video(write_video(tmp_path / "still.gif", video))
    assert frames.shape[0] == 5


def test_gif_loops_forever(tmp_path):
    from PIL import Image

    path = write_video(tmp_path / "loop.gif", _smooth_video(t=3))
    with Image.open(path) as img:
        assert img.info.get("loop") == 0


def test_png_round_trip_is_exact(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, size=(1, 17, 23, 3), dtype=np.uint8)
    frames, fps = read_video(write_video(tmp_path / "img.png", image))
    assert np.array_equal(frames, image)
    assert fps == video_io.IMAGE_FPS
    assert video_info(tmp_path / "img.png") == {"frames": 1, "height": 17, "width": 23, "fps": video_io.IMAGE_FPS}


def test_png_accepts_a_single_hwc_frame(tmp_path):
    image = np.full((8, 9, 3), 200, dtype=np.uint8)
    frames, _ = read_video(write_video(tmp_path / "hwc.png", image))
    assert np.array_equal(frames[0], image)


def test_jpg_is_read_with_pillow(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((10, 12, 3), 90, dtype=np.uint8)).save(tmp_path / "x.jpg")
    frames, fps = read_video(tmp_path / "x.jpg")
    assert frames.shape == (1, 10, 12, 3)
    assert np.abs(frames.astype(int) - 90).max() <= 3


def test_written_files_have_normal_permissions(tmp_path):
    path = write_video(tmp_path / "perm.png", _smooth_video(t=1))
    assert os.stat(path).st_mode & 0o644 == 0o644  # not the 0o600 of a temporary file


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("clip.webm", "libvpx", "yuv420p"), ("clip.avi", "mpeg4", "yuv420p"), ("clip.mov", "mpeg4", "yuv420p")],
)
def test_other_containers_are_read(tmp_path, name, codec, pix_fmt):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build without {codec}")
    video = _smooth_video(t=6, h=32, w=48)
    path = tmp_path / name
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width, stream.pix_fmt = 32, 48, pix_fmt
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames, fps = read_video(path)
    assert frames.shape == video.shape
    assert fps == pytest.approx(10.0)
    assert _psnr(frames, video) > 20.0
    info = video_info(path)
    assert (info["frames"], info["height"], info["width"]) == (6, 32, 48)


# ---------------------------------------------------------------- refused writes


def test_png_with_many_frames_is_refused(tmp_path):
    with pytest.raises(VideoIOError, match=r"\.mp4.*\.gif"):
        write_video(tmp_path / "many.png", _smooth_video(t=2))
    assert _leftovers(tmp_path) == []


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(VideoIOError, match=r"\.mp4, \.gif, \.png"):
        write_video(tmp_path / "clip.avi", _smooth_video(t=2))
    with pytest.raises(VideoIOError, match="unknown suffix"):
        write_video(tmp_path / "clip", _smooth_video(t=2))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, 8, 8), dtype=np.uint8),  # no channel axis
        np.zeros((2, 8, 8, 4), dtype=np.uint8),  # RGBA
        np.zeros((2, 8, 8, 3), dtype=np.float32),  # not uint8
        np.zeros((0, 8, 8, 3), dtype=np.uint8),  # no frames
    ],
)
def test_bad_frames_are_refused(tmp_path, frames):
    with pytest.raises(VideoIOError, match="frames"):
        write_video(tmp_path / "bad.mp4", frames)
    assert _leftovers(tmp_path) == []


def test_bad_fps_is_refused(tmp_path):
    with pytest.raises(VideoIOError, match="fps"):
        write_video(tmp_path / "bad.mp4", _smooth_video(t=2), fps=0)


def test_missing_folder_raises_and_leaves_no_file(tmp_path):
    target = tmp_path / "nope" / "clip.mp4"
    with pytest.raises(VideoIOError, match="does not exist") as info:
        write_video(target, _smooth_video(t=2))
    assert "\n" not in str(info.value)
    assert str(target) in str(info.value)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_folder_that_is_a_file_raises(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(VideoIOError, match="not a folder"):
        write_video(tmp_path / "afile" / "clip.mp4", _smooth_video(t=2))


def test_destination_that_is_a_folder_raises(tmp_path):
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(VideoIOError, match="folder"):
        write_video(tmp_path / "clip.mp4", _smooth_video(t=2))
    assert _leftovers(tmp_path) == ["clip.mp4"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_raises(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(VideoIOError, match="not writable"):
            write_video(folder / "clip.mp4", _smooth_video(t=2))
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_permission_denied_is_reported_as_not_writable(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_io, "open", denied, raising=False)  # the temporary file's creation
    with pytest.raises(VideoIOError, match="is not writable"):
        write_video(tmp_path / "clip.mp4", _smooth_video(t=2))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".png"])
def test_failed_write_keeps_the_existing_file(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"keep{suffix}"
    target.write_bytes(b"old content")

    def broken_writer(tmp: str, frames: np.ndarray, fps: float) -> None:
        with open(tmp, "wb") as f:
            f.write(b"partial")  # some data reached the disk before the failure
        raise RuntimeError("encoder crashed")

    monkeypatch.setitem(video_io._WRITERS, suffix, broken_writer)
    with pytest.raises(VideoIOError, match="encoder crashed") as info:
        write_video(target, _smooth_video(t=1))
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == [target.name]


def test_successful_write_replaces_the_existing_file(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old content")
    write_video(target, _smooth_video(t=3))
    assert read_video(target)[0].shape[0] == 3
    assert _leftovers(tmp_path) == ["clip.mp4"]


# ---------------------------------------------------------------- refused reads


def test_missing_file_raises(tmp_path):
    with pytest.raises(VideoIOError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoIOError, match="does not exist"):
        video_info(tmp_path / "missing.mp4")


def test_empty_file_raises(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoIOError, match="empty"):
        read_video(tmp_path / "empty.mp4")


@pytest.mark.parametrize("name", ["noise.mp4", "noise.gif", "noise.webm", "noise.png", "noise.jpg"])
def test_corrupt_file_raises_one_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoIOError) as info:
        read_video(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "not a readable" in message
    with pytest.raises(VideoIOError):
        video_info(path)


def test_truncated_mp4_raises_or_returns_fewer_frames(tmp_path):
    path = write_video(tmp_path / "full.mp4", _smooth_video())
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    try:
        frames, _ = read_video(cut)
    except VideoIOError as exc:
        assert str(cut) in str(exc)
    else:
        assert 0 < frames.shape[0] <= 12


def test_folder_path_raises(tmp_path):
    with pytest.raises(VideoIOError, match="folder"):
        read_video(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "tone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoIOError, match="no video stream"):
        read_video(path)
