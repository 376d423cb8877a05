"""How identity and motion hold over long videos made by extending again and again.

    .venv/bin/python scripts/long_videos.py [--model M] [--cases 12] [--rounds 6] [--out long.json]

For held-out single-object cases of the shapes world: generate the case's video (17 frames),
then extend it forward `rounds` times by 20 frames (each extension sees the last 9 frames: 9 +
20 fit in the default model's 32), to 17 + 20 * rounds frames (137 at 6 rounds: over 4x the
model's 32). Every 20-frame window is measured from the pixels (evaluate/adherence.measure_video): is the object still
there, with the first window's colour and shape, moving the way the prompt says? Prints a table
by window and writes the per-case records as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cinecube.evaluate.adherence import heldout_cases, measure_video, wilson_interval
from cinecube.outputs import check_output_file, write_json
from cinecube.pipeline import Pipeline

FIRST, STEP, CONTEXT = 17, 20, 9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--out", default="long-videos.json")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    out = check_output_file(args.out, "--out", suffixes=(".json",), force=args.force)
    pipe = Pipeline.from_pretrained(args.model)
    cases = [c for c in heldout_cases(8 * args.cases, seed=args.seed) if len(c.scene.objects) == 1]
    cases = [c for c in cases if c.scene.objects[0].motion not in ("still", "bouncing")][: args.cases]
    records = []
    for index, case in enumerate(cases):
        _, height, width = pipe.nearest_allowed(1, case.height, case.width)
        options = {"steps": args.steps, "seed": case.seed, "progress": False}
        video = pipe(case.prompt, FIRST, height, width, **options).frames
        for _ in range(args.rounds):
            # The model sees the last CONTEXT frames: extend() takes as many as fit in max_frames.
            tail = video[-CONTEXT:]
            made = pipe.extend(case.prompt, tail, STEP, **options).frames
            video = np.concatenate([video, made[len(tail) :]])
        want = case.scene.objects[0]
        windows, first = [], None
        for start in range(0, len(video) - STEP + 1, STEP):
            found = measure_video(video[start : start + STEP])
            obj = max(found, key=lambda o: o.area) if found else None
            if first is None:
                first = obj
            windows.append(
                {
                    "frames": [start, start + STEP],
                    "found": obj is not None,
                    "color_kept": bool(obj and first and obj.color == first.color),
                    "shape_kept": bool(obj and first and obj.shape == first.shape),
                    "color_asked": bool(obj and obj.color == want.color),
                    "direction_asked": bool(obj and obj.direction == want.motion),
                }
            )
        records.append({"index": index, "prompt": case.prompt, "frames": len(video), "windows": windows})
        print(f"case {index}: {len(video)} frames, " + " ".join("+" if w["direction_asked"] else "-" for w in windows))
    summary = []
    for w in range(min(len(r["windows"]) for r in records)):
        row = {"window": w}
        for key in ("found", "color_kept", "shape_kept", "color_asked", "direction_asked"):
            passed = sum(r["windows"][w][key] for r in records)
            row[key] = passed / len(records)
            row[f"{key}_interval_95"] = wilson_interval(passed, len(records))
        summary.append(row)
    print("window  frames     found  colour kept  shape kept  colour asked  direction asked")
    for row in summary:
        start = row["window"] * STEP
        print(
            f"{row['window']:>6}  {start:>3}-{start + STEP:<3}  {row['found']:>7.0%}  {row['color_kept']:>11.0%}  "
            f"{row['shape_kept']:>10.0%}  {row['color_asked']:>12.0%}  {row['direction_asked']:>15.0%}"
        )
    write_json(out, {"model": args.model or "default", "cases": len(records), "summary": summary, "records": records})
    print(f"wrote {Path(out)}")


if __name__ == "__main__":
    main()
