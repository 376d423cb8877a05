"""The "shapes" world: procedural, seeded, captioned videos of simple moving shapes.

Each sample is a short clip of one to three coloured circles, squares or triangles moving
over a plain background, together with a caption and the ground-truth :class:`Scene`, so
that generated videos can later be checked object by object against what was asked for.

Coordinates: positions in a :class:`Scene` are fractions of the canvas (``x`` of the width,
``y`` of the height); :meth:`Scene.centers` turns them into pixel-index coordinates, where
the centre of pixel (row ``i``, column ``j``) is ``(x=j, y=i)``. That way the mean index of
an object's pixels can be compared directly with the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cinecube.data.vocab import BACKGROUND_COLORS, MOTION_VECTORS, MOTIONS, OBJECT_COLORS, SHAPES

# (height, width) canvases seen in training, and held-out ones (new sizes and aspect ratios).
TRAIN_CANVASES: tuple[tuple[int, int], ...] = (
    (32, 32),
    (48, 48),
    (64, 64),
    (32, 56),
    (56, 32),
    (24, 32),
    (32, 24),
    (48, 64),
    (64, 48),
    (40, 72),
    (72, 40),
)
EVAL_CANVASES: tuple[tuple[int, int], ...] = (
    (40, 40),
    (56, 56),
    (72, 72),
    (48, 80),
    (80, 48),
    (40, 56),
    (56, 40),
)
TRAIN_FRAME_COUNTS: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32)
EVAL_FRAME_COUNTS: tuple[int, ...] = (10, 14, 20)

MIN_SIDE = 8

SIZE_FRACTIONS: dict[str, float] = {"small": 0.22, "medium": 0.30, "large": 0.40}
SIZE_JITTER = 0.02
SPEED_FACTORS: dict[str, float] = {"slowly": 0.6, "": 1.0, "quickly": 1.5}
SPEED_WORD_PROBS = (0.25, 0.5, 0.25)  # slowly, normal, quickly
SPEED_JITTER = 0.1  # +-10 % on top of the speed word's factor

# Per-frame speed, as a fraction of the canvas extent along the motion, such that a normal
# object covers 40 % of the canvas over a 16-frame clip (15 frame-to-frame steps).
BASE_SPEED = 0.40 / 15

# An object colour must be at least this far (Euclidean RGB) from the background: this rules
# out white on white and white on beige, where the object would be hard to see and to read back.
MIN_CONTRAST = 100.0

# Keep shapes this many pixels away from the canvas border so anti-aliased edges stay inside.
EDGE_MARGIN = 0.5
# Required gap in pixels between the bounding boxes of two objects.
OBJECT_GAP = 1.0

_DIAGONALS = ("up-left", "up-right", "down-left", "down-right")


# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene: what it looks like, where it starts and how it moves."""

    color: str  # key of OBJECT_COLORS
    shape: str  # one of SHAPES
    motion: str  # one of MOTIONS
    size: float  # diameter / side as a fraction of the canvas's shorter side
    size_word: str  # "small" | "medium" | "large"
    speed_word: str  # "slowly" | "" | "quickly"   ("" = normal)
    x: float  # centre at frame 0, fraction of the width
    y: float  # centre at frame 0, fraction of the height
    vx: float  # velocity, fraction of the shorter side per frame (0 for still)
    vy: float


@dataclass(frozen=True)
class Scene:
    """A full clip description: canvas, duration, background and objects (drawn in order)."""

    height: int
    width: int
    frames: int
    background: str  # key of BACKGROUND_COLORS
    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (plain ints, floats, strings and lists)."""
        d = asdict(self)
        d["objects"] = [dict(o) for o in d["objects"]]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_dict`."""
        objects = tuple(ObjectSpec(**o) for o in d["objects"])
        return Scene(
            height=int(d["height"]),
            width=int(d["width"]),
            frames=int(d["frames"]),
            background=str(d["background"]),
            objects=objects,
        )

    def centers(self) -> np.ndarray:
        """Ground-truth centres, shape (T, n_objects, 2) as (x, y) in pixel-index coordinates.

        The centre is the area centroid of the shape (for triangles, one third of the
        height above the base), so it matches the mean position of the object's pixels.
        """
        out = np.zeros((self.frames, len(self.objects), 2), dtype=np.float64)
        for k, obj in enumerate(self.objects):
            out[:, k, 0], out[:, k, 1] = _trajectory(obj, self.height, self.width, self.frames)
        return out


