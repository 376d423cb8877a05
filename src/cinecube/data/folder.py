"""Your own videos: a folder of captioned videos as training clips.

    dataset = VideoFolderDataset("my_videos", fps=8, max_frames=33, patch_multiple=8)
    for frames, caption in dataset:          # frames: (T, H, W, 3) uint8
        ...
    print(dataset.skipped)                   # {"unreadable": 1, "no caption": 2, ...}

Captions come from `captions.jsonl` in the folder (one {"video": path relative to the folder,
"caption": text} per line) or, for a video it does not name, from a `.txt` file beside the
video with the same stem (`clip.mp4` + `clip.txt`). `cinecube data build` writes folders in
this same format.

Each video is decoded with PyAV, one frame at a time, and resampled to `fps` by time stamps:
output frame k is the last source frame shown at time k / fps (so 25 fps -> 8 fps keeps about
every third frame and a 2 s video gives 16 frames; a slower source repeats frames). Frames
keep their native size and aspect ratio: height and width are rounded DOWN to a multiple of
`patch_multiple`, and only the remainder (fewer than `patch_multiple` pixels per side) is
cropped, evenly from both sides. Nothing is ever cropped to a square or resized. A long
video is cut into clips of `max_frames`, starting every `clip_stride` frames (default: one
after the other); a shorter last piece is kept as a shorter clip.

Bad files never stop a run: a file that cannot be opened or decoded, has no frames, is
smaller than one patch, or has no caption is skipped with a warning and counted in
`skipped` (reason -> count). A file that breaks part-way through decoding (truncated) keeps
the clips completed before the break and is counted as "truncated".
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CinecubeError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg")
INDEXED_SUFFIXES = (".mp4", ".m4v", ".mov")  # containers whose header lists every frame
CAPTIONS_FILE = "captions.jsonl"


class DecodeError(CinecubeError):
    """A video that cannot be decoded; `reason` is the skip-count key."""

    def __init__(self, message: str, reason: str, frames_done: int = 0):
        super().__init__(message)
        self.reason = reason
        self.frames_done = frames_done


def iter_frames(path: str | Path, fps: float | None = None, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video with PyAV one frame at a time: (H, W, 3) uint8 RGB frames.

    `fps` resamples by time stamps (output frame k = the last source frame shown at k / fps);
    None keeps every source frame. `max_frames` stops decoding early. Raises DecodeError
    (reason "empty", "unreadable", "no frames" or "truncated") with a one-line message.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"cannot read '{path}': file does not exist", "missing")
    if path.stat().st_size == 0:
        raise DecodeError(f"cannot read '{path}': file is empty", "empty")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DecodeError(f"cannot read '{path}': not a readable video ({_first_line(error)})", "unreadable") from None
    emitted = 0
    try:
        if not container.streams.video:
            raise DecodeError(f"cannot read '{path}': it has no video stream", "unreadable")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = next((float(r) for r in (stream.guessed_rate, stream.average_rate, stream.base_rate) if r), 8.0)
        size: tuple[int, int] | None = None
        previous: np.ndarray | None = None
        start_time: float | None = None
        last_time = 0.0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if size is None:
                    size = (frame.height, frame.width)
                time = frame.time if frame.time is not None else index / source_fps
                if start_time is None:
                    start_time = time
                time -= start_time
                last_time = time
                if fps is None:
                    yield frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                    emitted += 1
                else:
                    # Every output time before this frame's time shows the previous frame.
                    while previous is not None and emitted / fps < time - 1e-6:
                        yield previous
                        emitted += 1
                        if max_frames is not None and emitted >= max_frames:
                            return
                    previous = frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                if max_frames is not None and emitted >= max_frames:
                    return
            if fps is not None and previous is not None:
                # The last frame is shown until one source frame period after its time stamp.
                end = last_time + 1.0 / source_fps
                while emitted / fps < end - 1e-6 and (max_frames is None or emitted < max_frames):
                    yield previous
                    emitted += 1
        except (av.FFmpegError, OSError, ValueError, MemoryError) as error:
            raise DecodeError(
                f"cannot read '{path}': decoding failed after {emitted} frames ({_first_line(error)})",
                "truncated" if emitted else "unreadable",
                emitted,
            ) from None
        if emitted == 0:
            raise DecodeError(f"cannot read '{path}': it contains no video frames", "no frames")
    finally:
        container.close()


def check_complete(path: str | Path) -> None:
    """Raise DecodeError("truncated") if an mp4/mov holds fewer video packets than its sample
    index promises (a cut-off download or copy), reading packets without decoding them.

    Only these containers index every frame up front; an AVI header's frame count is not
    reliable (OpenCV's tree.avi promises 444 frames and plays its 68 fine), so other
    containers are only checked for being openable, and decoding finds the rest.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"cannot read '{path}': it has no video stream", "unreadable")
            stream = container.streams.video[0]
            promised = stream.frames
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DecodeError(f"cannot read '{path}': corrupt container ({_first_line(error)})", "unreadable") from None
    if promised and count < promised and Path(path).suffix.lower() in INDEXED_SUFFIXES:
        raise DecodeError(f"cannot read '{path}': truncated, {count} of {promised} frames present", "truncated")


