"""cinecube benchmarks: one command, a table of ratios measured side by side in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--out docs/benchmarks.json]

Prints a markdown table (figure | cinecube | reference | ratio | target | met?) and writes
the JSON with every raw figure plus a markdown copy next to it (docs/benchmarks.md).
`--quick` runs tiny sizes in a few seconds (the smoke test); its figures mean nothing.

Every benchmark case runs in its own subprocess, so its peak resident set (getrusage
ru_maxrss) is its own; the matmul peak is measured first, in this process, in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `cinecube` importable
    sys.path.insert(0, str(ROOT))

SAMPLING_SIZES = {"64x64x16": (64, 64, 16), "128x128x16": (128, 128, 16)}
SAMPLING_STEPS = [10, 25, 50]
AUTOENCODERS = ["pixel", "linear", "small", "base"]
TARGETS = {"cinecube_vs_diffusers": 1.3, "mfu": 0.65, "packing_vs_padding": 1.5}


# ---------------------------------------------------------------------------------------
# Cases (each runs in a subprocess: `run.py --case NAME`)
# ---------------------------------------------------------------------------------------


def run_case(name: str, quick: bool) -> dict:
    from benchmarks import conditioning, packing, sampling, training

    if name == "conditioning":
        return conditioning.run(quick)
    if name == "training":
        return training.run(quick)
    if name == "packing":
        return packing.run(quick)
    if name.startswith("sampling:"):
        h, w, f = SAMPLING_SIZES[name.split(":", 1)[1]]
        if quick:
            return sampling.sampling(16, 16, 4, [2, 3], quick=True)
        return sampling.sampling(h, w, f, SAMPLING_STEPS, quick=False)
    if name.startswith("autoencoder:"):
        preset = name.split(":", 1)[1]
        if quick:
            return sampling.autoencoder_fps("tiny" if preset != "pixel" else "pixel", 16, 16, 5, repeats=1)
        return sampling.autoencoder_fps(preset, 64, 64, 17)
    raise SystemExit(f"unknown case {name!r}")


def cases(quick: bool) -> list[str]:
    names = ["training", "packing"]
    names += [f"sampling:{s}" for s in (list(SAMPLING_SIZES)[:1] if quick else SAMPLING_SIZES)]
    names += [f"autoencoder:{a}" for a in (AUTOENCODERS[:2] if quick else AUTOENCODERS)]
    names.append("conditioning")
    return names


def in_subprocess(name: str, quick: bool, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "case.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--case-out", str(out)]
        if quick:
            command.append("--quick")
        if threads:
            command += ["--threads", str(threads)]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        result = json.loads(out.read_text())
        result["wall_seconds"] = time.perf_counter() - started
        return result


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------


def rows(results: dict) -> list[dict]:
    """Table rows: figure, cinecube, reference, ratio, target, met (None where no target)."""
    peaks = results["matmul_peak_flop_per_s"]
    out = []

    def row(figure, cinecube, reference, ratio, target=None, unit=""):
        met = None if target is None else bool(ratio >= target)
        out.append(
            {
                "figure": figure,
                "cinecube": cinecube,
                "reference": reference,
                "ratio": ratio,
                "target": target,
                "met": met,
                "unit": unit,
            }
        )

    if "training" in results:
        training_rows(results["training"], peaks, row)
    if "packing" in results:
        packing_rows(results["packing"], row)
    sampling_rows(results, peaks, row)
    if "conditioning" in results:
        conditioning_rows(results["conditioning"], row)
    return out


def training_rows(tr: dict, peaks: dict, row) -> None:
    peaks = tr["matmul_peak_flop_per_s"]  # measured interleaved with the training steps
    size = tr["size"]
    best = max((k for k in tr if k.startswith("cinecube_")), key=lambda k: tr[k]["tokens_per_s"])
    precision = best.rsplit("_", 1)[1]
    label = f"{size['videos']} x {size['tokens_per_video']} tokens, width {size['width']}, depth {size['depth']}"
    row(
        f"training tokens/s, cinecube ({precision}) vs diffusers CogVideoX (fp32, {size['text_slots']} text "
        f"slots); {label}",
        tr[best]["tokens_per_s"],
        tr["diffusers_fp32"]["tokens_per_s"],
        tr[best]["tokens_per_s"] / tr["diffusers_fp32"]["tokens_per_s"],
        TARGETS["cinecube_vs_diffusers"],
        "tokens/s",
    )
    row(
        f"training tokens/s, same, CogVideoX with the prompt's {size['real_text_tokens']} text tokens only",
        tr[best]["tokens_per_s"],
        tr["diffusers_fp32_equal_text"]["tokens_per_s"],
        tr[best]["tokens_per_s"] / tr["diffusers_fp32_equal_text"]["tokens_per_s"],
        None,
        "tokens/s",
    )
    for key in [k for k in tr if k.startswith("cinecube_")]:
        p = key.rsplit("_", 1)[1]
        row(
            f"MFU cinecube training step ({p}) vs {p} matmul peak",
            tr[key]["flop_per_s"],
            peaks[p],
            tr[key]["flop_per_s"] / peaks[p],
            TARGETS["mfu"] if key == best else None,
            "FLOP/s",
        )
    row(
        "MFU diffusers CogVideoX training step (fp32) vs fp32 matmul peak",
        tr["diffusers_fp32"]["flop_per_s"],
        peaks["fp32"],
        tr["diffusers_fp32"]["flop_per_s"] / peaks["fp32"],
        None,
        "FLOP/s",
    )
    if "diffusers_bf16" in tr:
        row(
            "training tokens/s, cinecube vs diffusers CogVideoX, both in bf16 autocast",
            tr["cinecube_bf16"]["tokens_per_s"],
            tr["diffusers_bf16"]["tokens_per_s"],
            tr["cinecube_bf16"]["tokens_per_s"] / tr["diffusers_bf16"]["tokens_per_s"],
            None,
            "tokens/s",
        )
        row(
            "MFU diffusers CogVideoX training step (bf16) vs bf16 matmul peak",
            tr["diffusers_bf16"]["flop_per_s"],
            peaks["bf16"],
            tr["diffusers_bf16"]["flop_per_s"] / peaks["bf16"],
            None,
            "FLOP/s",
        )
    if "cinecube_bf16" in tr:
        row(
            "cinecube training step, bf16 autocast vs fp32",
            tr["cinecube_bf16"]["tokens_per_s"],
            tr["cinecube_fp32"]["tokens_per_s"],
            tr["cinecube_bf16"]["tokens_per_s"] / tr["cinecube_fp32"]["tokens_per_s"],
            None,
            "tokens/s",
        )
    row(
        "matmul peak, bf16 vs fp32 (2048^3, interleaved with the training steps)",
        peaks["bf16"],
        peaks["fp32"],
        peaks["bf16"] / peaks["fp32"],
        None,
        "FLOP/s",
    )


def packing_rows(pk: dict, row) -> None:
    tps = pk["useful_tokens_per_s"]
    mix = f"{len(pk['videos'])} videos, 1:1/16:9/9:16, 1-32 frames, {pk['useful_tokens']} tokens"
    row(
        f"useful tokens/s, packing vs padding ({mix}; padded {pk['padded_tokens']})",
        tps["packing"],
        tps["padding"],
        tps["packing"] / tps["padding"],
        TARGETS["packing_vs_padding"],
        "tokens/s",
    )
    row(
        f"useful tokens/s, packing vs per-size bucketing ({pk['buckets']} buckets)",
        tps["packing"],
        tps["bucketing"],
        tps["packing"] / tps["bucketing"],
        None,
        "tokens/s",
    )


def sampling_rows(results: dict, peaks: dict, row) -> None:
    for name in SAMPLING_SIZES:
        sm = results.get(f"sampling:{name}")
        if sm is None:
            continue
        peak = sm.get("matmul_peak_flop_per_s", peaks)["fp32"]  # measured next to the sampling
        for steps, r in sm["steps"].items():
            at_peak = r["flops"] / peak
            note = " (estimated from the measured step time)" if r["estimated"] else ""
            row(
                f"sampling {sm['width']}x{sm['height']}x{sm['frames']}, {steps} steps (s/video) vs the same "
                f"FLOPs at the fp32 matmul peak{note}",
                r["seconds"],
                at_peak,
                at_peak / r["seconds"],
                None,
                "s",
            )
        row(
            f"sampling {sm['width']}x{sm['height']}x{sm['frames']}: peak RSS vs RSS before sampling",
            sm["peak_rss_mib"],
            sm["rss_before_mib"],
            sm["peak_rss_mib"] / sm["rss_before_mib"],
            None,
            "MiB",
        )

    for preset in AUTOENCODERS:
        ae = results.get(f"autoencoder:{preset}")
        if ae is None:
            continue
        what = (
            "pixel autoencoder"
            if preset == "pixel"
            else f"causal 3D autoencoder '{ae['preset']}' (timed as built, unfitted)"
        )
        size_label = f"{ae['width']}x{ae['height']}x{ae['frames']}"
        for direction in ("encode", "decode"):
            flops, seconds = ae[f"{direction}_flops"], ae[f"{direction}_seconds"]
            at_peak = flops / ae.get("matmul_peak_flop_per_s", peaks)["fp32"] if flops else None
            row(
                f"{what} {direction} frames/s at {size_label} (reference: frames/s at the fp32 matmul peak)",
                ae[f"{direction}_fps"],
                ae["frames"] / at_peak if at_peak else None,
                at_peak / seconds if at_peak else None,
                None,
                "frames/s",
            )
        row(
            f"{what}: peak RSS vs RSS before encoding",
            ae["peak_rss_mib"],
            ae["rss_before_mib"],
            ae["peak_rss_mib"] / ae["rss_before_mib"],
            None,
            "MiB",
        )


def conditioning_rows(cd: dict, row) -> None:
    """Seconds per video of each way of prompting with frames vs plain generation of the same
    video (ratio = plain / mode: 1 costs nothing extra)."""
    for size, sz in cd["sizes"].items():
        plain = sz["modes"]["plain"]["seconds"]
        for mode, m in sz["modes"].items():
            if mode == "plain":
                continue
            review = (
                f", {m['input_review_seconds']:.2f} s of it reviewing the input" if m["input_review_seconds"] else ""
            )
            row(
                f"{mode} {size}x{cd['frames']}, {cd['steps']} steps (s/video) vs plain generation; "
                f"+{m['condition_tokens']} condition tokens on {sz['video_tokens']}{review}",
                m["seconds"],
                plain,
                plain / m["seconds"],
                None,
                "s",
            )


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "FLOP/s":
        return f"{value / 1e9:.1f} GFLOP/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown(results: dict) -> str:
    lines = ["| figure | cinecube | reference | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = "—" if r["target"] is None else f">= {r['target']}"
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['figure']} | {fmt(r['cinecube'], r['unit'])} | {fmt(r['reference'], r['unit'])} "
            f"| {ratio} | {target} | {met} |"
        )
    return "\n".join(lines) + "\n"


def report(results: dict, table: str) -> str:
    """docs/benchmarks.md: the table with the machines and the method it was measured with."""
    peaks = results["matmul_peak_flop_per_s"]
    # A run refreshed with --only keeps its earlier parts, each measured on its own machine.
    parts = results.get("parts") or [
        {"machine": results["machine"], "started": results["started"], "cases": ["all cases"]}
    ]
    part_lines = "\n".join(
        f"- {p['started']}: {', '.join(p['cases'])}; on {describe_machine(p['machine'])}" for p in parts
    )
    return f"""# cinecube benchmarks

