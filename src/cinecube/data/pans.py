"""The "pans" world: camera pans, tilts and zooms over real photos, with captions.

A sample is a virtual camera moving over one of the offline photos (OpenCV's examples,
scikit-image's bundled images; see `data/assets.py`): a window with the canvas's aspect ratio
slides or scales across the photo and every frame is resampled from it with sub-pixel
accuracy. Captions name the camera move and the scene ("a slow pan right across a
building"); the ground truth records the window per frame.

The photos are named by hand (`SCENE_PHOTOS`): only photos of things or places, no
calibration boards, logos or text pages. A few are held out (`EVAL_PHOTOS`) for the eval
split; the stereo twins of training photos (aero3, leuvenB, ...) are not held out, they are
near copies. The same table gives the fashion world its real backgrounds.

Conventions: "pan right" moves the camera right, so the picture content moves left; "tilt
up" moves it up; "zoom in" shrinks the window so the content grows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CinecubeError
from .assets import photo_paths

# photo file stem -> a short scene name usable after "across", "over", "on".
SCENE_PHOTOS: dict[str, str] = {
    "aero1": "a town seen from the air",
    "aero3": "a town seen from the air",
    "aloeL": "an aloe plant",
    "aloeR": "an aloe plant",
    "apple": "an apple",
    "baboon": "a baboon",
    "board": "a circuit board",
    "building": "a building",
    "butterfly": "a butterfly",
    "chicky_512": "a small dog",
    "fruits": "sliced fruit",
    "graf1": "a graffiti wall",
    "graf3": "a graffiti wall",
    "leuvenA": "an old street",
    "leuvenB": "an old street",
    "licenseplate_motion": "a car",
    "messi5": "a football pitch",
    "orange": "an orange",
    "rubberwhale1": "toys on a table",
    "rubberwhale2": "toys on a table",
    "starry_night": "a painting of a starry night",
    "astronaut": "an astronaut",
    "brick": "a brick wall",
    "chelsea": "a cat",
    "coins": "a pile of coins",
    "grass": "grass",
    "gravel": "gravel",
    "hubble_deep_field": "deep space",
    "moon": "the surface of the moon",
    "motorcycle_left": "a motorcycle",
    "motorcycle_right": "a motorcycle",
    # held out (EVAL_PHOTOS)
    "coffee": "a cup of coffee",
    "squirrel_cls": "a squirrel",
    "home": "a palace",
    "rocket": "a rocket on its launch pad",
    "smarties": "coloured sweets",
}
EVAL_PHOTOS: frozenset[str] = frozenset({"coffee", "squirrel_cls", "home", "rocket", "smarties"})
SPLITS = ("train", "eval")

# Camera moves: (dx, dy) of the window centre as a unit direction (y grows downwards), or zoom.
CAMERA_MOVES: dict[str, tuple[float, float]] = {
    "pan right": (1.0, 0.0),
    "pan left": (-1.0, 0.0),
    "tilt up": (0.0, -1.0),
    "tilt down": (0.0, 1.0),
    "pan up and to the right": (0.7071, -0.7071),
    "pan down and to the left": (-0.7071, 0.7071),
    "zoom in": (0.0, 0.0),
    "zoom out": (0.0, 0.0),
    "still": (0.0, 0.0),
}
MOVE_WEIGHTS = (0.17, 0.17, 0.12, 0.12, 0.06, 0.06, 0.12, 0.12, 0.06)
SPEEDS: dict[str, float] = {"slow": 0.6, "": 1.0, "quick": 1.6}

# Per-frame travel of a normal-speed pan, as a fraction of the window's size along the move,
# so that a 16-frame clip crosses about 45 % of a window.
PAN_SPEED = 0.45 / 15
# Per-frame log zoom of a normal-speed zoom: x1.35 over a 16-frame clip.
ZOOM_SPEED = np.log(1.35) / 15

DEFAULT_CANVASES: tuple[tuple[int, int], ...] = (
    (64, 64),
    (48, 80),
    (80, 48),
    (64, 96),
    (96, 64),
    (96, 96),
    (72, 128),
    (128, 128),
)
DEFAULT_FRAME_COUNTS: tuple[int, ...] = (1, 5, 9, 17, 25, 33)


@dataclass
class FootageSample:
    """One clip with its caption and what it shows: (T, H, W, 3) uint8, text, a JSON-able dict."""

    video: np.ndarray
    caption: str
    truth: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------


def scene_photos(split: str = "train") -> dict[str, Path]:
    """The named photos of a split that are installed: stem -> path, sorted by stem."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    found = {p.stem: p for p in photo_paths() if p.stem in SCENE_PHOTOS}
    wanted = {s: p for s, p in found.items() if (s in EVAL_PHOTOS) == (split == "eval")}
    if not wanted:
        raise CinecubeError(f"no {split} photos found among the offline photos: run `bash scripts/setup.sh`")
    return dict(sorted(wanted.items()))


