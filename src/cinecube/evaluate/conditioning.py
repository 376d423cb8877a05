"""Prompting with images and videos: does the video keep what it was given, and join it cleanly?

    cinecube eval conditioning [--model M] [--n 30] [--steps 20] [--guidance 3] [--seed 1234]
                               [--modes animate,extend,loop,connect,edit] --out FOLDER [--force]

Held-out cases of the shapes world (`adherence.heldout_cases`: their seeds, phrasings and
canvases, at the nearest size the model allows). The input of every mode is the world's own
render of the case (`render`), and every figure is measured from the pixels with the measurer of
adherence.py (detection, tracking, colour and shape naming, direction from tracks):

run              given                                   checks (target)
animate          frame 0 of the render                   colour kept (95 %) and shape kept (80 %) to the
                                                         end, direction as prompted (70 %), seam 0|1
extend forward   the render's first part                 colour kept in the new frames (95 %), their
extend backward  the render's last part                  motion agrees with the input's (80 %), seam
loop             frame 0 of the render                   the last frame flows into the first
connect          the render's first and last 2 frames    both ends join, every object's track continuous
edit             the render, prompt recoloured, 0.6      colour follows the new prompt (80 %), every
                                                         object's track within 3 px of the input's

- **Seams** compare the mean absolute difference (0..255) of the two frames that meet with the
  median difference of consecutive frames of the clip (floored at `SEAM_FLOOR` grey levels, so
  a still clip is not divided by 0); a seam passes at most `SEAM_RATIO` times the median.
- **Identity**: the objects found in the given frames (colours are distinct within a scene) are
  looked up by colour in the part that was made; shape as `classify_shape` names it there.
- **Motion agreement** names the velocity of each object in the given part and in the made part
  with `direction_of` (8 directions or still, each velocity taken over the case's whole clip as
  adherence does), and asks for the same name.
- **Continuity** (connect): the object is found in every frame from A's last to B's first, and
  no step of its centroid there exceeds `JUMP_RATIO` times the median step of its track
  (floored at `STEP_FLOOR_PX`).
- **Edit distance**: per object, the median distance between the input's and the edited
  video's centroids over their common frames (nearest edited track); a case is its worst object.

Every rate comes with its 95 % Wilson interval and the number of cases scored. Every case is
also scored on the **ceiling**: the perfect answer as the model would give it, i.e. the world's
render through the model's autoencoder with the given frames put back where the pipeline puts
them. A model in that latent space cannot do better; for a pixel model the ceiling is the render
itself, so it must pass every check (the measurer's own test). Loop has no ceiling: the world's
motions never return to where they started.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cinecube.data.shapes import describe, render, visible_colors
from cinecube.errors import InvalidRequestError
from cinecube.evaluate.adherence import (
    SHEET_CASES,
    STILL_FRAC,
    DetectedObject,
    EvalCase,
    direction_of,
    format_interval,
    measure_video,
    save_contact_sheet,
    score_case,
    wilson_interval,
)
from cinecube.safety.guard import SafetyBlockedError

MODES: tuple[str, ...] = ("animate", "extend", "loop", "connect", "edit")
#: The runs of each mode (extend is measured both ways).
RUNS: dict[str, tuple[str, ...]] = {
    "animate": ("animate",),
    "extend": ("extend forward", "extend backward"),
    "loop": ("loop",),
    "connect": ("connect",),
    "edit": ("edit",),
}
#: The checks of each run with their targets (None: reported, no target set).
CHECKS: dict[str, dict[str, float | None]] = {
    "animate": {"color_kept": 0.95, "shape_kept": 0.80, "direction": 0.70, "seam": None},
    "extend forward": {"color_kept": 0.95, "motion_continues": 0.80, "seam": None},
    "extend backward": {"color_kept": 0.95, "motion_continues": 0.80, "seam": None},
    "loop": {"loop_closes": None},
    "connect": {"ends_join": None, "track_continuous": None},
    "edit": {"color_follows": 0.80, "track_kept": None},
}
CHECK_TEXT: dict[str, str] = {
    "color_kept": "every object of the given frames is found in the made ones with its colour "
    "(animate: in the last quarter of the clip; extend: in the new frames)",
    "shape_kept": "... and with its shape",
    "direction": "every object moves the way the prompt says (adherence's direction score)",
    "motion_continues": "every object of the given clip moves the same way (8 directions or still) in the new frames",
    "seam": "the two frames where the given frames meet the made ones differ at most 2x the clip's median "
    "frame-to-frame difference",
    "loop_closes": "the last frame differs from the first at most 2x the clip's median frame-to-frame difference",
    "ends_join": "both junctions (A's last frame to the transition, the transition to B's first) pass the seam test",
    "track_continuous": "every object of A is tracked through every frame from A's last to B's first, with no "
    "step over 2x the median step of its track",
    "color_follows": "every object has the colour the edited prompt asks for",
    "track_kept": "every object's track stays within 3 px (median over frames) of the input's",
}

SEAM_RATIO = 2.0  # a junction's difference may be at most this many times the median
SEAM_FLOOR = 0.5  # grey levels: the median difference of a still clip counts as at least this
JUMP_RATIO = 2.0  # a track's step may be at most this many times its median step ...
STEP_FLOOR_PX = 1.0  # ... which counts as at least this many pixels
EDIT_STRENGTH = 0.6
NEAR_PX = 3.0  # "within a few pixels": an edited track this close to the input's is kept
END_FRACTION = 0.25  # animate: the objects are read off the last quarter of the clip ...
END_MIN_FRAMES = 3  # ... and at least this many frames
CONNECT_END_FRAMES = 2  # frames of A (the render's start) and of B (its end)

REPORT_JSON = "conditioning.json"
REPORT_HTML = "index.html"
SHEET_DIR = "sheets"
REPORT_ENTRIES = frozenset({REPORT_JSON, REPORT_HTML, SHEET_DIR})
FORMAT = "cinecube-conditioning/1"


def parse_modes(text: str) -> tuple[str, ...]:
    """The modes named in a comma-separated list, in MODES order; argparse's one-line error for
    an unknown or repeated one."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode {', '.join(map(repr, unknown)) or repr(text)}; "
            f"use a comma-separated list of {','.join(MODES)}"
        )
    if len(set(modes)) != len(modes):
        raise argparse.ArgumentTypeError(f"{text!r} names a mode twice")
    return tuple(m for m in MODES if m in modes)  # always in the same order