def read_frames(path: str | Path, fps: float | None = None, max_frames: int | None = None) -> np.ndarray:
    """All frames of iter_frames as (T, H, W, 3) uint8 (decoding stops after max_frames)."""
    return np.stack(list(iter_frames(path, fps, max_frames)))


def round_to_grid(frames: np.ndarray, multiple: int) -> np.ndarray:
    """Crop (T, H, W, 3) to H, W rounded down to `multiple`, the remainder split between both sides."""
    t, h, w = frames.shape[:3]
    nh, nw = h // multiple * multiple, w // multiple * multiple
    top, left = (h - nh) // 2, (w - nw) // 2
    return frames[:, top : top + nh, left : left + nw]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(frozen=True)
class VideoEntry:
    path: Path
    caption: str


class VideoFolderDataset:
    """Captioned clips from a folder of videos; iterate `(frames (T, H, W, 3) uint8, caption)`.

    `entries` lists the captioned videos found; `skipped` counts what was left out and why
    (it grows while iterating, as decoding finds broken files). Iteration is in sorted path
    order and deterministic.
    """

    def __init__(
        self,
        root: str | Path,
        fps: float = 8.0,
        max_frames: int = 33,
        patch_multiple: int = 8,
        clip_stride: int | None = None,
        recursive: bool = True,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise CinecubeError(f"video folder '{self.root}' does not exist or is not a folder")
        if fps <= 0 or max_frames < 1 or patch_multiple < 1:
            raise CinecubeError(
                f"fps ({fps}), max_frames ({max_frames}) and patch_multiple ({patch_multiple}) must be positive"
            )
        if clip_stride is not None and clip_stride < 1:
            raise CinecubeError(f"clip_stride must be at least 1, got {clip_stride}")
        self.fps, self.max_frames, self.patch_multiple = float(fps), max_frames, patch_multiple
        self.clip_stride = clip_stride or max_frames
        self.skipped: Counter[str] = Counter()
        self.entries = self._list(recursive)

    # ------------------------------------------------------------------------ listing

    def _skip(self, path: Path | str, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        log.warning("skipping %s: %s", path, message)

    def _captions_from_jsonl(self) -> dict[Path, str]:
        captions: dict[Path, str] = {}
        file = self.root / CAPTIONS_FILE
        if not file.exists():
            return captions
        for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                video, caption = record["video"], record["caption"]
                if not isinstance(video, str) or not isinstance(caption, str) or not caption.strip():
                    raise TypeError("video and caption must be non-empty strings")
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                self._skip(f"{file}:{number}", "bad caption line", f"not a {{'video', 'caption'}} record ({error})")
                continue
            captions[(self.root / video).resolve()] = caption.strip()
        return captions

    def _list(self, recursive: bool) -> list[VideoEntry]:
        captions = self._captions_from_jsonl()
        pattern = "**/*" if recursive else "*"
        videos = sorted(
            p
            for p in self.root.glob(pattern)
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
        )
        entries = []
        for path in videos:
            caption = captions.pop(path.resolve(), None)
            if caption is None:
                txt = path.with_suffix(".txt")
                caption = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
            if not caption:
                self._skip(path, "no caption", f"no caption in {CAPTIONS_FILE} and no {path.stem}.txt")
                continue
            entries.append(VideoEntry(path, caption))
        for missing in captions:
            if missing.is_file():
                self._skip(
                    missing,
                    "not a video",
                    f"named in {CAPTIONS_FILE} but its suffix is not one of {', '.join(VIDEO_SUFFIXES)}",
                )
            else:
                self._skip(missing, "missing file", f"named in {CAPTIONS_FILE} but not found")
        return entries

    # ------------------------------------------------------------------------ clips

    def clips_of(self, entry: VideoEntry) -> Iterator[np.ndarray]:
        """The clips (T <= max_frames, H', W', 3) of one video; bad files are counted, never raised."""
        multiple = self.patch_multiple
        buffer: list[np.ndarray] = []
        start = 0  # resampled index of buffer[0]
        next_clip = 0  # start of the next clip to emit
        covered = 0  # end of the last emitted clip
        try:
            if entry.path.stat().st_size:
                check_complete(entry.path)
            for k, frame in enumerate(iter_frames(entry.path, self.fps)):
                if k == 0 and (frame.shape[0] < multiple or frame.shape[1] < multiple):
                    self._skip(
                        entry.path,
                        "too small",
                        f"{frame.shape[1]}x{frame.shape[0]} is smaller than one {multiple}x{multiple} patch",
                    )
                    return
                buffer.append(frame)
                if k + 1 == next_clip + self.max_frames:
                    yield round_to_grid(np.stack(buffer[next_clip - start :]), multiple)
                    covered = k + 1
                    next_clip += self.clip_stride
                    drop = min(len(buffer), next_clip - start)
                    del buffer[:drop]
                    start += drop
        except DecodeError as error:
            self._skip(entry.path, error.reason, str(error))
            return
        total = start + len(buffer)
        if total > covered and next_clip < total:  # a shorter last clip with frames not yet seen
            yield round_to_grid(np.stack(buffer[next_clip - start :]), multiple)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for entry in self.entries:
            for clip in self.clips_of(entry):
                yield clip, entry.caption

    def __len__(self) -> int:
        """The number of captioned videos found (each gives one or more clips)."""
        return len(self.entries)
