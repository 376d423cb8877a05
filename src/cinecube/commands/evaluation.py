"""`cinecube eval adherence`, `eval fvd`, `eval fid` and `eval all` (metrics + HTML report).

    cinecube eval adherence [--model M] [--n 120] [--out adherence.json] [--samples DIR] [--grid PX]
    cinecube eval fvd SET_A SET_B [--feature logits|pool] [--frames 16] [--out fvd.json]
    cinecube eval fvd --check-real [--windows-per-half 4] [--out i3d_check.json]
    cinecube eval fid SET_A SET_B [--frames-per-video N] [--out fid.json]
    cinecube eval all [--model M] --out report/ [--n-prompts K] [--steps S] [--quick]

A SET is a video file or a folder of video files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from ..errors import CinecubeError
from . import arguments as arg

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".webm", ".mov", ".mkv")


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    a = eval_commands.add_parser("adherence", help="prompt adherence on held-out prompts, measured from the pixels")
    a.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    a.add_argument("--n", type=int, default=120, help="number of held-out prompts (default 120)")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--guidance", type=float, default=3.0)
    a.add_argument("--seed", type=int, default=1234)
    arg.add_output(a, "--out", kind="file", default="adherence.json", help="JSON report path")
    a.add_argument(
        "--expand",
        default="builtin",
        metavar="SPEC",
        help="prompt expansion, as generate's (default builtin; none measures the prompts as written)",
    )
    arg.add_output(
        a, "--samples", kind="folder", default=None, help="folder for a contact sheet of the generated videos"
    )
    arg.add_force(a, "the report and the contact sheet")
    a.add_argument(
        "--grid",
        type=int,
        default=None,
        help="make every case with sides rounded to multiples of this many pixels (a multiple of "
        "the model's own cell), e.g. 16 to compare a model of 8-px cells with one of 16-px "
        "cells at the same sizes (default: the model's own cell)",
    )
    a.add_argument(
        "--ceiling",
        action="store_true",
        help="score the world's own renders at the model's sizes, passed through the model's "
        "autoencoder: the most any model in that latent space can reach",
    )
    a.set_defaults(func=cmd_eval_adherence)

    f = eval_commands.add_parser("fvd", help="Fréchet Video Distance (Kinetics-400 I3D) between two sets of videos")
    f.add_argument("set_a", nargs="?", help="video file or folder of videos")
    f.add_argument("set_b", nargs="?", help="video file or folder of videos")
    f.add_argument(
        "--feature",
        choices=["logits", "pool"],
        default="logits",
        help="I3D embedding: 400-d logits (the FVD reference) or 1024-d pooled features",
    )
    f.add_argument("--frames", type=int, default=16, help="frames taken from the start of each video (0 = all)")
    f.add_argument(
        "--check-real",
        action="store_true",
        help="check the I3D port on the held-out real clips instead: top-5 labels, "
        "FVD between halves of a clip vs between clips",
    )
    f.add_argument("--windows-per-half", type=int, default=4, help="16-frame windows per clip half (--check-real)")
    arg.add_output(f, "--out", kind="file", default=None, help="JSON file for the result")
    arg.add_force(f)
    f.set_defaults(func=cmd_eval_fvd)

    d = eval_commands.add_parser("fid", help="per-frame FID (TF-Inception) between two sets of videos or images")
    d.add_argument("set_a", help="video/image file or folder")
    d.add_argument("set_b", help="video/image file or folder")
    d.add_argument(
        "--frames-per-video", type=int, default=None, help="evenly spaced frames used per video (default: all)"
    )
    arg.add_output(d, "--out", kind="file", default=None, help="JSON file for the result")
    arg.add_force(d)
    d.set_defaults(func=cmd_eval_fid)

    a = eval_commands.add_parser("all", help="generate, measure everything, write report.json and an HTML report")
    a.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    arg.add_output(
        a, "--out", kind="folder", required=True, help="report folder (report.json, index.html, videos/, plots)"
    )
    arg.add_force(a, "an earlier report at --out")
    a.add_argument("--quick", action="store_true", help="a few prompts and steps (smoke test, minutes on a CPU)")
    a.add_argument("--n-prompts", type=int, default=None, help="held-out prompts (default 16; quick 3)")
    a.add_argument("--steps", type=int, default=None, help="sampling steps (default 20; quick 4)")
    a.add_argument("--guidance", type=float, default=3.0)
    a.add_argument("--seed", type=int, default=1234, help="seed of the held-out prompt set")
    a.add_argument("--videos-per-prompt", type=int, default=1, help="generated videos shown per prompt")
    a.add_argument(
        "--fid-frames", type=int, default=None, help="evenly spaced frames per video for FID (default 4; quick 3)"
    )
    check = a.add_mutually_exclusive_group()
    check.add_argument(
        "--i3d-check",
        dest="i3d_check",
        action="store_true",
        default=None,
        help="include the I3D check on real clips (default unless --quick)",
    )
    check.add_argument("--no-i3d-check", dest="i3d_check", action="store_false")
    a.set_defaults(func=cmd_eval_all)

    m = eval_commands.add_parser(
        "compare", help="two adherence reports of the same prompts, case by case (exact McNemar per attribute)"
    )
    m.add_argument("old", help="adherence JSON of the model to compare against")
    m.add_argument("new", help="adherence JSON of the new model (same --n and --seed)")
    arg.add_output(m, "--out", kind="file", default=None, help="JSON file for the comparison")
    arg.add_force(m)
    m.set_defaults(func=cmd_eval_compare)

    c = eval_commands.add_parser(
        "conditioning", help="prompting with images and videos (animate, extend, loop, connect, edit), from the pixels"
    )
    c.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    c.add_argument("--n", type=arg.positive_int, default=30, help="held-out cases per mode (default 30)")
    c.add_argument("--steps", type=arg.positive_int, default=20)
    c.add_argument("--guidance", type=arg.finite_float, default=3.0)
    c.add_argument("--seed", type=arg.seed, default=1234, help="seed of the held-out cases")
    c.add_argument(
        "--modes",
        type=_conditioning_modes,
        default="animate,extend,loop,connect,edit",
        help="comma-separated modes to measure (default: all; extend is measured forward and backward)",
    )
    arg.add_output(
        c, "--out", kind="folder", required=True, help="report folder (conditioning.json, index.html, sheets/)"
    )
    arg.add_force(c, "an earlier conditioning report at --out")
    c.set_defaults(func=cmd_eval_conditioning)


def cmd_eval_adherence(args: argparse.Namespace) -> int:
    from ..evaluate.adherence import SHEET_FILES, autoencoder_round_trip, evaluate_adherence, heldout_cases
    from ..outputs import check_output_file, check_output_folder, staged_folder, write_json
    from ..pipeline import Pipeline

    if args.n < 1:
        raise CinecubeError(f"--n must be at least 1, got {args.n}")
    out = check_output_file(args.out, "--out", suffixes=(".json",), force=args.force)
    samples = None
    if args.samples is not None:
        samples = check_output_folder(
            args.samples,
            "--samples",
            kind="contact sheet",
            is_ours=lambda p: all(e.name in SHEET_FILES for e in p.iterdir()),
            force=args.force,
        )
    pipe = Pipeline.from_pretrained(args.model)
    cell_h, cell_w = pipe.config.token_pixels
    if args.grid is not None and (args.grid < 1 or args.grid % cell_h or args.grid % cell_w):
        cell = f"{cell_h}" if cell_h == cell_w else f"{cell_h}x{cell_w}"
        raise CinecubeError(f"--grid must be a multiple of the model's cell of {cell} px, got {args.grid}")
    cases = heldout_cases(args.n, seed=args.seed)

    def generate(case):
        # A latent-space model may not allow the case's canvas (e.g. 40x40 with 16-px cells):
        # it makes the nearest allowed size (on --grid when given), which is measured as it is.
        frames, height, width = pipe.nearest_allowed(case.frames, case.height, case.width, args.grid)
        if args.ceiling:
            return autoencoder_round_trip(pipe.autoencoder, case.scene, frames, height, width)
        return pipe(
            case.prompt,
            frames=frames,
            height=height,
            width=width,
            steps=args.steps,
            guidance=args.guidance,
            seed=case.seed,
            progress=False,
            expand=args.expand,
        ).frames

    # The contact sheet is written into a staged folder, published with the report.
    with staged_folder(samples) if samples is not None else contextlib.nullcontext() as staged:
        report = evaluate_adherence(generate, cases, progress=True, samples_dir=staged)
        print(report.table())
        write_json(out, _adherence_json(report, pipe, args, cell_h))
    print(f"wrote {out}")
    return 0


def _adherence_json(report, pipe, args: argparse.Namespace, cell: int) -> dict:
    result = report.to_json()
    result["model"] = {"name": pipe.name, "weights_sha256": pipe.weights_sha256, "grid_px": args.grid or cell}
    result["model"].update(
        {"ceiling": "ground-truth renders through the model's autoencoder"}
        if args.ceiling
        else {"steps": args.steps, "guidance": args.guidance, "expand": args.expand}
    )
    return result


def cmd_eval_compare(args: argparse.Namespace) -> int:
    """Exit 0 when the new model is nowhere significantly worse, 1 when it is on some attribute."""
    from ..evaluate.compare import compare_reports, comparison_table

    _check_json_out(args)
    reports = []
    for argument, path in (("OLD", args.old), ("NEW", args.new)):
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CinecubeError(f"{argument} '{path}' is not a readable adherence report ({error})") from None
    result = compare_reports(*reports)
    print(comparison_table(result))
    _write_json(args.out, result)
    return 1 if result["any_significantly_worse"] else 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _video_files(spec: str | None, what: str) -> list[Path]:
    if not spec:
        raise CinecubeError(f"{what} is missing: give a video file or a folder of videos")
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + (".png", ".jpg", ".jpeg"))
        if not files:
            raise CinecubeError(f"{what} folder '{path}' holds no videos ({', '.join(VIDEO_SUFFIXES)}) or images")
        return files
    if path.is_file():
        return [path]
    raise CinecubeError(f"{what} '{path}' does not exist")


def _read_all(files: list[Path], frames: int | None) -> list:
    from ..evaluate.fvd import read_frames

    return [read_frames(p, 0, frames or None) for p in files]


def _check_json_out(args: argparse.Namespace) -> None:
    from ..outputs import check_output_file

    if args.out is not None:
        check_output_file(args.out, "--out", suffixes=(".json",), force=args.force)


def _write_json(path: str | None, data: dict) -> None:
    from ..outputs import write_json

    if path:
        write_json(path, data)
        print(f"wrote {path}")


def cmd_eval_fvd(args: argparse.Namespace) -> int:
    from ..evaluate.fvd import fvd, real_clip_validation

    _check_json_out(args)
    started = time.time()
    if args.check_real:
        if args.windows_per_half < 2:
            raise CinecubeError(f"--windows-per-half must be at least 2, got {args.windows_per_half}")
        result = real_clip_validation(windows_per_half=args.windows_per_half)
        for name, labels in result["top5"].items():
            print(f"{name:<13} " + ", ".join(f"{label} ({p:.0%})" for label, p in labels))
        for feat, s in result["summary"].items():
            print(
                f"FVD ({feat}): same-clip halves mean {s['same_clip_halves_mean']:.1f} (max {s['same_max']:.1f}); "
                f"different clips mean {s['different_clips_mean']:.1f} (min {s['different_min']:.1f})"
            )
    else:
        if args.frames < 0:
            raise CinecubeError(f"--frames must be 0 (all) or positive, got {args.frames}")
        videos_a = _read_all(_video_files(args.set_a, "SET_A"), args.frames)
        videos_b = _read_all(_video_files(args.set_b, "SET_B"), args.frames)
        result = fvd(videos_a, videos_b, feature=args.feature).to_json()
        print(f"FVD ({args.feature}) {result['value']:.2f} over {result['n_a']} vs {result['n_b']} videos")
        if result["note"]:
            print(f"note: {result['note']}")
    result["seconds"] = round(time.time() - started, 1)
    _write_json(args.out, result)
    return 0


def cmd_eval_fid(args: argparse.Namespace) -> int:
    from ..evaluate.fid import fid

    _check_json_out(args)
    if args.frames_per_video is not None and args.frames_per_video < 1:
        raise CinecubeError(f"--frames-per-video must be at least 1, got {args.frames_per_video}")
    videos_a = _read_all(_video_files(args.set_a, "SET_A"), None)
    videos_b = _read_all(_video_files(args.set_b, "SET_B"), None)
    result = fid(videos_a, videos_b, max_frames_per_video=args.frames_per_video).to_json()
    print(f"FID per frame {result['value']:.2f} over {result['n_a']} vs {result['n_b']} frames")
    if result["note"]:
        print(f"note: {result['note']}")
    _write_json(args.out, result)
    return 0


def cmd_eval_all(args: argparse.Namespace) -> int:
    from ..evaluate.report import check_settings, evaluate_all, is_report_folder, summary_table
    from ..outputs import check_output_folder, staged_folder

    check_settings(args.quick, args.n_prompts, args.steps, args.fid_frames, args.videos_per_prompt)
    out = check_output_folder(
        args.out,
        "--out",
        kind="evaluation report",
        is_ours=is_report_folder,
        force=args.force,
        sources=[args.model] if args.model else [],
    )
    # The report is made in a staged folder and renamed into place whole: a failure leaves nothing.
    with staged_folder(out) as staged:
        results = evaluate_all(
            staged,
            args.model,
            published_as=out,
            quick=args.quick,
            n_prompts=args.n_prompts,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            videos_per_prompt=args.videos_per_prompt,
            fid_frames=args.fid_frames,
            i3d_check=args.i3d_check,
            log=_log,
        )
    print(summary_table(results))
    print(f"wrote {out / 'report.json'} and {out / 'index.html'} ({results['stage_seconds']['total']:.0f} s)")
    return 0


def _conditioning_modes(text: str) -> tuple[str, ...]:
    from ..evaluate.conditioning import parse_modes

    return parse_modes(text)


def cmd_eval_conditioning(args: argparse.Namespace) -> int:
    from ..evaluate.adherence import heldout_cases
    from ..evaluate.conditioning import FORMAT, evaluate_conditioning, is_report_folder, summary_table, write_report
    from ..outputs import check_output_folder, staged_folder
    from ..pipeline import MAX_GUIDANCE, MAX_STEPS, Pipeline

    if args.steps > MAX_STEPS:
        raise CinecubeError(f"--steps {args.steps} is not allowed; use 1..{MAX_STEPS}")
    if not 0 <= args.guidance <= MAX_GUIDANCE:
        raise CinecubeError(f"--guidance {args.guidance:g} is not allowed; use 0..{MAX_GUIDANCE:g} (1 = no guidance)")
    out = check_output_folder(
        args.out,
        "--out",
        kind="conditioning report",
        is_ours=is_report_folder,
        force=args.force,
        sources=[args.model] if args.model else [],
    )
    started = time.time()
    pipe = Pipeline.from_pretrained(args.model)
    cases = heldout_cases(args.n, seed=args.seed)
    # The report is made in a staged folder and renamed into place whole: a failure leaves nothing.
    with staged_folder(out) as staged:
        results = evaluate_conditioning(
            pipe, cases, args.modes, steps=args.steps, guidance=args.guidance, sheets_dir=staged / "sheets", log=_log
        )
        report = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"name": pipe.name, "path": str(args.model or "bundled"), "weights_sha256": pipe.weights_sha256},
            "settings": {
                "cases": args.n,
                "seed": args.seed,
                "steps": args.steps,
                "guidance": args.guidance,
                "modes": ",".join(args.modes),
            },
            **results,
            "seconds_total": round(time.time() - started, 1),
        }
        write_report(staged, report)
    print(summary_table(report))
    print(f"wrote {out / 'conditioning.json'} and {out / 'index.html'} ({report['seconds_total']:.0f} s)")
    return 0