def is_report_folder(path: Path) -> bool:
    """Whether a folder holds nothing but a report this module wrote (so --force may replace it)."""
    return (path / REPORT_JSON).is_file() and all(e.name in REPORT_ENTRIES for e in Path(path).iterdir())


# --------------------------------------------------------------------------------------------
# Measurements (each on frames alone: unit-tested on videos whose answer is known)
# --------------------------------------------------------------------------------------------


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames, in grey levels (0..255)."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def frame_differences(video: np.ndarray) -> np.ndarray:
    """(T-1,) differences of consecutive frames."""
    v = np.asarray(video).astype(np.int16)
    return np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3)) if len(v) > 1 else np.zeros(0)


def jump_ratio(video: np.ndarray, before: int, after: int) -> float | None:
    """The difference of frames `before` and `after` over the clip's median consecutive
    difference (floored at SEAM_FLOOR); None for a clip of one frame."""
    diffs = frame_differences(video)
    if not len(diffs):
        return None
    return frame_difference(video[before], video[after]) / max(float(np.median(diffs)), SEAM_FLOOR)


def _by_color(objects: Sequence[DetectedObject]) -> dict[str, DetectedObject]:
    """The largest object of each colour (the choice adherence's scoring makes)."""
    out: dict[str, DetectedObject] = {}
    for o in sorted(objects, key=lambda o: o.area):
        out[o.color] = o
    return out


def identity_kept(given: Sequence[DetectedObject], made: Sequence[DetectedObject]) -> tuple[bool | None, bool | None]:
    """(colour kept, shape kept): every given object has an object of its colour among the
    made ones (and of its shape). None, None when nothing was found in the given frames."""
    if not given:
        return None, None
    found = _by_color(made)
    color = all(o.color in found for o in given)
    shape = all(o.color in found and found[o.color].shape == o.shape for o in given)
    return color, shape


