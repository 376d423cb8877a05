"""The training corpus: the worlds mixed into one source, and folders of clips built from it.

    world = make_world("mix", seed=0)                       # shapes + fashion + pans
    sample = world.sample_at(index, height, width, frames)  # .video (T, H, W, 3) uint8, .caption, .truth
    build_corpus("corpus", "mix", n=1000)                   # clips/*.mp4 + captions.jsonl
    source = corpus_source(train_config)                    # a VideoSource for train_autoencoder

Every world has the shapes world's shape of API (`sample(index)`, `sample_at(index, height,
width, frames)`, pure functions of (seed, index)), so the transformer's token-budget stream
and the autoencoder's training loop can draw from any of them, or from the mix.

A built folder has the layout users give their own videos in (see `data/folder.py`), so the
same loader reads both:

    DIR/clips/000000.mp4 ...    H.264, 8 fps
    DIR/captions.jsonl          {"video": "clips/000000.mp4", "caption": "...", "world": "pans"}
    DIR/truth.jsonl             the ground truth of each clip, same order
    DIR/manifest.json           how it was built, and how long it took

The held-out real clips (`assets.real_clip_paths()`) are never drawn from here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CinecubeError
from ..outputs import check_output_folder, staged_folder
from .pans import FootageSample

WORLD_NAMES = ("shapes", "fashion", "pans", "mix")
MIX_WEIGHTS: dict[str, float] = {"pans": 0.4, "fashion": 0.4, "shapes": 0.2}
CORPUS_FPS = 8.0


class ShapesAdapter:
    """The shapes world returning FootageSamples (its Scene as the truth dict)."""

    def __init__(self, split: str = "train", seed: int = 0, object_counts: Sequence[float] | None = None):
        from .shapes import ShapesWorld, WorldConfig

        config = WorldConfig(phrasing="train" if split == "train" else "heldout")
        if object_counts is not None:  # P(1), P(2), P(3) objects, e.g. more crowded scenes
            config = dataclasses.replace(config, object_count_weights=tuple(float(w) for w in object_counts))
        self.world = ShapesWorld(config, seed=seed)

    def sample_at(self, index: int, height: int, width: int, frames: int) -> FootageSample:
        s = self.world.sample_at(index, height, width, frames)
        return FootageSample(s.video, s.caption, {"world": "shapes", "scene": s.scene.to_dict()})

    def sample(self, index: int) -> FootageSample:
        s = self.world.sample(index)
        return FootageSample(s.video, s.caption, {"world": "shapes", "scene": s.scene.to_dict()})


class MixedWorld:
    """Draws each index from one of several worlds, chosen by weight from (seed, index)."""

    def __init__(self, worlds: dict[str, Any], weights: dict[str, float] | None = None, seed: int = 0):
        if not worlds:
            raise ValueError("MixedWorld needs at least one world")
        self.worlds = worlds
        self.names = list(worlds)
        w = np.array([(weights or {}).get(n, 1.0) for n in self.names], dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mix weights must be non-negative with a positive sum, got {weights}")
        self.probabilities = w / w.sum()
        self.seed = seed

    def world_of(self, index: int) -> str:
        rng = np.random.default_rng([self.seed, index, 17])
        return self.names[int(rng.choice(len(self.names), p=self.probabilities))]

    def sample_at(self, index: int, height: int, width: int, frames: int) -> FootageSample:
        return self.worlds[self.world_of(index)].sample_at(index, height, width, frames)


def parse_object_counts(text: str) -> tuple[float, float, float]:
    """ "0.2,0.4,0.4" -> the shapes world's weights of 1, 2 and 3 objects a scene."""
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise CinecubeError(
            f"--object-counts {text!r} is not allowed: give three non-negative weights of "
            "1, 2 and 3 objects a scene with a positive sum, e.g. 0.2,0.4,0.4 (default 0.6,0.25,0.15)"
        )
    return weights  # type: ignore[return-value]


def check_object_counts_apply(world: str | None, object_counts: Sequence[float] | None) -> None:
    """Object-count weights exist only in the shapes world (alone or inside mix); None: a corpus."""
    if object_counts is not None and world not in ("shapes", "mix"):
        raise CinecubeError(
            "--object-counts applies to the shapes world (--world shapes or mix), "
            f"not to {'a corpus' if world is None else repr(world)}"
        )


