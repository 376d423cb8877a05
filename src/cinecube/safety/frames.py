"""Frame review: look at generated frames before they leave the pipeline.

`review_frames(frames)` samples the first and last frame, every k-th frame, and any frame that
changes sharply from the last one looked at (so a face flashed into a single frame between two
samples is still looked at), and passes each sample to pluggable reviewers. The default
`FaceReviewer` finds human faces with OpenCV's Haar cascades (frontal, and profile in both
directions). On a finding the configured action either blocks the video or blurs the faces:
every frame is then reviewed, each face box is held over its neighbouring frames and widened,
and the blurred video is reviewed again; if a face is still found it is blocked instead.

Tiny frames: the cascades' smallest window is 20 x 20 pixels, so a frame under ~48 pixels can
barely hold a detectable face. Frames whose short side is under `min_side` (192) are upscaled
(bicubic) before detection: a head-and-shoulders close-up (astronaut.png cropped) is then found
in frames down to 32 x 32 pixels, but not at 24 x 24, where no face is detectable.

Tuned on the 117 photos `cinecube.data.assets.photo_paths()` returns: faces found in all 7 that
show one (astronaut, messi5, basketball1/2, camera, left06, right06), one false finding among
the other 110 (a book cover in right.jpg), none in shapes-world videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CinecubeError

ACTIONS = ("block", "blur")
CHANGE_THRESHOLD = 12.0  # mean absolute difference (0..255) on a 32 x 32 thumbnail that triggers a look


@dataclass(frozen=True)
class Finding:
    frame_index: int
    reviewer: str
    label: str  # e.g. "face"
    box: tuple[int, int, int, int]  # (x, y, width, height) in frame pixels
    score: float  # reviewer's confidence, 0..1


@dataclass
class FrameReview:
    allowed: bool
    frames: np.ndarray  # (T, H, W, 3) uint8: the input, or a blurred copy
    findings: list[Finding]
    action_taken: str  # "none", "blocked", "blurred"
    reviewed: list[int] = field(default_factory=list)  # frame indices that were looked at


@runtime_checkable
class FrameReviewer(Protocol):
    name: str

    def review(self, frame: np.ndarray) -> list[Finding]:
        """One (H, W, 3) uint8 RGB frame -> findings (frame_index is filled in by the caller)."""
        ...


def _cv2():
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise CinecubeError(
            f"OpenCV {cv2.__version__} has no Haar cascades (removed in OpenCV 5): "
            "install opencv-python-headless>=4.8,<5"
        )
    return cv2


@cache
def _cascade(name: str):
    cv2 = _cv2()
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise CinecubeError(
            f"OpenCV's Haar cascade {name} is missing from {cv2.data.haarcascades}: "
            "reinstall opencv-python-headless>=4.8,<5"
        )
    return cascade


class FaceReviewer:
    """Human faces by Haar cascades: frontal (alt2) and profile, the profile also mirrored.

    The thresholds (neighbouring detections a face needs) are tuned on real photos so that every
    photo with a visible face is flagged and plain shapes and textures are not; see the module
    docstring for the figures.
    """

    name = "faces"

    def __init__(
        self,
        frontal_min_neighbors: int = 10,
        profile_min_neighbors: int = 8,
        min_face_fraction: float = 0.04,
        work_size: int = 640,
        min_side: int = 192,
    ):
        self.frontal_min_neighbors = frontal_min_neighbors
        self.profile_min_neighbors = profile_min_neighbors
        self.min_face_fraction = min_face_fraction  # of the short side
        self.work_size = work_size  # long side is shrunk to this (speed)
        self.min_side = min_side  # short side is enlarged to this (tiny frames)

    def review(self, frame: np.ndarray) -> list[Finding]:
        cv2 = _cv2()
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(self.work_size / max(h, w), 1.0)
        scale = max(scale, self.min_side / min(h, w))
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        gh, gw = gray.shape
        min_face = max(24, int(self.min_face_fraction * min(gh, gw)))
        findings = []
        passes = [
            ("haarcascade_frontalface_alt2.xml", self.frontal_min_neighbors, False),
            ("haarcascade_profileface.xml", self.profile_min_neighbors, False),
            ("haarcascade_profileface.xml", self.profile_min_neighbors, True),
        ]
        for cascade_name, neighbors, mirrored in passes:
            image = cv2.flip(gray, 1) if mirrored else gray
            boxes, counts = _cascade(cascade_name).detectMultiScale2(
                image, scaleFactor=1.1, minNeighbors=neighbors, minSize=(min_face, min_face)
            )
            for (x, y, bw, bh), n in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(counts).reshape(-1)):
                if mirrored:
                    x = gw - x - bw
                box = (int(x / scale), int(y / scale), int(round(bw / scale)), int(round(bh / scale)))
                findings.append(Finding(0, self.name, "face", box, float(n / (n + neighbors))))
        return findings


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def sample_indices(frames: np.ndarray, every_k: int) -> list[int]:
    """First, last, every k-th, and every frame that changes sharply from the last one sampled."""
    t = len(frames)
    chosen = {0, t - 1, *range(0, t, every_k)}
    last = _thumbnail(frames[0])
    for i in range(1, t):
        thumb = _thumbnail(frames[i])
        if i in chosen or np.abs(thumb - last).mean() > CHANGE_THRESHOLD:
            chosen.add(i)
            last = thumb
    return sorted(chosen)


def _review(frames: np.ndarray, indices: Sequence[int], reviewers: Sequence[FrameReviewer]) -> list[Finding]:
    findings = []
    for i in indices:
        for reviewer in reviewers:
            findings += [replace(f, frame_index=int(i), reviewer=reviewer.name) for f in reviewer.review(frames[i])]
    return findings


def blur_boxes(frame: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], grow: float = 0.25) -> np.ndarray:
    """Pixelate then blur each (x, y, w, h) box, grown by `grow` of its size on each side."""
    cv2 = _cv2()
    out = frame.copy()
    h, w = frame.shape[:2]
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, int(x - grow * bw)), max(0, int(y - grow * bh))
        x1, y1 = min(w, int(x + bw * (1 + grow)) + 1), min(h, int(y + bh * (1 + grow)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        patch = out[y0:y1, x0:x1]
        coarse = cv2.resize(patch, (4, 4), interpolation=cv2.INTER_AREA)
        patch = cv2.resize(coarse, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        k = max(3, (min(x1 - x0, y1 - y0) // 4) | 1)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (k, k), 0)
    return out


def review_frames(
    frames: np.ndarray,
    reviewers: Sequence[FrameReviewer] | None = None,
    every_k: int = 8,
    action: str = "block",
    hold: int = 2,
) -> FrameReview:
    """Review (T, H, W, 3) uint8 frames; block them or blur what was found.

    `hold`: in blur mode a box found in frame t is also blurred in frames t-hold .. t+hold, so a
    face the detector misses for a frame or two between detections stays covered.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1 or frames.dtype != np.uint8:
        raise CinecubeError(f"frame review needs uint8 frames shaped (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if action not in ACTIONS:
        raise CinecubeError(f"frame review action {action!r} is unknown; allowed: {', '.join(ACTIONS)}")
    if every_k < 1:
        raise CinecubeError(f"every_k must be >= 1, got {every_k}")
    reviewers = list(reviewers) if reviewers is not None else [FaceReviewer()]

    indices = sample_indices(frames, every_k)
    findings = _review(frames, indices, reviewers)
    if not findings:
        return FrameReview(True, frames, [], "none", indices)
    if action == "block":
        return FrameReview(False, frames, findings, "blocked", indices)

    # Blur: look at every frame, hold each box over its neighbours, blur, then check the result.
    rest = [i for i in range(len(frames)) if i not in set(indices)]
    findings += _review(frames, rest, reviewers)
    boxes_per_frame: list[list[tuple[int, int, int, int]]] = [[] for _ in frames]
    for f in findings:
        for t in range(max(0, f.frame_index - hold), min(len(frames), f.frame_index + hold + 1)):
            boxes_per_frame[t].append(f.box)
    blurred = np.stack([blur_boxes(frame, boxes) if boxes else frame for frame, boxes in zip(frames, boxes_per_frame)])
    remaining = _review(blurred, range(len(blurred)), reviewers)
    findings.sort(key=lambda f: f.frame_index)
    if remaining:
        # The blur did not hide everything: never let a video through half-reviewed.
        return FrameReview(False, frames, findings + remaining, "blocked", list(range(len(frames))))
    return FrameReview(True, blurred, findings, "blurred", list(range(len(frames))))