def motion_name(obj: DetectedObject, frames: int, clip_frames: int, short: int) -> str:
    """The direction of an object measured over `frames` frames, named as adherence names a
    clip of `clip_frames` frames: its velocity extrapolated over the clip, or still."""
    velocity = np.asarray(obj.displacement) / max(frames - 1, 1)
    return direction_of(velocity * max(clip_frames - 1, 1), STILL_FRAC * short)


def motion_agrees(
    given: Sequence[DetectedObject],
    given_frames: int,
    made: Sequence[DetectedObject],
    made_frames: int,
    clip_frames: int,
    short: int,
) -> tuple[bool | None, list[list[str | None]]]:
    """Whether every given object moves the same way in the made part; also the
    [given, made] direction names per object (None where the object was not found)."""
    if not given:
        return None, []
    found = _by_color(made)
    names = []
    for o in given:
        m = found.get(o.color)
        names.append(
            [
                motion_name(o, given_frames, clip_frames, short),
                None if m is None else motion_name(m, made_frames, clip_frames, short),
            ]
        )
    return all(a == b for a, b in names), names


def track_steps(obj: DetectedObject, first: int, last: int) -> tuple[bool, float | None, float | None]:
    """(continuous, largest step in first..last, median step of the whole track) of one track.

    Continuous: seen in every frame from `first` to `last`, and no step there over JUMP_RATIO
    times the track's median step between consecutive frames (at least STEP_FLOOR_PX)."""
    at = {t: np.array([x, y]) for t, x, y in obj.track}
    steps = [float(np.linalg.norm(at[t + 1] - at[t])) for t in sorted(at) if t + 1 in at]
    median = float(np.median(steps)) if steps else None
    if any(t not in at for t in range(first, last + 1)):
        return False, None, median
    span = [float(np.linalg.norm(at[t + 1] - at[t])) for t in range(first, last)]
    largest = max(span, default=0.0)
    return largest <= JUMP_RATIO * max(median or 0.0, STEP_FLOOR_PX), largest, median


def track_distance(given: DetectedObject, made: Sequence[DetectedObject]) -> float | None:
    """Median distance (px) between a given track and the nearest made track over their common
    frames; None when no made track shares a frame with it."""
    at = {t: np.array([x, y]) for t, x, y in given.track}
    best = None
    for m in made:
        d = [float(np.linalg.norm(np.array([x, y]) - at[t])) for t, x, y in m.track if t in at]
        if d and (best is None or float(np.median(d)) < best):
            best = float(np.median(d))
    return best


def layout_distance(given: Sequence[DetectedObject], made: Sequence[DetectedObject]) -> tuple[bool, float | None]:
    """(scored, distance): the worst given object's track distance; distance None when an
    object has no made track at all (lost), scored False when nothing was given."""
    if not given:
        return False, None
    distances = [track_distance(o, made) for o in given]
    return True, None if any(d is None for d in distances) else max(distances)


def end_frames(frames: int) -> int:
    """How many frames at the end of an animated clip its objects are read from."""
    return min(frames, max(END_MIN_FRAMES, math.ceil(END_FRACTION * frames)))


def _short(video: np.ndarray) -> int:
    return int(min(video.shape[1:3]))


def _objects(objects: Sequence[DetectedObject]) -> list[dict[str, Any]]:
    return [o.to_dict() for o in objects]


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def score_animate(case: EvalCase, video: np.ndarray) -> dict[str, Any]:
    """Frame 0 is the given image: its objects keep colour and shape to the end (last quarter),
    move as the case's prompt says, and frame 1 follows frame 0 without a jump."""
    given = measure_video(video[:1])
    end = measure_video(video[-end_frames(len(video)) :])
    detected = measure_video(video)
    color, shape = identity_kept(given, end)
    ratio = jump_ratio(video, 0, 1)
    return {
        "checks": {
            "color_kept": color,
            "shape_kept": shape,
            "direction": score_case(case, detected)["direction"],
            "seam": None if ratio is None else ratio <= SEAM_RATIO,
        },
        "measures": {"seam_ratio": _r(ratio)},
        "given": _objects(given),
        "end": _objects(end),
        "detected": _objects(detected),
    }


