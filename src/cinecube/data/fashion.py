"""The "fashion" world: real Fashion-MNIST objects moving over real photos or plain colours.

Each sample is one or two Fashion-MNIST items (a sneaker, a coat, a bag...), upscaled,
tinted and alpha-composited with a thin dark outline (so they stay visible on any
background), moving left/right/up/down/diagonally or standing still over a crop of a real
photo ("a brick wall", "deep space"; see `pans.SCENE_PHOTOS`) or a plain colour. Captions
name the class, the colour, the motion and the background in varied phrasings:

    "a red sneaker moving left over a brick wall"

The train split draws items from Fashion-MNIST's 60,000 training images and backgrounds
from the training photos; the eval split from its 10,000 test images and the held-out photos.
The ground truth (`FootageSample.truth`) holds every object's class, colour, motion and
centre per frame, in the shapes world's pixel-index coordinates (pixel (row i, column j)
has its centre at x=j, y=i).
"""

from __future__ import annotations

import functools
import gzip

import numpy as np

from ..errors import CinecubeError
from .assets import fashion_mnist_dir
from .pans import SCENE_PHOTOS, FootageSample, SeededWorld, random_crop, scene_photos
from .shapes import visible_colors
from .vocab import BACKGROUND_COLORS, MOTION_VECTORS, OBJECT_COLORS

CLASS_NAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# How a caption names one item of each class.
CLASS_NOUNS: dict[str, str] = {"trouser": "pair of trousers"}
SPLIT_FILES = {"train": "train", "eval": "t10k"}

MOTIONS: tuple[str, ...] = tuple(MOTION_VECTORS) + ("still",)
MOTION_WEIGHTS = np.array([3, 3, 2, 2, 1, 1, 1, 1, 2], dtype=np.float64)  # more straight moves
DEFAULT_CANVASES: tuple[tuple[int, int], ...] = (
    (48, 48),
    (64, 64),
    (48, 80),
    (80, 48),
    (64, 96),
    (96, 64),
    (96, 96),
    (72, 128),
)
DEFAULT_FRAME_COUNTS: tuple[int, ...] = (1, 5, 9, 17, 25, 33)
PHOTO_BACKGROUND_PROB = 0.7
SIZE_RANGE = (0.38, 0.62)  # item side as a fraction of the canvas's shorter side
# Per-frame speed as a fraction of the canvas extent along the motion: 40 % over 16 frames,
# as in the shapes world.
BASE_SPEED = 0.40 / 15
SPEEDS: dict[str, float] = {"slowly": 0.6, "": 1.0, "quickly": 1.5}