@functools.lru_cache(maxsize=64)
def load_photo(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB (grey and alpha images converted), cached."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@functools.lru_cache(maxsize=256)
def _scaled_photo(path: Path, scale_key: int) -> np.ndarray:
    """The photo resized by scale_key / 1024 with area averaging (no aliasing), cached."""
    import cv2

    photo = load_photo(path)
    scale = scale_key / 1024
    if scale_key == 1024:
        return photo
    size = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def render_windows(path: Path, windows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample a photo through camera windows: windows (T, 4) as (x0, y0, w, h) in photo pixels
    (continuous, pixel-edge coordinates) -> frames (T, height, width, 3) uint8.

    The photo is first shrunk (area averaging) so the largest window is about the canvas size,
    then each frame is one bilinear affine warp: sub-pixel motion, no aliasing from the scale.
    """
    import cv2

    photo = load_photo(path)
    largest = float(np.max(windows[:, 2] / width))  # photo pixels per canvas pixel
    shrink = min(1.0, 1.0 / largest) if largest > 1 else 1.0
    key = max(1, min(1024, int(round(shrink * 1024))))
    small = _scaled_photo(path, key)
    fx, fy = small.shape[1] / photo.shape[1], small.shape[0] / photo.shape[0]
    frames = np.empty((len(windows), height, width, 3), dtype=np.uint8)
    for t, (x0, y0, w, h) in enumerate(windows):
        sx, sy = w * fx / width, h * fy / height  # source pixels per output pixel
        # Output pixel centre (j + 0.5) maps to source x0 + (j + 0.5) * sx, in pixel-centre terms - 0.5.
        matrix = np.array([[sx, 0.0, x0 * fx + 0.5 * sx - 0.5], [0.0, sy, y0 * fy + 0.5 * sy - 0.5]], dtype=np.float64)
        frames[t] = cv2.warpAffine(
            small, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
        )
    return frames


def random_crop(
    rng: np.random.Generator, path: Path, height: int, width: int, min_fraction: float = 0.35, max_fraction: float = 0.9
) -> np.ndarray:
    """A still crop of a photo with the canvas's aspect ratio, resized to (height, width, 3)."""
    photo = load_photo(path)
    ph, pw = photo.shape[:2]
    aspect = width / height
    fit_w = min(pw, ph * aspect)  # largest window that fits
    w = fit_w * rng.uniform(min_fraction, max_fraction)
    h = w / aspect
    x0, y0 = rng.uniform(0, pw - w), rng.uniform(0, ph - h)
    return render_windows(path, np.array([[x0, y0, w, h]]), height, width)[0]


# --------------------------------------------------------------------------------------------
# Camera paths and captions
# --------------------------------------------------------------------------------------------


def camera_windows(
    rng: np.random.Generator, photo_hw: tuple[int, int], height: int, width: int, frames: int, move: str, speed: float
) -> np.ndarray:
    """Windows (T, 4) as (x0, y0, w, h) in photo pixels for one camera move that stays inside the photo."""
    ph, pw = photo_hw
    aspect = width / height
    fit_w = min(pw, ph * aspect)  # the largest window that fits
    steps = max(frames - 1, 0)
    t = np.arange(frames, dtype=np.float64)
    if move in ("zoom in", "zoom out"):
        big = fit_w * rng.uniform(0.7, 0.95)  # the widest window of the zoom
        ratio = np.exp(-ZOOM_SPEED * speed * t) if move == "zoom in" else np.exp(ZOOM_SPEED * speed * (t - steps))
        w = big * ratio  # zoom in: big -> small
        h = w / aspect
        # Zoom towards a fixed point chosen so that every window stays inside.
        fx, fy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        cx = rng.uniform(big * fx, pw - big * (1 - fx))
        cy = rng.uniform(big / aspect * fy, ph - big / aspect * (1 - fy))
        return np.stack([cx - fx * w, cy - fy * h, w, h], axis=1)
    dx, dy = CAMERA_MOVES[move]
    # Leave room for the travel: the window shrinks until the move fits in the photo.
    w = fit_w * rng.uniform(0.45, 0.75)
    h = w / aspect
    travel_x = dx * PAN_SPEED * speed * w * steps
    travel_y = dy * PAN_SPEED * speed * h * steps
    shrink = min(1.0, (pw - 1) / (w + abs(travel_x)), (ph - 1) / (h + abs(travel_y)))
    w, h, travel_x, travel_y = w * shrink, h * shrink, travel_x * shrink, travel_y * shrink
    x_start = rng.uniform(max(0.0, -travel_x), pw - w - max(0.0, travel_x))
    y_start = rng.uniform(max(0.0, -travel_y), ph - h - max(0.0, travel_y))
    frac = t / steps if steps else t
    x0 = x_start + travel_x * frac
    y0 = y_start + travel_y * frac
    return np.stack([x0, y0, np.full(frames, w), np.full(frames, h)], axis=1)


_PAN_TEMPLATES = (
    "a {speed}{move} across {scene}",
    "the camera makes a {speed}{move} over {scene}",
    "{scene}, {speed}{move}",
    "{scene} seen in a {speed}{move}",
)
_ZOOM_TEMPLATES = (
    "the camera {speedly}zooms {inout} on {scene}",
    "a {speed}zoom {inout} on {scene}",
    "{scene}, {speed}zoom {inout}",
)
_STILL_TEMPLATES = ("a still shot of {scene}", "{scene}, static camera")
_IMAGE_TEMPLATES = ("a photo of {scene}", "{scene}")


def pan_caption(rng: np.random.Generator, move: str, speed_word: str, scene: str, frames: int) -> str:
    if frames == 1:
        text = _IMAGE_TEMPLATES[int(rng.integers(len(_IMAGE_TEMPLATES)))].format(scene=scene)
    elif move == "still":
        text = _STILL_TEMPLATES[int(rng.integers(len(_STILL_TEMPLATES)))].format(scene=scene)
    elif move.startswith("zoom"):
        template = _ZOOM_TEMPLATES[int(rng.integers(len(_ZOOM_TEMPLATES)))]
        inout = move.split()[1]
        speedly = {"slow": "slowly ", "quick": "quickly ", "": ""}[speed_word]
        speed = f"{speed_word} " if speed_word else ""
        text = template.format(speed=speed, speedly=speedly, inout=inout, scene=scene)
    else:
        template = _PAN_TEMPLATES[int(rng.integers(len(_PAN_TEMPLATES)))]
        speed = f"{speed_word} " if speed_word else ""
        text = template.format(speed=speed, move=move, scene=scene)
    return text


# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------


class SeededWorld:
    """What the footage worlds share with the shapes world's API: sample `index` is a pure
    function of (seed, index, the world's salt), on a canvas and duration drawn from its lists.
    Subclasses set `seed`, `canvases`, `frame_counts` and define `_make(rng, h, w, frames)`."""

    _salt: int

    def _rng(self, index: int) -> np.random.Generator:
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return np.random.default_rng([self.seed, index, self._salt])

    def sample(self, index: int) -> FootageSample:
        rng = self._rng(index)
        height, width = self.canvases[int(rng.integers(len(self.canvases)))]
        frames = self.frame_counts[int(rng.integers(len(self.frame_counts)))]
        return self._make(rng, height, width, frames)

    def sample_at(self, index: int, height: int, width: int, frames: int) -> FootageSample:
        return self._make(self._rng(index), height, width, frames)

    def __getitem__(self, index: int) -> FootageSample:
        return self.sample(index)


class PansWorld(SeededWorld):
    """Camera moves over real photos; sample `index` is a pure function of (seed, index).

    Same shape of API as `ShapesWorld`: `sample(index)` draws canvas and duration,
    `sample_at(index, height, width, frames)` fixes them; both return a `FootageSample`.
    """

    _salt = 11

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        canvases: tuple[tuple[int, int], ...] = DEFAULT_CANVASES,
        frame_counts: tuple[int, ...] = DEFAULT_FRAME_COUNTS,
    ):
        self.photos = scene_photos(split)
        self.split, self.seed = split, seed
        self.canvases, self.frame_counts = canvases, frame_counts

    def _make(self, rng: np.random.Generator, height: int, width: int, frames: int) -> FootageSample:
        if height < 8 or width < 8 or frames < 1:
            raise ValueError(f"canvas {height}x{width} x {frames} frames is too small (sides >= 8, frames >= 1)")
        stems = list(self.photos)
        stem = stems[int(rng.integers(len(stems)))]
        path = self.photos[stem]
        moves = tuple(CAMERA_MOVES)
        move = str(rng.choice(moves, p=np.asarray(MOVE_WEIGHTS) / sum(MOVE_WEIGHTS))) if frames > 1 else "still"
        speed_word = "" if move == "still" else str(rng.choice(tuple(SPEEDS), p=(0.3, 0.4, 0.3)))
        speed = SPEEDS[speed_word] * rng.uniform(0.9, 1.1)
        windows = camera_windows(rng, load_photo(path).shape[:2], height, width, frames, move, speed)
        video = render_windows(path, windows, height, width)
        caption = pan_caption(rng, move, speed_word, SCENE_PHOTOS[stem], frames)
        truth = {
            "world": "pans",
            "photo": stem,
            "scene": SCENE_PHOTOS[stem],
            "move": move,
            "speed": speed_word or "normal",
            "windows": np.round(windows, 2).tolist(),
        }
        return FootageSample(video, caption, truth)