@dataclass(frozen=True)
class WorldConfig:
    """What the world draws from: canvases, durations, object counts and caption style."""

    canvases: tuple[tuple[int, int], ...] = TRAIN_CANVASES
    frame_counts: tuple[int, ...] = TRAIN_FRAME_COUNTS
    max_objects: int = 3
    object_count_weights: tuple[float, ...] = (0.6, 0.25, 0.15)  # P(1), P(2), P(3) objects
    phrasing: str = "train"  # "train" or "heldout" caption templates
    detailed_caption_prob: float = 0.5


@dataclass
class WorldSample:
    """One clip with its caption and the scene it was rendered from."""

    video: np.ndarray  # (T, H, W, 3) uint8
    caption: str
    scene: Scene


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def _extents(shape: str, side_px: float) -> tuple[float, float, float]:
    """Half width, extent above and extent below the centre, in pixels.

    Triangles have base = height = side and are centred on their centroid, which lies a
    third of the height above the base.
    """
    half = side_px / 2.0
    if shape == "triangle":
        return half, 2.0 * side_px / 3.0, side_px / 3.0
    return half, half, half


def _bounds(shape: str, side_px: float, height: int, width: int) -> tuple[float, float, float, float]:
    """(x_lo, x_hi, y_lo, y_hi): the range of centre positions that keeps the shape inside."""
    half_w, up, down = _extents(shape, side_px)
    x_lo = -0.5 + EDGE_MARGIN + half_w
    x_hi = width - 0.5 - EDGE_MARGIN - half_w
    y_lo = -0.5 + EDGE_MARGIN + up
    y_hi = height - 0.5 - EDGE_MARGIN - down
    # A shape wider than the canvas (only on degenerate canvases) is pinned to the middle.
    if x_hi < x_lo:
        x_lo = x_hi = (width - 1) / 2.0
    if y_hi < y_lo:
        y_lo = y_hi = (height - 1) / 2.0 + (up - down) / 2.0
    return x_lo, x_hi, y_lo, y_hi


def _fold(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi], as a ball bouncing between two walls would be."""
    span = hi - lo
    if span <= 0:
        return np.full_like(u, lo)
    m = np.mod(u - lo, 2.0 * span)
    return lo + np.where(m <= span, m, 2.0 * span - m)


def _trajectory(obj: ObjectSpec, height: int, width: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) per frame in pixel-index coordinates, each of shape (T,)."""
    short = min(height, width)
    t = np.arange(frames, dtype=np.float64)
    x = obj.x * width - 0.5 + obj.vx * short * t
    y = obj.y * height - 0.5 + obj.vy * short * t
    if obj.motion == "bouncing":
        x_lo, x_hi, y_lo, y_hi = _bounds(obj.shape, obj.size * short, height, width)
        x, y = _fold(x, x_lo, x_hi), _fold(y, y_lo, y_hi)
    return x, y


def _boxes(scene: Scene) -> np.ndarray:
    """Bounding boxes per frame and object, shape (T, n, 4) as (x0, x1, y0, y1) in pixels."""
    centers = scene.centers()
    short = min(scene.height, scene.width)
    boxes = np.zeros(centers.shape[:2] + (4,))
    for k, obj in enumerate(scene.objects):
        half_w, up, down = _extents(obj.shape, obj.size * short)
        cx, cy = centers[:, k, 0], centers[:, k, 1]
        boxes[:, k] = np.stack([cx - half_w, cx + half_w, cy - up, cy + down], axis=-1)
    return boxes


