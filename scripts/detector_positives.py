"""Generate cinecube videos for the detector's positive class into a cache folder.

    python scripts/detector_positives.py --n 80 --out CACHE [--model M]

Each video is saved as CACHE/gen_<i>.npz (frames uint8 (T,H,W,3), prompt, seed, steps,
guidance). Existing files are kept, so the script resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from cinecube.data.shapes import ShapesWorld, WorldConfig
from cinecube.pipeline import Pipeline

# Canvases the bundled model generates at (multiples of its 16-pixel cells), 1:1 and wide/tall.
CANVASES = [(64, 64), (48, 80), (80, 48), (64, 96), (96, 64), (64, 64), (96, 96)]
OTHER_PROMPTS = [
    "a dog running on the beach",
    "city traffic at night",
    "waves crashing on rocks",
    "a person walking in a park",
    "clouds over mountains",
    "a cat sleeping on a sofa",
    "fireworks over a river",
    "a train passing a station",
    "rain on a window",
    "a forest in autumn",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline.from_pretrained(args.model)
    world = ShapesWorld(WorldConfig(), seed=args.seed + 99)
    for i in range(args.n):
        path = out / f"gen_{i:04d}.npz"
        if path.exists():
            continue
        rng = np.random.default_rng(args.seed * 100_003 + i)
        height, width = CANVASES[int(rng.integers(len(CANVASES)))]
        frames = int(rng.choice([1, 8, 12, 16]))
        prompt = world.sample(i).caption if rng.random() < 0.8 else OTHER_PROMPTS[int(rng.integers(len(OTHER_PROMPTS)))]
        steps = int(rng.choice([8, 12, 20]))
        guidance = float(rng.choice([1.0, 3.0, 5.0]))
        video = pipe(
            prompt,
            frames=frames,
            height=height,
            width=width,
            steps=steps,
            guidance=guidance,
            seed=int(rng.integers(2**31)),
            progress=False,
        )
        tmp = path.with_suffix(".part.npz")
        np.savez_compressed(tmp, frames=video.frames, prompt=prompt, steps=steps, guidance=guidance)
        os.replace(tmp, path)
        print(f"{i + 1}/{args.n} {width}x{height}x{frames} {steps} steps: {prompt}", flush=True)


if __name__ == "__main__":
    main()