_DIRECTIONS = {
    "left": ("left", "to the left", "leftwards"),
    "right": ("right", "to the right", "rightwards"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
    "up-left": ("up and to the left", "diagonally up-left"),
    "up-right": ("up and to the right", "diagonally up-right"),
    "down-left": ("down and to the left", "diagonally down-left"),
    "down-right": ("down and to the right", "diagonally down-right"),
}
_MOVING = (
    "{obj} moving {dir}",
    "{obj} sliding {speed}{dir}",
    "{obj} drifting {speed}{dir}",
    "{obj} that moves {speed}{dir}",
)
_STILL = ("{obj} lying still", "{obj} that stays still", "{obj} resting in place")
_OVER_PHOTO = (" over {bg}", " in front of {bg}", " on top of {bg}", ", background: {bg}")
_OVER_COLOR = (" on a plain {bg} background", " over a {bg} backdrop", ", {bg} background")


@functools.lru_cache(maxsize=2)
def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of a split ("train": 60,000, "eval": 10,000).

    The idx format: a big-endian header (magic, counts, sizes) followed by raw bytes.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLIT_FILES)}")
    folder = fashion_mnist_dir()
    prefix = SPLIT_FILES[split]

    def read(name: str, header: int) -> np.ndarray:
        path = folder / name
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except (OSError, EOFError) as error:
            raise CinecubeError(f"cannot read Fashion-MNIST file '{path}': {error}") from None
        return np.frombuffer(data, dtype=np.uint8, offset=header)

    images = read(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read(f"{prefix}-labels-idx1-ubyte.gz", 8)
    if len(images) != len(labels):
        raise CinecubeError(f"Fashion-MNIST {split} files disagree: {len(images)} images, {len(labels)} labels")
    return images, labels


def _sprite(image: np.ndarray, side: int, tint: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 28x28 item upscaled to side x side: premultiplied rgb (s, s, 3), alpha (s, s), outline alpha (s+4, s+4).

    Alpha rises quickly with the item's intensity so the body is opaque; the colour keeps the
    item's own shading (folds, laces) as brightness, tinted when a tint is given.
    """
    import cv2

    gray = cv2.resize(image.astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_CUBIC)
    gray = np.clip(gray, 0.0, 1.0)
    alpha = np.clip(gray * 3.0, 0.0, 1.0)
    shade = 0.45 + 0.55 * gray
    color = tint / 255.0 if tint is not None else np.array([0.92, 0.92, 0.92], dtype=np.float32)
    rgb = (shade[..., None] * color[None, None, :] * 255.0).astype(np.float32) * alpha[..., None]
    padded = np.pad(alpha, 2)
    kernel = np.ones((3, 3), np.uint8)
    outline = cv2.dilate(padded, kernel, iterations=max(1, side // 24))
    return rgb, alpha, outline


def _warp(image: np.ndarray, dx: float, dy: float, height: int, width: int) -> np.ndarray:
    """Translate an image by (dx, dy) pixels onto a zero (height, width) canvas, bilinear."""
    import cv2

    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


class FashionWorld(SeededWorld):
    """Moving Fashion-MNIST items; sample `index` is a pure function of (split, seed, index).

    Same shape of API as `ShapesWorld`: `sample(index)` draws canvas and duration,
    `sample_at(index, height, width, frames)` fixes them; both return a `FootageSample`
    (video (T, H, W, 3) uint8, caption, truth dict).
    """

    _salt = 13

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        max_objects: int = 2,
        canvases: tuple[tuple[int, int], ...] = DEFAULT_CANVASES,
        frame_counts: tuple[int, ...] = DEFAULT_FRAME_COUNTS,
    ):
        if max_objects not in (1, 2):
            raise ValueError(f"max_objects must be 1 or 2, got {max_objects}")
        self.split, self.seed, self.max_objects = split, seed, max_objects
        self.images, self.labels = load_fashion_mnist(split)
        self.photos = scene_photos(split)
        self.canvases, self.frame_counts = canvases, frame_counts

    # ------------------------------------------------------------------------ drawing

    def _background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str, str]:
        """(H, W, 3) float32 background, its caption name, and "photo" or "color"."""
        if rng.random() < PHOTO_BACKGROUND_PROB:
            stems = list(self.photos)
            stem = stems[int(rng.integers(len(stems)))]
            crop = random_crop(rng, self.photos[stem], height, width)
            return crop.astype(np.float32), SCENE_PHOTOS[stem], "photo"
        name = str(rng.choice(tuple(BACKGROUND_COLORS)))
        canvas = np.empty((height, width, 3), dtype=np.float32)
        canvas[:] = BACKGROUND_COLORS[name]
        return canvas, name, "color"

    def _trajectory(
        self, rng: np.random.Generator, side: int, height: int, width: int, frames: int, motion: str, speed: float
    ) -> np.ndarray:
        """Centres (T, 2) as (x, y) pixel-index coordinates, keeping the item inside the canvas."""
        lo_x, hi_x = (side - 1) / 2.0, width - 1 - (side - 1) / 2.0
        lo_y, hi_y = (side - 1) / 2.0, height - 1 - (side - 1) / 2.0
        steps = frames - 1
        if motion == "still" or steps == 0:
            start = np.array([rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))])
            return np.repeat(start[None], frames, axis=0)
        dx, dy = MOTION_VECTORS[motion]
        extent = abs(dx) * width + abs(dy) * height
        v = BASE_SPEED * extent * speed
        # Slow down long clips so the whole path fits.
        caps = [room / (abs(d) * steps) for d, room in ((dx, hi_x - lo_x), (dy, hi_y - lo_y)) if d]
        v = min(v, max(0.0, min(caps)))
        travel = np.array([dx * v * steps, dy * v * steps])
        start = np.array(
            [
                rng.uniform(lo_x + max(0.0, -travel[0]), max(lo_x + max(0.0, -travel[0]), hi_x - max(0.0, travel[0]))),
                rng.uniform(lo_y + max(0.0, -travel[1]), max(lo_y + max(0.0, -travel[1]), hi_y - max(0.0, travel[1]))),
            ]
        )
        t = np.arange(frames, dtype=np.float64)[:, None]
        return start[None] + t * np.array([dx * v, dy * v])[None]

    def _make(self, rng: np.random.Generator, height: int, width: int, frames: int) -> FootageSample:
        if height < 16 or width < 16 or frames < 1:
            raise ValueError(f"canvas {height}x{width} x {frames} frames is too small (sides >= 16, frames >= 1)")
        background, bg_name, bg_kind = self._background(rng, height, width)
        count = 1 if self.max_objects == 1 or rng.random() < 0.65 else 2
        short = min(height, width)
        objects, phrases = [], []
        motions_used: set[str] = set()
        for _ in range(count):
            index = int(rng.integers(len(self.images)))
            label = CLASS_NAMES[int(self.labels[index])]
            # On a plain colour only colours that stand out from it (no white on white).
            palette = tuple(OBJECT_COLORS) if bg_kind == "photo" else visible_colors(bg_name)
            natural_ok = bg_kind == "photo" or "white" in palette
            color = str(rng.choice(palette)) if rng.random() < 0.75 or not natural_ok else "natural"
            scale = rng.uniform(*SIZE_RANGE) * (0.8 if count == 2 else 1.0)
            side = max(8, int(round(short * scale)))
            motion = "still"
            if frames > 1:
                # Two items never share a motion, so the caption tells them apart.
                choices = [m for m in MOTIONS if m not in motions_used]
                weights = np.array([MOTION_WEIGHTS[MOTIONS.index(m)] for m in choices])
                motion = str(rng.choice(choices, p=weights / weights.sum()))
            motions_used.add(motion)
            speed_word = "" if motion == "still" else str(rng.choice(tuple(SPEEDS), p=(0.25, 0.5, 0.25)))
            centers = self._trajectory(
                rng, side, height, width, frames, motion, SPEEDS[speed_word] * rng.uniform(0.9, 1.1)
            )
            objects.append(
                {
                    "label": label,
                    "class_index": CLASS_NAMES.index(label),
                    "image_index": index,
                    "color": color,
                    "motion": motion,
                    "speed": speed_word or "normal",
                    "size_px": side,
                    "centers": np.round(centers, 3).tolist(),
                }
            )
            phrases.append(self._phrase(rng, label, color, motion, speed_word, frames))

        video = np.empty((frames, height, width, 3), dtype=np.uint8)
        sprites = []
        for obj in objects:
            tint = None if obj["color"] == "natural" else np.asarray(OBJECT_COLORS[obj["color"]], np.float32)
            sprites.append(_sprite(self.images[obj["image_index"]], obj["size_px"], tint))
        for t in range(frames):
            canvas = background.copy()
            for obj, (rgb, alpha, outline) in zip(objects, sprites):
                cx, cy = obj["centers"][t]
                half = (obj["size_px"] - 1) / 2.0
                ring = _warp(outline, cx - half - 2, cy - half - 2, height, width)[..., None]
                canvas *= 1.0 - 0.85 * ring  # dark outline under the item
                a = _warp(alpha, cx - half, cy - half, height, width)[..., None]
                canvas = canvas * (1.0 - a) + _warp(rgb, cx - half, cy - half, height, width)
            video[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

        body = " and ".join(phrases)
        if bg_kind == "photo":
            tail = _OVER_PHOTO[int(rng.integers(len(_OVER_PHOTO)))].format(bg=bg_name)
        else:
            tail = _OVER_COLOR[int(rng.integers(len(_OVER_COLOR)))].format(bg=bg_name)
        caption = body + tail
        truth = {
            "world": "fashion",
            "split": self.split,
            "background": bg_name,
            "background_kind": bg_kind,
            "objects": objects,
        }
        return FootageSample(video, caption, truth)

    @staticmethod
    def _phrase(rng: np.random.Generator, label: str, color: str, motion: str, speed_word: str, frames: int) -> str:
        noun = CLASS_NOUNS.get(label, label)
        noun = noun if color == "natural" else f"{color} {noun}"
        obj = ("an " if noun[0] in "aeiou" else "a ") + noun
        if frames == 1:
            return obj
        if motion == "still":
            return _STILL[int(rng.integers(len(_STILL)))].format(obj=obj)
        template = _MOVING[int(rng.integers(len(_MOVING)))]
        direction = _DIRECTIONS[motion][int(rng.integers(len(_DIRECTIONS[motion])))]
        if "{speed}" not in template:
            return template.format(obj=obj, dir=direction)
        speed = f"{speed_word} " if speed_word else ""
        return template.format(obj=obj, dir=direction, speed=speed)