def _overlap_frames(scene: Scene) -> np.ndarray:
    """Boolean (T,): whether any two objects' boxes (plus a small gap) touch in that frame."""
    boxes = _boxes(scene)
    hit = np.zeros(scene.frames, dtype=bool)
    n = len(scene.objects)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = boxes[:, i], boxes[:, j]
            sep_x = (a[:, 1] + OBJECT_GAP <= b[:, 0]) | (b[:, 1] + OBJECT_GAP <= a[:, 0])
            sep_y = (a[:, 3] + OBJECT_GAP <= b[:, 2]) | (b[:, 3] + OBJECT_GAP <= a[:, 2])
            hit |= ~(sep_x | sep_y)
    return hit


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def visible_colors(background: str) -> tuple[str, ...]:
    """Object colours that stand out clearly against ``background``."""
    bg = np.array(BACKGROUND_COLORS[background], dtype=np.float64)
    return tuple(name for name, rgb in OBJECT_COLORS.items() if np.linalg.norm(np.subtract(rgb, bg)) >= MIN_CONTRAST)


def _sample_object(rng: np.random.Generator, color: str, height: int, width: int, frames: int) -> ObjectSpec:
    """Draw shape, size, motion and a start position that keeps the object inside all clip long."""
    short = min(height, width)
    shape = str(rng.choice(SHAPES))
    size_word = str(rng.choice(tuple(SIZE_FRACTIONS)))
    size = float(SIZE_FRACTIONS[size_word] + rng.uniform(-SIZE_JITTER, SIZE_JITTER))
    # A single frame has no motion: images are always described (and stored) as still.
    motion = str(rng.choice(MOTIONS)) if frames > 1 else "still"
    speed_word = "" if motion == "still" else str(rng.choice(tuple(SPEED_FACTORS), p=SPEED_WORD_PROBS))

    x_lo, x_hi, y_lo, y_hi = _bounds(shape, size * short, height, width)
    steps = frames - 1

    if motion == "still":
        cx, cy, vx_px, vy_px = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi), 0.0, 0.0
    else:
        direction = rng.choice(_DIAGONALS) if motion == "bouncing" else motion
        dx, dy = MOTION_VECTORS[str(direction)]
        # Speed is a fraction of the canvas extent along the motion (diagonals see both sides).
        extent = abs(dx) * width + abs(dy) * height
        jitter = rng.uniform(1.0 - SPEED_JITTER, 1.0 + SPEED_JITTER)
        speed = BASE_SPEED * extent * SPEED_FACTORS[speed_word] * jitter
        if motion != "bouncing":
            # Long clips: slow the whole clip's speed scale down so that even the fastest
            # object fits; this keeps "slowly" < normal < "quickly" within every clip.
            fastest = BASE_SPEED * extent * SPEED_FACTORS["quickly"] * (1.0 + SPEED_JITTER)
            caps = [room / (abs(d) * steps) for d, room in ((dx, x_hi - x_lo), (dy, y_hi - y_lo)) if d]
            speed *= min(1.0, min(caps) / fastest)
        vx_px, vy_px = dx * speed, dy * speed
        if motion == "bouncing":
            cx, cy = _bouncing_start(rng, (x_lo, x_hi, y_lo, y_hi), vx_px, vy_px, steps)
        else:
            cx = _start_in_range(rng, x_lo, x_hi, vx_px * steps)
            cy = _start_in_range(rng, y_lo, y_hi, vy_px * steps)

    return ObjectSpec(
        color=color,
        shape=shape,
        motion=motion,
        size=size,
        size_word=size_word,
        speed_word=speed_word,
        x=float((cx + 0.5) / width),
        y=float((cy + 0.5) / height),
        vx=float(vx_px / short),
        vy=float(vy_px / short),
    )


def _start_in_range(rng: np.random.Generator, lo: float, hi: float, travel: float) -> float:
    """A start coordinate such that start and start + travel both lie in [lo, hi]."""
    a, b = (lo, hi - travel) if travel >= 0 else (lo - travel, hi)
    if b < a:  # cannot happen after the speed cap, but stay safe on degenerate canvases
        return (lo + hi) / 2.0
    return float(rng.uniform(a, b))