Measured with `.venv/bin/python benchmarks/run.py{" --quick" if results["quick"] else ""}`, in
{len(parts)} part{"s" if len(parts) > 1 else ""} (a later part, run with `--only`, replaces the figures of the cases
it names):
{part_lines}

Matmul peak measured at the start of the last part (2048^3, best of 5; the training, sampling and
autoencoder rows use the peak measured next to their own work): fp32 {peaks["fp32"] / 1e9:.1f} GFLOP/s,
bf16 {peaks["bf16"] / 1e9:.1f} GFLOP/s.

Every ratio compares two figures measured in the same part of the run. FLOPs are counted with
`torch.utils.flop_counter` (forward + backward for training; the CPU flash-attention kernel, which
the counter does not know, is counted with its own attention formulas). Peak memory is the resident-set
high-water mark (`getrusage` ru_maxrss) of each benchmark's own subprocess, next to its resident
set before the measured work. Raw figures: `benchmarks.json`.

{table}"""


def describe_machine(m: dict) -> str:
    load = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"])
    return (
        f"{m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"CPU capability {m['cpu_capability']}), load average (1, 5, 15 min) at the start {load}"
    )


def machine() -> dict:
    import torch

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (smoke test)")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks.json",
        help="JSON output; a .md table is written next to it",
    )
    parser.add_argument(
        "--only", nargs="*", help="run only these cases (names as in the JSON), updating an existing --out"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice, one per core)"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--case-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.case:
        result = run_case(args.case, args.quick)
        args.case_out.write_text(json.dumps(result))
        return 0

    from benchmarks.common import matmul_peak

    results = {}
    if args.only and args.out.exists():  # complete or refresh some cases of an earlier run
        results = json.loads(args.out.read_text())
    stamp = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    results.setdefault("parts", []).append(stamp | {"cases": args.only or cases(args.quick)})
    results.update(stamp, quick=args.quick)
    print("measuring the matmul peak ...", file=sys.stderr)
    results["matmul_peak_flop_per_s"] = matmul_peak(256 if args.quick else 2048, 2 if args.quick else 5)
    for name in args.only or cases(args.quick):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = in_subprocess(name, args.quick, args.threads)
        print(f"  {name}: {results[name]['wall_seconds']:.1f} s", file=sys.stderr)
    results["rows"] = rows(results)
    for r in results["rows"]:
        for key in ("cinecube", "reference", "ratio"):
            if r[key] is not None and not math.isfinite(r[key]):
                raise SystemExit(f"non-finite {key} in row {r['figure']!r}")
    table = markdown(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(report(results, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
