"""Seconds per video for each way of prompting with frames, beside plain generation.

Every mode asks the model for the same video as plain generation (16 frames: the same video
tokens), so what a mode costs on top is its condition tokens (the given frames, encoded on their
own and attended to at every step), encoding them, and the frame review of what it is given:

    plain            pipe(prompt, 16, h, w)
    animate          an image -> 16 frames                       (1 latent frame of condition)
    extend forward   a 9-frame clip + 7 new frames                (3 latent frames)
    extend backward  7 new frames + a 9-frame clip                (3 latent frames)
    loop             15 frames whose end is the image             (the image twice, 1 + 1)
    connect          image A, a 14-frame transition, image B      (1 + 1)
    edit             a 16-frame video at strength 0.6             (no extra tokens; one encoding)

Timed round-robin (common.best_times_interleaved: best of `repeats`, Euler, 25 steps,
guidance 3) through the Pipeline with its default safety settings, which review the frames a
request is given; that review is also timed on its own.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .common import best_time, best_times_interleaved, current_rss_mib, peak_rss_mib

PROMPT = "a red circle moving right on a black background"
FRAMES = 16
CONTEXT = 9  # extend: the given clip, 1 + 4k frames
STEPS = 25
MODES = ("plain", "animate", "extend forward", "extend backward", "loop", "connect", "edit")


def _pipeline(quick: bool):
    from cinecube.pipeline import Pipeline

    if not quick:
        return Pipeline.from_pretrained()
    from cinecube.autoencoder import build_autoencoder
    from cinecube.config import PRESETS
    from cinecube.text import get_text_encoder
    from cinecube.transformer import DiffusionTransformer

    torch.manual_seed(0)
    config = PRESETS["tiny"]
    return Pipeline(DiffusionTransformer(config), build_autoencoder(config.autoencoder), get_text_encoder(32))


def _given(height: int, width: int, frames: int) -> np.ndarray:
    from cinecube.data.shapes import ShapesWorld

    return ShapesWorld(seed=0).sample_at(0, height, width, frames).video


def requests(pipe, height: int, width: int, frames: int, steps: int) -> dict[str, tuple]:
    """Per mode: (call making the video, the clips it is given as conditions, the frames it reviews)."""
    from cinecube.conditioning import layout_length

    tf = pipe.autoencoder.config.temporal_factor
    video = _given(height, width, frames)
    image = video[:1]
    context = layout_length(min(CONTEXT, frames - 1), tf)
    new = frames - context
    options = {"steps": steps, "guidance": 3.0, "seed": 0, "progress": False}
    clip = video[:context]
    return {
        "plain": (lambda: pipe(PROMPT, frames, height, width, **options), [], []),
        "animate": (lambda: pipe.animate(PROMPT, image, frames=frames, **options), [image], [image]),
        "extend forward": (lambda: pipe.extend(PROMPT, clip, frames=new, **options), [clip], [clip]),
        "extend backward": (
            lambda: pipe.extend(PROMPT, clip, frames=new, direction="backward", **options),
            [clip],
            [clip],
        ),
        "loop": (lambda: pipe.loop(PROMPT, frames=frames - 1, image=image, **options), [image, image], [image, image]),
        "connect": (
            lambda: pipe.connect(PROMPT, image, video[-1:], frames=frames - 2, **options),
            [image, video[-1:]],
            [image, video[-1:]],
        ),
        "edit": (lambda: pipe.edit(PROMPT, video, strength=0.6, **options), [], [video]),
    }


def condition_tokens(pipe, clips: list[np.ndarray]) -> int:
    """Extra tokens the conditions add: each clip's latent (its causal layout), patched."""
    from cinecube.conditioning import layout_length
    from cinecube.patches import token_grid

    ae = pipe.autoencoder
    s, tf = ae.config.spatial_factor, ae.config.temporal_factor
    total = 0
    for clip in clips:
        t, h, w = layout_length(len(clip), tf), clip.shape[1], clip.shape[2]
        gt, gh, gw = token_grid((ae.latent_frames(t), h // s, w // s), pipe.config.patch_size)
        total += gt * gh * gw
    return total


def run(quick: bool, repeats: int = 3) -> dict:
    """Seconds per video of every mode and of plain generation at each size, interleaved."""
    from cinecube.safety.frames import review_frames

    pipe = _pipeline(quick)
    sizes = [(32, 32)] if quick else [(64, 64), (128, 128)]
    frames, steps = (5, 2) if quick else (FRAMES, STEPS)
    repeats = 1 if quick else repeats
    rss_before = current_rss_mib()
    out = {"frames": frames, "steps": steps, "repeats": repeats, "prompt": PROMPT, "sizes": {}}
    for height, width in sizes:
        calls = requests(pipe, height, width, frames, steps)
        started = time.perf_counter()
        seconds = best_times_interleaved({m: c[0] for m, c in calls.items()}, repeats, warmup=1)
        review = {
            m: best_time(lambda given=given: [review_frames(g) for g in given], repeats, warmup=0) if given else 0.0
            for m, (_, _, given) in calls.items()
        }
        out["sizes"][f"{width}x{height}"] = {
            "height": height,
            "width": width,
            "video_tokens": pipe.num_tokens(frames, height, width),
            "modes": {
                m: {
                    "seconds": seconds[m],
                    "condition_tokens": condition_tokens(pipe, calls[m][1]),
                    "input_review_seconds": review[m],
                }
                for m in MODES
            },
            "wall_seconds": time.perf_counter() - started,
        }
    out["rss_before_mib"], out["peak_rss_mib"] = rss_before, peak_rss_mib()
    out["memory"] = "getrusage ru_maxrss"
    return out
