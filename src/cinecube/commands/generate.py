"""`cinecube generate`: a video (or, with one frame, an image) from a prompt, through the output gate.

    cinecube generate PROMPT [--frames --height --width --steps --guidance --seed --model -o OUT]

`add_safety_arguments` and `safety_settings_from` give every command that writes generated
media the same safety switches.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import arguments as arg


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("generate", help="generate a video from a prompt")
    p.add_argument("prompt")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", choices=["euler", "heun"], default="euler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    p.add_argument("--fps", type=float, default=8.0)
    arg.add_output(p, "-o", "--output", kind="file", default="out.mp4", help="output .mp4, .gif or (one frame) .png")
    arg.add_force(p)
    add_safety_arguments(p)
    p.set_defaults(func=cmd_generate)


def add_safety_arguments(p: argparse.ArgumentParser, *, reconstruction: bool = False) -> None:
    """Every command that writes media made by cinecube's networks takes the same safety switches.

    For a `reconstruction` (the user's own footage through the autoencoder) there is no prompt
    to check, and frame review is off unless asked for with --frame-review: the frames are not
    generated, so what they show is what the user gave."""
    g = p.add_argument_group("safety and provenance (all stages on by default)")
    g.add_argument(
        "--frame-action",
        choices=["block", "blur"],
        default="block",
        help="what frame review does when it finds a face (default: block the output)",
    )
    if reconstruction:
        g.add_argument("--frame-review", action="store_true", help="review the frames for faces too")
    g.add_argument("--signing-key", default=None, help="an organisation's PKCS#8 signing key (PEM)")
    g.add_argument("--signing-chain", default=None, help="its certificate chain (PEM, leaf first)")
    g.add_argument("--audit-log", default=None, help="audit log file to append to (default: <config dir>/audit.jsonl)")
    stages = ("prompt-policy", "frame-review") * (not reconstruction) + ("watermark", "c2pa", "audit")
    for stage in stages:
        g.add_argument(
            f"--unsafe-skip-{stage}",
            action="store_true",
            help=f"research only: skip the {stage.replace('-', ' ')} stage",
        )


def safety_settings_from(args: argparse.Namespace):
    from ..safety.guard import SafetySettings

    frame_review = args.frame_review if hasattr(args, "frame_review") else not args.unsafe_skip_frame_review
    return SafetySettings(
        prompt_policy=not getattr(args, "unsafe_skip_prompt_policy", False),
        frame_review=frame_review,
        frame_action=args.frame_action,
        watermark=not args.unsafe_skip_watermark,
        c2pa=not args.unsafe_skip_c2pa,
        audit=not args.unsafe_skip_audit,
        audit_path=args.audit_log,
        signing_key=args.signing_key,
        signing_chain=args.signing_chain,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from ..pipeline import Pipeline, check_fps, check_output_path, check_request
    from ..safety.guard import check_settings

    # Everything that needs no model first (the pipeline's own checks, so the command line and
    # the Python API say the same): a bad request fails in a moment, and nothing is written.
    check_request(
        args.prompt, args.frames, args.height, args.width, steps=args.steps, guidance=args.guidance, seed=args.seed
    )
    check_fps(args.fps, "--fps")
    check_output_path(args.output, args.frames, force=args.force, argument="-o")
    safety = safety_settings_from(args)
    check_settings(safety)
    started = time.time()
    pipe = Pipeline.from_pretrained(args.model, safety=safety)
    video = pipe(
        args.prompt,
        frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        sampler=args.sampler,
        progress=sys.stderr.isatty(),
    )
    video.fps = args.fps
    path = video.save(args.output)
    result = video.published
    print(f"wrote {path} ({args.frames} frames, {args.width}x{args.height}, {time.time() - started:.1f} s)")
    if result.watermark_payload:
        print(f"  watermark payload {result.watermark_payload}; output sha256 {result.output_sha256[:16]}...")
    if result.skipped:
        print(f"  WARNING: safety stages skipped on request: {', '.join(result.skipped)}", file=sys.stderr)
    return 0