def score_extend(video: np.ndarray, given_frames: int, direction: str) -> dict[str, Any]:
    """The given clip is the first (forward) or last (backward) `given_frames` frames: its
    objects are in the new frames with their colours, move on the same way, and the junction
    has no jump."""
    t = len(video)
    if direction == "forward":
        given_part, made_part, junction = video[:given_frames], video[given_frames:], given_frames
    else:
        made_part, given_part, junction = video[: t - given_frames], video[t - given_frames :], t - given_frames
    given, made = measure_video(given_part), measure_video(made_part)
    color, _ = identity_kept(given, made)
    agrees, names = motion_agrees(given, len(given_part), made, len(made_part), t, _short(video))
    ratio = jump_ratio(video, junction - 1, junction)
    return {
        "checks": {
            "color_kept": color,
            "motion_continues": agrees,
            "seam": None if ratio is None else ratio <= SEAM_RATIO,
        },
        "measures": {"seam_ratio": _r(ratio), "junction": junction},
        "directions": names,
        "given": _objects(given),
        "detected": _objects(made),
    }


def score_loop(video: np.ndarray) -> dict[str, Any]:
    """The last frame flows into the first: their difference within SEAM_RATIO x the median."""
    ratio = jump_ratio(video, len(video) - 1, 0)
    diffs = frame_differences(video)
    return {
        "checks": {"loop_closes": None if ratio is None else ratio <= SEAM_RATIO},
        "measures": {
            "loop_ratio": _r(ratio),
            "start_seam_ratio": _r(jump_ratio(video, 0, 1)),
            "median_difference": _r(float(np.median(diffs)) if len(diffs) else None),
        },
        "detected": _objects(measure_video(video)),
    }


def score_connect(video: np.ndarray, ends: int) -> dict[str, Any]:
    """A is the first `ends` frames, B the last `ends`: both junctions have no jump, and every
    object of A is tracked without a jump from A's last frame to B's first."""
    t = len(video)
    given = measure_video(video[:ends])
    detected = measure_video(video)
    ratios = [jump_ratio(video, ends - 1, ends), jump_ratio(video, t - ends - 1, t - ends)]
    found = _by_color(detected)
    tracks = []
    for o in given:
        m = found.get(o.color)
        tracks.append((False, None, None) if m is None else track_steps(m, ends - 1, t - ends))
    return {
        "checks": {
            "ends_join": None if None in ratios else all(r <= SEAM_RATIO for r in ratios),
            "track_continuous": all(ok for ok, _, _ in tracks) if given else None,
        },
        "measures": {
            "seam_ratio": _r(max(ratios) if None not in ratios else None),
            "junction_ratios": [_r(r) for r in ratios],
            "largest_step_px": [_r(s, 2) for _, s, _ in tracks],
            "median_step_px": [_r(m, 2) for _, _, m in tracks],
        },
        "given": _objects(given),
        "detected": _objects(detected),
    }


def score_edit(case: EvalCase, source: np.ndarray, video: np.ndarray) -> dict[str, Any]:
    """`case` holds the recoloured scene: every colour it asks for is there, and every object of
    the source video keeps its track (worst object's median distance within NEAR_PX)."""
    given, detected = measure_video(source), measure_video(video)
    scored, distance = layout_distance(given, detected)
    return {
        "checks": {
            "color_follows": score_case(case, detected)["color"],
            "track_kept": (distance is not None and distance <= NEAR_PX) if scored else None,
        },
        "measures": {"track_distance_px": _r(distance, 2)},
        "given": _objects(given),
        "detected": _objects(detected),
    }


# --------------------------------------------------------------------------------------------
# Cases: what each run is given, what it makes, and the ceiling
# --------------------------------------------------------------------------------------------


def recolor(case: EvalCase) -> tuple[EvalCase, dict[str, str]]:
    """The case with every object in another colour (visible on its background, unused in the
    scene; drawn from the case's seed) and its prompt with the colour words changed."""
    scene = case.scene
    used = {o.color for o in scene.objects}
    rng = np.random.default_rng([case.seed, 6])
    free = [str(c) for c in rng.permutation([c for c in visible_colors(scene.background) if c not in used])]
    mapping = {o.color: free[i] for i, o in enumerate(scene.objects) if i < len(free)}
    objects = tuple(dataclasses.replace(o, color=mapping.get(o.color, o.color)) for o in scene.objects)
    recoloured = dataclasses.replace(scene, objects=objects)
    prompt = recolor_prompt(case.prompt, mapping)
    if any(not re.search(rf"\b{new}\b", prompt, re.IGNORECASE) for new in mapping.values()):
        prompt = describe(recoloured, rng, phrasing="heldout")  # a prompt that names no colour (none do)
    return EvalCase(prompt, recoloured, case.seed), mapping


