"""Reading and writing videos and images.

Videos go through PyAV (FFmpeg): H.264 ``.mp4`` and animated ``.gif`` are written, and
anything FFmpeg can demux (``.mp4``, ``.mov``, ``.avi``, ``.webm``, ``.mkv``, ``.gif`` ...)
is read. Single images (``.png``, ``.jpg`` ...) go through Pillow.

Writes are atomic: the data goes to a hidden temporary file in the destination folder
(see cinecube/outputs.py), which is renamed over the destination only once it is complete,
so a failed write never leaves a partial file nor clobbers an existing one. Every failure is a
:class:`~cinecube.errors.VideoIOError` with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from cinecube.errors import VideoIOError
from cinecube.outputs import clean_stale_temporaries, temporary_path

WRITE_SUFFIXES: tuple[str, ...] = (".mp4", ".gif", ".png")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Frame rate reported for still images, which have none of their own.
IMAGE_FPS = 1.0

MP4_CRF = 17  # visually lossless for H.264
# H.264 with 4:2:0 chroma needs even sizes: odd frames are padded by repeating their last
# row / column, and the true size is recorded in the container's comment so that
# read_video() can crop the padding away again.
_SIZE_TAG = "cinecube frame size {h}x{w}"
_SIZE_TAG_RE = re.compile(r"cinecube frame size (\d+)x(\d+)")


def _fail(action: str, path: str | os.PathLike, problem: str) -> VideoIOError:
    return VideoIOError(f"cannot {action} '{os.fspath(path)}': {problem}")


def _first_line(exc: BaseException) -> str:
    """A short description of an exception, without the file name FFmpeg errors repeat."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _check_frames(path: str | os.PathLike, frames: Any) -> np.ndarray:
    """Validate and return frames as a (T, H, W, 3) uint8 array; (H, W, 3) counts as T = 1."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise _fail("write", path, f"frames must have shape (T, H, W, 3), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise _fail("write", path, f"frames must be uint8, got {arr.dtype}")
    if min(arr.shape[:3]) < 1:
        raise _fail("write", path, f"frames must not be empty, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def _default_file_mode() -> int:
    """0o666 minus the process umask: the mode a plainly created file would get.

    Temporary files are created 0o600; the final file should not be more private than one
    made with open(). The umask is read from /proc where possible because os.umask() can
    only be read by setting it, which is not thread-safe.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_mp4(tmp: str, frames: np.ndarray, fps: float) -> None:
    """H.264 (yuv420p) in an mp4 container; odd sizes padded to even and tagged."""
    import av

    t, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        # (T, H + pad_h, W + pad_w, 3), repeating the edge so the padding is invisible.
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        if pad_h or pad_w:
            container.metadata["comment"] = _SIZE_TAG.format(h=h, w=w)
        if "libx264" in av.codecs_available:
            stream = container.add_stream("libx264", rate=rate)
            stream.options = {"crf": str(MP4_CRF), "preset": "medium"}
        else:  # FFmpeg builds without x264: MPEG-4 part 2 at high quality
            stream = container.add_stream("mpeg4", rate=rate)
            stream.options = {"qscale": "2"}
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)