def make_world(name: str, split: str = "train", seed: int = 0, object_counts: Sequence[float] | None = None):
    """A world by name: "shapes", "fashion", "pans" or "mix" (all three, MIX_WEIGHTS).

    `object_counts` reweights how many objects a shapes scene has (shapes, or the shapes part of mix).
    """
    check_object_counts_apply(name, object_counts)
    if name == "shapes":
        return ShapesAdapter(split, seed, object_counts)
    if name == "fashion":
        from .fashion import FashionWorld

        return FashionWorld(split, seed)
    if name == "pans":
        from .pans import PansWorld

        return PansWorld(split, seed)
    if name == "mix":
        return MixedWorld(
            {n: make_world(n, split, seed, object_counts if n == "shapes" else None) for n in MIX_WEIGHTS},
            MIX_WEIGHTS,
            seed,
        )
    raise CinecubeError(f"unknown world {name!r}; allowed: {', '.join(WORLD_NAMES)}")


def draw_size(
    rng: np.random.Generator, min_size: int, max_size: int, multiple: int = 8, max_aspect: float = 2.0
) -> tuple[int, int]:
    """(height, width), each a multiple of `multiple` in [min_size, max_size], aspect at most max_aspect."""
    sides = np.arange(-(-min_size // multiple) * multiple, max_size + 1, multiple)
    if len(sides) == 0:
        raise CinecubeError(f"no multiple of {multiple} between --min-size {min_size} and --max-size {max_size}")
    while True:
        h, w = int(rng.choice(sides)), int(rng.choice(sides))
        if max(h, w) <= max_aspect * min(h, w):
            return h, w


def corpus_source(
    train: Any,
    worlds: Sequence[str] = ("pans", "fashion", "shapes"),
    weights: dict[str, float] | None = None,
    canvases: Sequence[tuple[int, int]] | None = None,
    frame_counts: Sequence[int] | None = None,
    folder: str | Path | None = None,
) -> Callable[[int], list[np.ndarray]]:
    """A `VideoSource` (step -> uint8 (T, H, W, 3) videos) for `train_autoencoder`.

    Step s gets videos s*n .. s*n+n-1 (n = train.videos_per_step) of the mixed worlds, sizes
    drawn per video from `canvases` and `frame_counts` (default: the train config's
    world_canvases / world_frame_counts), a pure function of (train.seed, step). With `folder`
    (a folder of captioned videos, e.g. one built by `cinecube data build`), its clips are
    cycled through in order instead, one clip per video slot.
    """
    n = train.videos_per_step
    if folder is not None:
        from .folder import VideoFolderDataset

        dataset = VideoFolderDataset(folder, fps=CORPUS_FPS, max_frames=max(frame_counts or (33,)))
        if not dataset.entries:
            raise CinecubeError(f"video folder '{folder}' holds no captioned videos")
        entries = dataset.entries

        def from_folder(step: int) -> list[np.ndarray]:
            # Slot j of step s reads entry (s*n + j) mod N; a broken file (counted in
            # dataset.skipped) passes its slot to the next entry, so a step is never empty.
            out, offset = [], step * n
            for tries in range(len(entries) + n):
                if len(out) == n:
                    break
                clip = next(iter(dataset.clips_of(entries[(offset + tries) % len(entries)])), None)
                if clip is not None:
                    out.append(clip)
            if not out:
                raise CinecubeError(f"no readable video in '{folder}' ({dict(dataset.skipped)})")
            return out

        return from_folder

    world = MixedWorld({w: make_world(w, "train", train.seed) for w in worlds}, weights or MIX_WEIGHTS, train.seed)
    canvases = tuple(canvases or train.world_canvases)
    frame_counts = tuple(frame_counts or train.world_frame_counts)

    def videos(step: int) -> list[np.ndarray]:
        out = []
        for i in range(n):
            index = step * n + i
            rng = np.random.default_rng([train.seed, index, 7])
            height, width = canvases[int(rng.integers(len(canvases)))]
            frames = frame_counts[int(rng.integers(len(frame_counts)))]
            out.append(world.sample_at(index, height, width, frames).video)
        return out

    return videos


# --------------------------------------------------------------------------------------------
# Building and inspecting folders
# --------------------------------------------------------------------------------------------


def build_corpus(
    out_dir: str | Path,
    world: str = "mix",
    n: int = 100,
    *,
    seed: int = 0,
    split: str = "train",
    min_size: int = 64,
    max_size: int = 128,
    frames: int = 33,
    fps: float = CORPUS_FPS,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write `n` clips of a world into `out_dir` (mp4 + captions.jsonl); returns the manifest.

    Canvas sides are multiples of 8 in [min_size, max_size] (aspect at most 2:1), every clip
    has `frames` frames. The corpus is built in a staged folder that is renamed into place
    once whole, so `out_dir` holds a complete corpus or nothing. It must be new or empty;
    `force` replaces a corpus built here before (a folder holding nothing else).
    """
    from tqdm.auto import tqdm

    from ..video_io import write_video

    if n < 1:
        raise CinecubeError(f"--n must be at least 1, got {n}")
    if frames < 1:
        raise CinecubeError(f"--frames must be at least 1, got {frames}")
    if min_size < 16 or max_size < min_size:
        raise CinecubeError(f"sizes must satisfy 16 <= --min-size <= --max-size, got {min_size} and {max_size}")
    out = check_output_folder(out_dir, "--out", kind="corpus", is_ours=is_built_corpus, force=force)
    source = make_world(world, split, seed)
    captions, truths, worlds = [], [], Counter()
    started = time.time()
    # Built in a staged folder and renamed into place whole: a failure leaves no half corpus.
    with staged_folder(out) as staged:
        (staged / "clips").mkdir()
        for index in tqdm(range(n), desc=f"building {world} corpus", disable=not progress, dynamic_ncols=True):
            rng = np.random.default_rng([seed, index, 23])
            height, width = draw_size(rng, min_size, max_size)
            sample = source.sample_at(index, height, width, frames)
            name = f"clips/{index:06d}.mp4"
            write_video(staged / name, sample.video, fps=fps)
            kind = sample.truth.get("world", world)
            worlds[kind] += 1
            captions.append(json.dumps({"video": name, "caption": sample.caption, "world": kind}))
            truths.append(json.dumps({"video": name, **sample.truth}))
        seconds = time.time() - started
        manifest = {
            "world": world,
            "split": split,
            "n": n,
            "seed": seed,
            "min_size": min_size,
            "max_size": max_size,
            "frames": frames,
            "fps": fps,
            "worlds": dict(worlds),
            "seconds": round(seconds, 2),
            "clips_per_second": round(n / seconds, 2) if seconds > 0 else None,
        }
        (staged / "truth.jsonl").write_text("\n".join(truths) + "\n")
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (staged / "captions.jsonl").write_text("\n".join(captions) + "\n")
    return manifest


CORPUS_ENTRIES = ("clips", "captions.jsonl", "truth.jsonl", "manifest.json")


def is_built_corpus(path: Path) -> bool:
    """Whether a folder holds nothing but a corpus `build_corpus` wrote (so --force may replace it)."""
    return (path / "manifest.json").is_file() and all(e.name in CORPUS_ENTRIES for e in Path(path).iterdir())


def inspect_corpus(folder: str | Path, fps: float = CORPUS_FPS) -> dict[str, Any]:
    """Counts, sizes and durations of a folder of captioned videos, without decoding pixels.

    Every listed video's container is read packet by packet (no decoding), so empty,
    unreadable and truncated files are found and counted in "skipped".
    """
    from ..video_io import video_info
    from .folder import DecodeError, VideoFolderDataset, check_complete

    dataset = VideoFolderDataset(folder, fps=fps)
    skipped = Counter(dataset.skipped)
    sizes, durations, worlds = Counter(), [], Counter()
    heights, widths = [], []
    world_of = {}
    captions_file = Path(folder) / "captions.jsonl"
    if captions_file.exists():
        for line in captions_file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                world_of[(Path(folder) / record["video"]).resolve()] = record.get("world", "")
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    good = 0
    for entry in dataset.entries:
        try:
            if entry.path.stat().st_size == 0:
                raise DecodeError("file is empty", "empty")
            check_complete(entry.path)
            info = video_info(entry.path)
        except DecodeError as error:
            skipped[error.reason] += 1
            continue
        except CinecubeError:
            skipped["unreadable"] += 1
            continue
        good += 1
        sizes[f"{info['width']}x{info['height']}"] += 1
        heights.append(info["height"])
        widths.append(info["width"])
        durations.append(info["frames"] / info["fps"])
        worlds[world_of.get(entry.path.resolve()) or "user"] += 1
    return {
        "folder": str(folder),
        "videos": good,
        "skipped": dict(skipped),
        "worlds": dict(worlds),
        "total_seconds": round(float(sum(durations)), 2),
        "mean_seconds": round(float(np.mean(durations)), 3) if durations else 0.0,
        "height_range": [min(heights), max(heights)] if heights else None,
        "width_range": [min(widths), max(widths)] if widths else None,
        "common_sizes": dict(sizes.most_common(8)),
    }