def _bouncing_start(
    rng: np.random.Generator, bounds: tuple[float, float, float, float], vx: float, vy: float, steps: int
) -> tuple[float, float]:
    """A start position from which a bouncing object hits a wall at least once, if it can."""
    x_lo, x_hi, y_lo, y_hi = bounds
    cx, cy = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
    for _ in range(8):
        end_x, end_y = cx + vx * steps, cy + vy * steps
        if not (x_lo <= end_x <= x_hi and y_lo <= end_y <= y_hi):
            break
        cx, cy = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
    return float(cx), float(cy)


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    frames: int,
    max_objects: int = 3,
    count_weights: Sequence[float] = (0.6, 0.25, 0.15),
) -> Scene:
    """Draw a random scene on a ``height`` x ``width`` canvas lasting ``frames`` frames.

    Objects get distinct colours that contrast with the background, never overlap at frame 0
    and, whenever a few rejection-sampling attempts can arrange it, never overlap at all.
    """
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"canvas {height}x{width} is too small: both sides must be >= {MIN_SIDE}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not 1 <= max_objects <= len(count_weights):
        raise ValueError(f"max_objects must be in 1..{len(count_weights)}, got {max_objects}")
    weights = np.asarray(count_weights[:max_objects], dtype=np.float64)
    n = int(rng.choice(np.arange(1, max_objects + 1), p=weights / weights.sum()))

    background = str(rng.choice(tuple(BACKGROUND_COLORS)))
    palette = visible_colors(background)
    colors = [str(c) for c in rng.choice(palette, size=n, replace=False)]

    while True:
        start_ok: Scene | None = None
        for _ in range(25):
            objects = tuple(_sample_object(rng, c, height, width, frames) for c in colors)
            scene = Scene(height, width, frames, background, objects)
            overlaps = _overlap_frames(scene)
            if not overlaps.any():
                return scene
            if not overlaps[0] and start_ok is None:
                start_ok = scene
        if start_ok is not None:
            return start_ok
        # Crowded canvas: drop the last object and try again (one object always fits).
        colors = colors[:-1]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _coverage(shape: str, cx: np.ndarray, cy: np.ndarray, side: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape over a clip, shape (T, H, W) float32.

    Squares use the exact box-filtered area (separable in x and y); circles and triangles use
    a signed distance d in pixels, mapped to coverage clip(0.5 - d, 0, 1), which is the
    area coverage of a straight edge crossing a pixel at its centre.
    """
    xs = np.arange(width, dtype=np.float32)[None, None, :]  # (1, 1, W)
    ys = np.arange(height, dtype=np.float32)[None, :, None]  # (1, H, 1)
    cx = cx.astype(np.float32)[:, None, None]  # (T, 1, 1)
    cy = cy.astype(np.float32)[:, None, None]
    half = np.float32(side / 2.0)
    if shape == "square":
        cov_x = np.clip(np.minimum(xs + 0.5, cx + half) - np.maximum(xs - 0.5, cx - half), 0.0, 1.0)
        cov_y = np.clip(np.minimum(ys + 0.5, cy + half) - np.maximum(ys - 0.5, cy - half), 0.0, 1.0)
        return cov_x * cov_y  # (T, H, W)
    if shape == "circle":
        dist = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        return np.clip(half + 0.5 - dist, 0.0, 1.0)
    if shape == "triangle":
        # Apex at the top, base = height = side, centroid at (cx, cy).
        apex_y = cy - np.float32(2.0 * side / 3.0)
        base_y = cy + np.float32(side / 3.0)
        # Outward normals of the slanted edges are (-+2, -1)/sqrt(5) for base = height.
        inv = np.float32(1.0 / np.sqrt(5.0))
        dx = xs - cx  # (T, 1, W)
        dy = ys - apex_y  # (T, H, 1)
        d_slant = (2.0 * np.abs(dx) - dy) * inv  # both slanted edges at once, by symmetry
        dist = np.maximum(d_slant, ys - base_y)
        return np.clip(0.5 - dist, 0.0, 1.0)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def object_coverage(scene: Scene) -> np.ndarray:
    """Per-object coverage before occlusion, shape (T, n_objects, H, W) float32 in [0, 1]."""
    centers = scene.centers()
    short = min(scene.height, scene.width)
    out = np.zeros((scene.frames, len(scene.objects), scene.height, scene.width), dtype=np.float32)
    for k, obj in enumerate(scene.objects):
        out[:, k] = _coverage(
            obj.shape, centers[:, k, 0], centers[:, k, 1], obj.size * short, scene.height, scene.width
        )
    return out


def render(scene: Scene) -> np.ndarray:
    """Draw the scene: (T, H, W, 3) uint8, objects composited in order over the background."""
    canvas = np.empty((scene.frames, scene.height, scene.width, 3), dtype=np.float32)
    canvas[:] = np.asarray(BACKGROUND_COLORS[scene.background], dtype=np.float32)
    centers = scene.centers()
    short = min(scene.height, scene.width)
    for k, obj in enumerate(scene.objects):
        alpha = _coverage(obj.shape, centers[:, k, 0], centers[:, k, 1], obj.size * short, scene.height, scene.width)[
            ..., None
        ]  # (T, H, W, 1)
        color = np.asarray(OBJECT_COLORS[obj.color], dtype=np.float32)
        # Exact at alpha 0 and 1, so untouched pixels keep the background colour exactly.
        canvas += alpha * (color - canvas)
    return np.rint(canvas).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Phrasebook:
    """Word choices and sentence patterns of one caption style.

    The "train" and "heldout" books use different verbs, connectives and background
    phrases so that no caption of one can ever equal a caption of the other; the attribute
    words (colours, shapes, directions) are shared so both stay understandable.
    """

    sizes: dict[str, tuple[str, ...]]
    speeds: dict[str, tuple[str, ...]]
    directions: dict[str, tuple[str, ...]]
    moving: tuple[str, ...]  # participles: "moving", "going"
    moves: tuple[str, ...]  # finite verbs: "moves", "goes"
    still_short: tuple[str, ...]  # appended after a comma in short captions
    still_participle: tuple[str, ...]
    still_finite: tuple[str, ...]
    bouncing: tuple[str, ...]
    bounces: tuple[str, ...]
    start: tuple[str, ...]  # "{region}" such as "the top left", "{prep}" its preposition ("in")
    bounce_start: tuple[str, ...]  # a bouncing object has no single direction to come "from"
    place: tuple[str, ...]  # where still objects and objects in images are
    background_short: tuple[str, ...]  # "{}" takes the background colour
    background_long: tuple[str, ...]
    join_short: tuple[str, ...]  # between the last two object phrases
    join_long: tuple[str, ...]
    image_short: tuple[str, ...]  # "{}" takes the object list
    image_long: tuple[str, ...]


_DIRECTIONS_TRAIN = {
    "left": ("left", "to the left", "towards the left"),
    "right": ("right", "to the right", "towards the right"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
    "up-left": ("up and to the left", "towards the top left", "diagonally up-left"),
    "up-right": ("up and to the right", "towards the top right", "diagonally up-right"),
    "down-left": ("down and to the left", "towards the bottom left", "diagonally down-left"),
    "down-right": ("down and to the right", "towards the bottom right", "diagonally down-right"),
}
_DIRECTIONS_HELDOUT = {
    "left": ("left", "leftwards", "toward the left"),
    "right": ("right", "rightwards", "toward the right"),
    "up": ("up", "upward", "toward the top"),
    "down": ("down", "downward", "toward the bottom"),
    "up-left": ("up and to the left", "toward the top left", "toward the upper left"),
    "up-right": ("up and to the right", "toward the top right", "toward the upper right"),
    "down-left": ("down and to the left", "toward the bottom left", "toward the lower left"),
    "down-right": ("down and to the right", "toward the bottom right", "toward the lower right"),
}

_TRAIN = _Phrasebook(
    sizes={"small": ("small",), "medium": ("medium", "medium-sized"), "large": ("large",)},
    speeds={"slowly": ("slowly",), "quickly": ("quickly", "fast")},
    directions=_DIRECTIONS_TRAIN,
    moving=("moving", "going"),
    moves=("moves", "goes", "slides"),
    still_short=("still", "not moving"),
    still_participle=("standing still", "staying still", "not moving"),
    still_finite=("stays still", "stands still", "stays put"),
    bouncing=("bouncing", "bouncing off the walls"),
    bounces=("bounces off the walls", "bounces back and forth"),
    start=("from {region}", "starting {prep} {region}"),
    bounce_start=("starting {prep} {region}",),
    place=("{prep} {region}",),
    background_short=(" on {}", ", on {}", " on a {} background", ", {} background"),
    background_long=(" on a {} background", ", on a {} background", " over a plain {} background"),
    join_short=(" and ",),
    join_long=(" and ", ", and "),
    image_short=("{}", "an image of {}"),
    image_long=("An image of {}", "A frame showing {}", "{}"),
)

_HELDOUT = _Phrasebook(
    sizes={"small": ("small", "little"), "medium": ("mid-sized",), "large": ("large", "big")},
    speeds={"slowly": ("slowly", "gently"), "quickly": ("rapidly", "swiftly")},
    directions=_DIRECTIONS_HELDOUT,
    moving=("travelling", "heading", "drifting"),
    moves=("glides", "travels", "heads", "drifts"),
    still_short=("motionless", "stationary", "at rest"),
    still_participle=("sitting motionless", "resting in place", "staying stationary"),
    still_finite=("sits motionless", "rests in place", "remains stationary"),
    bouncing=("ricocheting around", "rebounding off the edges"),
    bounces=("bounces around", "ricochets around the frame", "rebounds off the edges"),
    start=("beginning near {region}", "out of {region}"),
    bounce_start=("beginning near {region}",),
    place=("near {region}", "over {prep} {region}"),
    background_short=(" against {}", " against a {} backdrop", " (backdrop: {})"),
    background_long=(" against a {} backdrop", ", set against a {} backdrop", ", with a {} backdrop"),
    join_short=(" plus ", " alongside "),
    join_long=(" while ", "; meanwhile ", ", as "),
    image_short=("a picture of {}", "a photo of {}", "picture: {}"),
    image_long=("A picture showing {}", "A still photo of {}", "This picture shows {}"),
)

_PHRASEBOOKS: dict[str, _Phrasebook] = {"train": _TRAIN, "heldout": _HELDOUT}

# Probability that a caption names the background.
BACKGROUND_MENTION_PROB = 0.85


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _region(obj: ObjectSpec, rng: np.random.Generator) -> tuple[str, str]:
    """A rough place on the canvas at frame 0 and its preposition, e.g. ("the top left", "in")."""
    horiz = "left" if obj.x < 0.37 else "right" if obj.x > 0.63 else ""
    vert = "top" if obj.y < 0.37 else "bottom" if obj.y > 0.63 else ""
    if horiz and vert:
        return f"the {vert} {horiz}", "in"
    if horiz:
        return (f"the {horiz} side", "on") if rng.random() < 0.5 else (f"the {horiz} edge", "at")
    if vert:
        return f"the {vert}", "at"
    return _pick(rng, ("the middle", "the centre")), "in"


def _noun_phrase(obj: ObjectSpec, book: _Phrasebook, rng: np.random.Generator, detailed: bool) -> str:
    """ "red circle" or, detailed, "large red circle"."""
    if detailed:
        return f"{_pick(rng, book.sizes[obj.size_word])} {obj.color} {obj.shape}"
    return f"{obj.color} {obj.shape}"


def _short_object(obj: ObjectSpec, book: _Phrasebook, rng: np.random.Generator, image: bool, article: bool) -> str:
    """E.g. "red circle going right", "a blue square, still", "green triangle bouncing"."""
    noun = _noun_phrase(obj, book, rng, detailed=False)
    if article:
        noun = _with_article(noun)
    if image:
        return noun
    if obj.motion == "still":
        if rng.random() < 0.5:
            return f"{noun} {_pick(rng, book.still_participle)}"
        return f"{noun}, {_pick(rng, book.still_short)}"
    if obj.motion == "bouncing":
        return f"{noun} {_pick(rng, book.bouncing)}"
    return f"{noun} {_pick(rng, book.moving)} {_pick(rng, book.directions[obj.motion])}"


def _detailed_object(obj: ObjectSpec, book: _Phrasebook, rng: np.random.Generator, image: bool) -> str:
    """E.g. "a large red circle moves quickly from the left edge towards the right"."""
    noun = _with_article(_noun_phrase(obj, book, rng, detailed=True))
    region, prep = _region(obj, rng)
    if image:
        return f"{noun} {_pick(rng, book.place).format(region=region, prep=prep)}"
    if obj.motion == "still":
        verb = _pick(rng, book.still_finite)
        return f"{noun} {verb} {_pick(rng, book.place).format(region=region, prep=prep)}"
    speed = _pick(rng, book.speeds[obj.speed_word]) if obj.speed_word else ""
    if obj.motion == "bouncing":
        start = _pick(rng, book.bounce_start).format(region=region, prep=prep)
        verb = _pick(rng, book.bounces)
        parts = [noun, verb, speed, start] if rng.random() < 0.5 else [noun, speed, verb, start]
        return " ".join(p for p in parts if p)
    start = _pick(rng, book.start).format(region=region, prep=prep)
    verb = _pick(rng, book.moves)
    if rng.random() < 0.5:
        # After a start place a bare "left" reads badly ("from the right side left"), so use
        # the longer forms ("to the left", "towards the left").
        direction = _pick(rng, book.directions[obj.motion][1:])
        parts = [noun, verb, speed, start, direction]
    else:
        direction = _pick(rng, book.directions[obj.motion])
        parts = [noun, verb, direction, speed, start]
    return " ".join(p for p in parts if p)


def _join(phrases: list[str], last_joiner: str) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + last_joiner + phrases[-1]


def describe(scene: Scene, rng: np.random.Generator, phrasing: str = "train", detailed: bool | None = None) -> str:
    """A caption naming every object (colour, shape, motion) and usually the background.

    ``detailed`` adds size, speed and start position; ``None`` picks short or detailed at
    random. One-frame scenes are described as images, without any motion words.
    """
    if phrasing not in _PHRASEBOOKS:
        raise ValueError(f"unknown phrasing {phrasing!r}; expected one of {tuple(_PHRASEBOOKS)}")
    book = _PHRASEBOOKS[phrasing]
    if detailed is None:
        detailed = bool(rng.random() < 0.5)
    image = scene.frames == 1
    mention_background = rng.random() < BACKGROUND_MENTION_PROB

    if detailed:
        phrases = [_detailed_object(o, book, rng, image) for o in scene.objects]
        body = _join(phrases, _pick(rng, book.join_short if image else book.join_long))
        if image:
            body = _pick(rng, book.image_long).format(body)
        background = _pick(rng, book.background_long).format(scene.background) if mention_background else ""
        text = body + background + "."
        return text[0].upper() + text[1:]

    frame = _pick(rng, book.image_short) if image else "{}"
    # "an image of a red circle", never "an image of red circle".
    article = " of {}" in frame or bool(rng.random() < 0.5)
    phrases = [_short_object(o, book, rng, image, article) for o in scene.objects]
    body = frame.format(_join(phrases, _pick(rng, book.join_short)))
    background = _pick(rng, book.background_short).format(scene.background) if mention_background else ""
    return body + background


# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------


class ShapesWorld:
    """An endless, deterministic dataset: sample ``index`` is a pure function of (seed, index)."""

    def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 0) -> None:
        if config.phrasing not in _PHRASEBOOKS:
            raise ValueError(f"unknown phrasing {config.phrasing!r}; expected one of {tuple(_PHRASEBOOKS)}")
        if not config.canvases or not config.frame_counts:
            raise ValueError("WorldConfig needs at least one canvas and one frame count")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.config = config
        self.seed = seed

    def _rng(self, index: int) -> np.random.Generator:
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return np.random.default_rng([self.seed, index])

    def sample(self, index: int) -> WorldSample:
        """Sample ``index``, with canvas and frame count drawn from the config."""
        rng = self._rng(index)
        height, width = self.config.canvases[int(rng.integers(len(self.config.canvases)))]
        frames = self.config.frame_counts[int(rng.integers(len(self.config.frame_counts)))]
        return self._make(rng, height, width, frames)

    def sample_at(self, index: int, height: int, width: int, frames: int) -> WorldSample:
        """Sample ``index`` on a fixed canvas and duration."""
        return self._make(self._rng(index), height, width, frames)

    def __getitem__(self, index: int) -> WorldSample:
        return self.sample(index)

    def _make(self, rng: np.random.Generator, height: int, width: int, frames: int) -> WorldSample:
        cfg = self.config
        scene = sample_scene(rng, height, width, frames, cfg.max_objects, cfg.object_count_weights)
        detailed = bool(rng.random() < cfg.detailed_caption_prob)
        caption = describe(scene, rng, cfg.phrasing, detailed)
        return WorldSample(video=render(scene), caption=caption, scene=scene)