def _gif_palette(frames: np.ndarray) -> np.ndarray:
    """One adaptive 256-colour palette for the whole clip, shape (256, 3) uint8.

    A shared palette keeps flat colours identical from frame to frame (no flicker).
    """
    from PIL import Image

    pixels = frames.reshape(-1, 3)
    # Large clips: build the palette from an even subsample of pixels (at most ~4M).
    stride = max(1, len(pixels) // 4_000_000)
    sample = pixels[::stride]
    img = Image.fromarray(sample.reshape(1, -1, 3))
    quantized = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.array(quantized.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    return np.pad(palette, ((0, 256 - len(palette)), (0, 0)))


def _write_gif(tmp: str, frames: np.ndarray, fps: float) -> None:
    """Animated, endlessly looping gif with a shared palette (GIF delays are in 1/100 s)."""
    import av
    from PIL import Image

    t, h, w, _ = frames.shape
    palette = _gif_palette(frames)  # (256, 3)
    palette_img = Image.new("P", (1, 1))
    palette_img.putpalette(palette.reshape(-1).tolist())
    argb = np.concatenate([np.full((256, 1), 255, dtype=np.uint8), palette], axis=1)  # (256, 4)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(tmp, mode="w", format="gif", options={"loop": "0"}) as container:
        stream = container.add_stream("gif", rate=rate)
        stream.height, stream.width = h, w
        stream.pix_fmt = "pal8"
        for frame in frames:
            # Nearest palette colour without dithering: dithering would speckle flat areas.
            index = Image.fromarray(frame).quantize(palette=palette_img, dither=Image.Dither.NONE)
            pal8 = av.VideoFrame.from_ndarray((np.asarray(index, dtype=np.uint8), argb), format="pal8")
            for packet in stream.encode(pal8):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_png(tmp: str, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    Image.fromarray(frames[0]).save(tmp, format="PNG")


_WRITERS: dict[str, Callable[[str, np.ndarray, float], None]] = {
    ".mp4": _write_mp4,
    ".gif": _write_gif,
    ".png": _write_png,
}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> pathlib.Path:
    """Write frames (T, H, W, 3) uint8 to ``path``, atomically; returns the path.

    The suffix picks the format: ``.mp4`` (H.264, crf 17), ``.gif`` (animated, looping) or
    ``.png`` (a single frame only). Raises VideoIOError on any problem.
    """
    target = pathlib.Path(path)
    suffix = target.suffix.lower()
    allowed = ", ".join(WRITE_SUFFIXES)
    if suffix not in _WRITERS:
        raise _fail("write", path, f"unknown suffix '{target.suffix}'; use one of {allowed}")
    frames = _check_frames(path, frames)
    if suffix == ".png" and frames.shape[0] > 1:
        raise _fail(
            "write",
            path,
            f"a .png holds one frame but got {frames.shape[0]}; use .mp4 or .gif for videos "
            f"(allowed suffixes: {allowed})",
        )
    if not (np.isfinite(fps) and fps > 0):
        raise _fail("write", path, f"fps must be a positive number, got {fps}")

    folder = target.parent
    if not folder.exists():
        raise _fail("write", path, f"folder '{folder}' does not exist")
    if not folder.is_dir():
        raise _fail("write", path, f"'{folder}' is not a folder")
    if target.is_dir():
        raise _fail("write", path, "it is a folder")

    clean_stale_temporaries(folder)
    tmp = temporary_path(target)
    try:
        with open(tmp, "xb"):  # created first, so a read-only folder fails here in one line
            pass
    except OSError as exc:
        problem = f"folder '{folder}' is not writable" if isinstance(exc, PermissionError) else _first_line(exc)
        raise _fail("write", path, problem) from exc
    try:
        _WRITERS[suffix](str(tmp), frames, float(fps))
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, Exception):
            raise _fail("write", path, _first_line(exc)) from exc
        raise  # KeyboardInterrupt and friends: cleaned up, then passed on unchanged
    return target


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _check_readable(path: str | os.PathLike) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.exists():
        raise _fail("read", path, "file does not exist")
    if p.is_dir():
        raise _fail("read", path, "it is a folder, not a file")
    if p.stat().st_size == 0:
        raise _fail("read", path, "file is empty")
    if not os.access(p, os.R_OK):
        raise _fail("read", path, "permission denied")
    return p


def _stream_fps(stream: Any) -> float:
    """The nominal frame rate of a PyAV video stream (falls back to 8 fps)."""
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 8.0


def _true_size(container: Any, height: int, width: int) -> tuple[int, int]:
    """The frame size before write_video()'s even-size padding, if it left its tag."""
    match = _SIZE_TAG_RE.search(container.metadata.get("comment", ""))
    if match:
        h, w = int(match.group(1)), int(match.group(2))
        if h <= height and w <= width:
            return h, w
    return height, width


def _read_image(p: pathlib.Path, path: str | os.PathLike) -> tuple[np.ndarray, float]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as img:
            n = getattr(img, "n_frames", 1)
            frames = []
            for i in range(n):  # animated png: all frames
                img.seek(i)
                frames.append(np.asarray(img.convert("RGB")))
            duration_ms = img.info.get("duration") or 0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _fail("read", path, f"not a readable image ({_first_line(exc)})") from exc
    fps = 1000.0 / duration_ms if n > 1 and duration_ms else IMAGE_FPS
    return np.stack(frames), fps


def _read_av(p: pathlib.Path, path: str | os.PathLike) -> tuple[np.ndarray, float]:
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise _fail("read", path, "it has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = _stream_fps(stream)
            frames = []
            size: tuple[int, int] | None = None
            for frame in container.decode(stream):
                if size is None:
                    size = (frame.height, frame.width)
                # Reformat to the first frame's size in case the stream changes size midway.
                rgb = frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                frames.append(rgb)  # (H, W, 3)
            if not frames:
                raise _fail("read", path, "it contains no video frames")
            h, w = _true_size(container, *size)
    except VideoIOError:
        raise
    except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
        raise _fail("read", path, f"not a readable video ({_first_line(exc)})") from exc
    return np.stack(frames)[:, :h, :w], fps


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a video or image: frames (T, H, W, 3) uint8 RGB and frames per second.

    Images (.png, .jpg, ...) are read with Pillow as one frame at IMAGE_FPS; everything else
    goes to FFmpeg. Raises VideoIOError for a missing, empty, corrupt or frameless file.
    """
    p = _check_readable(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(p, path)
    return _read_av(p, path)


def video_info(path: str | os.PathLike) -> dict[str, Any]:
    """Frame count, height, width and fps of a video or image, without decoding pixels.

    Returns ``{"frames": int, "height": int, "width": int, "fps": float}``. The frame count
    comes from the container header or, where the container has none (gif, webm), from
    counting packets.
    """
    p = _check_readable(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                n = getattr(img, "n_frames", 1)
                duration_ms = img.info.get("duration") or 0
                return {
                    "frames": int(n),
                    "height": img.height,
                    "width": img.width,
                    "fps": 1000.0 / duration_ms if n > 1 and duration_ms else IMAGE_FPS,
                }
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise _fail("read", path, f"not a readable image ({_first_line(exc)})") from exc

    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise _fail("read", path, "it has no video stream")
            stream = container.streams.video[0]
            count = stream.frames or sum(1 for pkt in container.demux(stream) if pkt.size)
            height, width = _true_size(container, stream.codec_context.height, stream.codec_context.width)
            if count == 0:
                raise _fail("read", path, "it contains no video frames")
            return {"frames": int(count), "height": height, "width": width, "fps": _stream_fps(stream)}
    except VideoIOError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail("read", path, f"not a readable video ({_first_line(exc)})") from exc