def recolor_prompt(prompt: str, mapping: dict[str, str]) -> str:
    """Colour words replaced by `mapping` (whole words, capitals kept; "dark blue" and "dark
    green" name backgrounds and stay)."""
    if not mapping:
        return prompt
    pattern = re.compile(r"(?<!dark )\b(" + "|".join(map(re.escape, mapping)) + r")\b", re.IGNORECASE)

    def swap(match: re.Match) -> str:
        new = mapping[match.group(1).lower()]
        return new.capitalize() if match.group(1)[0].isupper() else new

    return pattern.sub(swap, prompt)


@dataclass(frozen=True)
class Plan:
    """One case of one run: the case at the size made (for edit: recoloured, with the edited
    prompt), what the pipeline is given, and where the pipeline puts given frames back."""

    run: str
    case: EvalCase
    source: np.ndarray  # the world's render of the case at that size
    inputs: tuple[np.ndarray, ...]
    pasted: tuple[tuple[int, np.ndarray], ...]  # (output frame, frames) the output holds as given
    colors: dict[str, str] | None = None  # edit: old -> new colour

    @property
    def frames(self) -> int:
        return self.case.frames


def plan_case(run: str, case: EvalCase, frames: int, height: int, width: int, temporal_factor: int) -> Plan:
    """The inputs of `run` for `case` made at (frames, height, width), rendered by the world."""
    from cinecube.conditioning import layout_length

    scene = dataclasses.replace(case.scene, frames=frames, height=height, width=width)
    sized = EvalCase(case.prompt, scene, case.seed)
    source = render(scene)
    if run == "animate" or run == "loop":
        image = source[:1]
        return Plan(run, sized, source, (image,), ((0, image),))
    if run.startswith("extend"):
        given = min(layout_length(frames // 2 + 1, temporal_factor), frames - 1)
        if run == "extend forward":
            clip = source[:given]
            return Plan(run, sized, source, (clip,), ((0, clip),))
        clip = source[frames - given :]
        return Plan(run, sized, source, (clip,), ((frames - given, clip),))
    if run == "connect":
        ends = CONNECT_END_FRAMES
        a, b = source[:ends], source[frames - ends :]
        return Plan(run, sized, source, (a, b), ((0, a), (frames - ends, b)))
    if run == "edit":
        edited, mapping = recolor(sized)
        return Plan(run, edited, source, (source,), (), mapping)
    raise ValueError(f"unknown run {run!r}")


def make(plan: Plan, pipe: Any, **options: Any) -> np.ndarray:
    """The pipeline's answer to a plan: uint8 (T, H, W, 3) of plan.frames frames."""
    prompt, run = plan.case.prompt, plan.run
    if run == "animate":
        made = pipe.animate(prompt, plan.inputs[0], frames=plan.frames, **options)
    elif run.startswith("extend"):
        clip = plan.inputs[0]
        made = pipe.extend(prompt, clip, frames=plan.frames - len(clip), direction=run.split()[1], **options)
    elif run == "loop":
        made = pipe.loop(prompt, frames=plan.frames, image=plan.inputs[0], **options)
    elif run == "connect":
        a, b = plan.inputs
        made = pipe.connect(prompt, a, b, frames=plan.frames - len(a) - len(b), **options)
    else:
        made = pipe.edit(prompt, plan.inputs[0], strength=EDIT_STRENGTH, **options)
    return made.frames


def ceiling(plan: Plan, autoencoder: Any) -> np.ndarray | None:
    """The perfect answer as the model would give it: the world's render of the plan's scene
    through the autoencoder, with the given frames put back. None for loop (no perfect answer)."""
    if plan.run == "loop":
        return None
    from cinecube.evaluate.adherence import autoencoder_round_trip

    scene = plan.case.scene
    video = autoencoder_round_trip(autoencoder, scene, scene.frames, scene.height, scene.width).copy()
    for at, frames in plan.pasted:
        video[at : at + len(frames)] = frames
    return video


def score(plan: Plan, video: np.ndarray) -> dict[str, Any]:
    run = plan.run
    if run == "animate":
        return score_animate(plan.case, video)
    if run.startswith("extend"):
        return score_extend(video, len(plan.inputs[0]), run.split()[1])
    if run == "loop":
        return score_loop(video)
    if run == "connect":
        return score_connect(video, len(plan.inputs[0]))
    return score_edit(plan.case, plan.source, video)


def sheet_frames(plan: Plan, video: np.ndarray) -> np.ndarray:
    """The 4 frames of a case the contact sheet shows: those around its seams."""
    t = len(video)
    if plan.run == "edit":
        return np.stack([plan.source[0], video[0], plan.source[-1], video[-1]])
    if plan.run == "extend forward":
        j = len(plan.inputs[0])
        picks = [0, j - 1, j, t - 1]
    elif plan.run == "extend backward":
        j = t - len(plan.inputs[0])
        picks = [0, j - 1, j, t - 1]
    elif plan.run == "loop":
        picks = [t - 2, t - 1, 0, 1]
    elif plan.run == "connect":
        e = len(plan.inputs[0])
        picks = [e - 1, e, t - e - 1, t - e]
    else:
        picks = [0, 1, t // 2, t - 1]
    return video[picks]


SHEET_SHOWS = {
    "animate": "frames 0 (the image), 1, the middle one and the last",
    "extend forward": "frame 0, the input's last frame, the first new frame, the last frame",
    "extend backward": "frame 0, the last new frame, the input's first frame, the last frame",
    "loop": "the last two frames, then frames 0 (the image) and 1: the loop's seam is in the middle",
    "connect": "A's last frame, the transition's first, the transition's last, B's first",
    "edit": "input frame 0, edited frame 0, input last frame, edited last frame",
}
#: The checks shown in the sheet's labels (C, S, D; N is never used here).
_SHEET_LETTERS = {
    "color": ("color_kept", "color_follows"),
    "shape": ("shape_kept",),
    "direction": ("direction", "motion_continues"),
}


def _sheet_record(record: dict[str, Any]) -> dict[str, Any]:
    checks = record["checks"]
    results = {a: next((checks[c] for c in names if c in checks), None) for a, names in _SHEET_LETTERS.items()}
    return {"index": record["index"], "prompt": record["prompt"], "results": {**results, "count": None}}


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval of a median: the order statistics whose ranks a binomial(n, 1/2)
    puts outside with at most (1 - confidence) / 2 on each side (the whole range for tiny n)."""
    from scipy.stats import binom

    s = sorted(values)
    n = len(s)
    if not n:
        return None
    j = int(binom.ppf((1 - confidence) / 2, n, 0.5))  # 1-based rank of the lower bound
    return float(s[max(j - 1, 0)]), float(s[min(n - j, n - 1)])


def summarise(run: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates with their Wilson intervals, targets and ceilings; medians of the measures."""
    checks = {}
    for name, target in CHECKS[run].items():
        passed = sum(r["checks"][name] is True for r in records)
        scored = sum(r["checks"][name] is not None for r in records)
        rate = passed / scored if scored else None
        top = [r["ceiling"]["checks"][name] for r in records if r.get("ceiling")]
        top_scored = sum(v is not None for v in top)
        checks[name] = {
            "passed": passed,
            "scored": scored,
            "rate": rate,
            "interval_95": wilson_interval(passed, scored),
            "target": target,
            "met": None if target is None or rate is None else rate >= target,
            "ceiling": {
                "passed": sum(v is True for v in top),
                "scored": top_scored,
                "rate": sum(v is True for v in top) / top_scored if top_scored else None,
            },
        }
    measures = {}
    for key in ("seam_ratio", "loop_ratio", "start_seam_ratio", "median_difference", "track_distance_px"):
        values = [r["measures"][key] for r in records if r["measures"].get(key) is not None]
        if not any(key in r["measures"] for r in records):
            continue
        top = [r["ceiling"]["measures"][key] for r in records if r.get("ceiling")]
        top = [v for v in top if v is not None]
        measures[key] = {
            "median": float(np.median(values)) if values else None,
            "interval_95": median_interval(values),
            "cases": len(values),
            "ceiling_median": float(np.median(top)) if top else None,
        }
    refused = sum("refused" in r for r in records)
    return {"cases": len(records), "refused": refused, "checks": checks, "measures": measures}


def evaluate_conditioning(
    pipe: Any,
    cases: Sequence[EvalCase],
    modes: Sequence[str] = MODES,
    *,
    steps: int = 20,
    guidance: float = 3.0,
    sheets_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Make every case of every run of `modes`, score it and its ceiling; contact sheets of the
    first cases of each run under `sheets_dir/<run>/`. Returns {summary, records, seconds}."""
    tf = pipe.autoencoder.config.temporal_factor
    summary, records, seconds = {}, {}, {}
    for run in (r for m in modes for r in RUNS[m]):
        started, making = time.perf_counter(), 0.0
        run_records, sheet, sheet_records = [], [], []
        for i, case in enumerate(tqdm(cases, desc=run, disable=not progress)):
            frames, height, width = pipe.nearest_allowed(case.frames, case.height, case.width)
            if run == "loop":
                frames = min(frames, pipe.config.max_frames - 1)
            plan = plan_case(run, case, frames, height, width, tf)
            made_at = time.perf_counter()
            try:
                video = make(plan, pipe, steps=steps, guidance=guidance, seed=case.seed, progress=False)
            except (InvalidRequestError, SafetyBlockedError) as error:
                # A request this model refuses (e.g. a prompt longer than its text encoder takes):
                # the case counts, unscored, with the reason.
                run_records.append(_refused(i, plan, case, str(error)))
                if log is not None:
                    log(f"{run} case {i} refused: {error}")
                continue
            making += time.perf_counter() - made_at
            if video.shape[:3] != (plan.frames, height, width):
                raise RuntimeError(f"{run} made {video.shape[:3]}, expected {(plan.frames, height, width)}")
            perfect = ceiling(plan, pipe.autoencoder)
            record = {
                "index": i,
                "prompt": plan.case.prompt,
                "seed": case.seed,
                "canvas": [case.frames, case.height, case.width],
                "made": [plan.frames, height, width],
                "given_frames": [[at, len(f)] for at, f in plan.pasted] if plan.pasted else None,
                "expected": {
                    "background": plan.case.scene.background,
                    "objects": [
                        {"color": o.color, "shape": o.shape, "motion": o.motion} for o in plan.case.scene.objects
                    ],
                },
                **({"recolored": plan.colors} if plan.colors is not None else {}),
                **score(plan, video),
                "ceiling": None if perfect is None else _ceiling_part(score(plan, perfect)),
            }
            run_records.append(record)
            if len(sheet) < SHEET_CASES:
                sheet.append(sheet_frames(plan, video))
                sheet_records.append(_sheet_record(record))
        records[run] = run_records
        summary[run] = summarise(run, run_records)
        made = sum("refused" not in r for r in run_records)
        seconds[run] = {
            "total": round(time.perf_counter() - started, 2),
            "per_video": round(making / made, 3) if made else None,
        }
        if sheets_dir is not None and sheet:
            save_contact_sheet(sheet, sheet_records, str(Path(sheets_dir) / slug(run)))
        if log is not None:
            log(f"{run}: {len(cases)} cases in {seconds[run]['total']:.0f} s")
    return {"summary": summary, "records": records, "seconds": seconds}


def _refused(index: int, plan: Plan, case: EvalCase, reason: str) -> dict[str, Any]:
    return {
        "index": index,
        "prompt": plan.case.prompt,
        "seed": case.seed,
        "canvas": [case.frames, case.height, case.width],
        "refused": reason,
        "checks": dict.fromkeys(CHECKS[plan.run]),
        "measures": {},
        "ceiling": None,
    }


def _ceiling_part(scored: dict[str, Any]) -> dict[str, Any]:
    return {"checks": scored["checks"], "measures": scored["measures"]}


def slug(run: str) -> str:
    return run.replace(" ", "-")


# --------------------------------------------------------------------------------------------
# Report: JSON, a table, an HTML page
# --------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _summary_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run, s in report["summary"].items():
        for name, c in s["checks"].items():
            target = "" if c["target"] is None else f"{c['target']:.0%}"
            met = "" if c["met"] is None else ("ok" if c["met"] else "BELOW")
            rows.append(
                [
                    run,
                    name,
                    _pct(c["rate"]),
                    format_interval(c["interval_95"]),
                    f"{c['passed']}/{c['scored']}",
                    target,
                    met,
                    _pct(c["ceiling"]["rate"]) if c["ceiling"]["scored"] else "",
                ]
            )
    return rows


def _measure_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run, s in report["summary"].items():
        for key, m in s["measures"].items():
            interval = m["interval_95"]
            rows.append(
                [
                    run,
                    key,
                    "n/a" if m["median"] is None else f"{m['median']:.2f}",
                    "" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}",
                    str(m["cases"]),
                    "" if m["ceiling_median"] is None else f"{m['ceiling_median']:.2f}",
                ]
            )
    return rows


SUMMARY_HEADERS = ["run", "check", "rate", "95% interval", "passed", "target", "", "ceiling"]
MEASURE_HEADERS = ["run", "measure (median)", "value", "95% interval", "cases", "ceiling"]


def summary_table(report: dict[str, Any]) -> str:
    """A printable table of every rate and measure."""

    def table(headers: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
        line = lambda cells: "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return [line(headers), "-" * len(line(headers))] + [line(r) for r in rows]

    cases = {s["cases"] for s in report["summary"].values()}
    refused = {run: s["refused"] for run, s in report["summary"].items() if s.get("refused")}
    lines = table(SUMMARY_HEADERS, _summary_rows(report)) + [""] + table(MEASURE_HEADERS, _measure_rows(report))
    lines.append(f"({', '.join(map(str, sorted(cases)))} cases per run)")
    if refused:
        lines.append("refused by the model, unscored: " + ", ".join(f"{run} {n}" for run, n in refused.items()))
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    """The report page: settings, the summary, and per run its contact sheet and cases."""
    from cinecube.evaluate.report import _CSS, _e, _table

    model, settings = report.get("model", {}), report.get("settings", {})
    title = f"cinecube conditioning: {model.get('name', '?')}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(report.get("created", ""))} &middot; sha256 '
        f"{_e(str(model.get('weights_sha256', ''))[:12])}</p>",
        "<h2>Settings</h2>" + _table(["setting", "value"], [[k, str(v)] for k, v in settings.items()]),
        "<h2>Summary</h2>" + _table(SUMMARY_HEADERS, _summary_rows(report)),
        '<p class="note">Rates over the cases scored, with 95 % Wilson intervals. The ceiling is the same '
        "check on the world's render through the model's autoencoder with the given frames put back: "
        "the most a model in that latent space can reach.</p>",
        _table(MEASURE_HEADERS, _measure_rows(report)),
        '<p class="note">Medians over cases with a distribution-free 95 % interval. Seam ratios: the '
        "difference of the frames that meet over the clip's median frame-to-frame difference (pass at most "
        f"{SEAM_RATIO:g}). Track distance: pixels between the input's and the edited video's centroids.</p>",
        "<h2>Checks</h2>" + _table(["check", "passes when"], [[k, v] for k, v in CHECK_TEXT.items()]),
    ]
    marks = {True: "+", False: "-", None: "."}
    for run, run_records in report["records"].items():
        checks = list(CHECKS[run])
        rows = []
        for r in run_records:
            measures = r.get("refused") or ", ".join(
                f"{k} {v}" for k, v in r["measures"].items() if v is not None and not isinstance(v, list)
            )
            rows.append([r["index"], r["prompt"], *(marks[r["checks"][c]] for c in checks), measures])
        sheet = f"{SHEET_DIR}/{slug(run)}/contact_sheet.png"
        parts.append(
            f"<h2>{_e(run)}</h2>"
            f'<p class="note">Contact sheet of the first cases: {_e(SHEET_SHOWS[run])}. Labels: C colour, '
            "S shape, D direction (or motion continuing); + pass, - fail, . not scored.</p>"
            f'<img src="{_e(sheet)}" alt="{_e(run)} contact sheet" style="max-width:100%">'
            + _table(["#", "prompt", *checks, "measures"], rows)
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(folder: str | Path, report: dict[str, Any]) -> None:
    """conditioning.json and index.html in `folder` (beside the sheets already there)."""
    from cinecube.outputs import write_json

    folder = Path(folder)
    write_json(folder / REPORT_JSON, report)
    (folder / REPORT_HTML).write_text(render_html(report), encoding="utf-8")
