"""`cinecube generate`: a video (or, with one frame, an image) from a prompt, through the output gate.

    cinecube generate PROMPT [--frames --height --width --steps --guidance --seed --model -o OUT]
    cinecube generate PROMPT --image IMG [...]      animate an image: it is the first frame
    cinecube generate PROMPT --loop [--image IMG]   a video whose last frame flows into its first

`add_generation_arguments` / `add_safety_arguments` give every command that writes generated
media the same options (commands/prompting.py uses them for extend, connect and edit), and
`run_generation` the same order of work: check everything that needs no model, load it,
generate, publish through the gate, report.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from . import arguments as arg


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("generate", help="generate a video from a prompt (or animate an image, or loop)")
    p.add_argument("prompt")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=None, help="pixels (default 64, or the image's nearest allowed size)")
    p.add_argument("--width", type=int, default=None, help="pixels (default 64, or the image's nearest allowed size)")
    p.add_argument(
        "--image",
        default=None,
        help="animate this image: it is the first frame, resized and centre-cropped to --height/--width or, "
        "without them, to the allowed size nearest its own",
    )
    p.add_argument("--loop", action="store_true", help="make a seamless loop: the last frame flows into the first")
    add_generation_arguments(p)
    p.set_defaults(func=cmd_generate)


def add_generation_arguments(p: argparse.ArgumentParser, fps_default: float | None = 8.0) -> None:
    """The sampling, model, output and safety options every generating command takes."""
    p.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", choices=["euler", "heun"], default="euler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    p.add_argument(
        "--fps", type=float, default=fps_default, help=f"frames per second (default {fps_default or 'the input'}'s)"
    )
    arg.add_output(p, "-o", "--output", kind="file", default="out.mp4", help="output .mp4, .gif or (one frame) .png")
    arg.add_force(p)
    add_expand_arguments(p)
    add_safety_arguments(p)


def add_expand_arguments(p: argparse.ArgumentParser) -> None:
    """Prompt expansion (cinecube/prompting): on by default, since the model follows prompts in
    its training captions' style best (docs/prompt-expansion.md)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--expand",
        default="builtin",
        metavar="SPEC",
        help="rewrite the prompt in the style the model was trained on before encoding it: builtin (default), "
        "builtin:detailed, or cmd:<shell command> (reads the prompt on stdin, prints the expansion)",
    )
    group.add_argument(
        "--no-expand", dest="expand", action="store_const", const="none", help="use the prompt as written"
    )


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


def generation_options(args: argparse.Namespace) -> dict:
    return {
        "steps": args.steps,
        "guidance": args.guidance,
        "seed": args.seed,
        "sampler": args.sampler,
        "progress": sys.stderr.isatty(),
        "expand": args.expand,
    }


def run_generation(
    args: argparse.Namespace,
    frames_hint: int,
    make: Callable,
    *,
    inputs: list[tuple[str, str]] = (),
    fps: float | None = None,
) -> int:
    """Check what needs no model (prompt, options, output, audit log, signing key), load the
    model, `make(pipe)` the video, and publish it through the output gate with its `inputs`
    ((path, relationship) recorded in the manifest) at `fps` (default: --fps)."""
    from ..pipeline import Pipeline, check_fps, check_output_path, check_request
    from ..safety.guard import check_settings

    # Everything that needs no model first (the pipeline's own checks, so the command line and
    # the Python API say the same): a bad request fails in a moment, and nothing is written.
    check_request(args.prompt, max(1, frames_hint), 64, 64, steps=args.steps, guidance=args.guidance, seed=args.seed)
    fps = check_fps(args.fps if args.fps is not None else (fps or 8.0), "--fps")
    check_output_path(args.output, frames_hint, force=args.force, argument="-o")
    safety = safety_settings_from(args)
    check_settings(safety)
    started = time.time()
    pipe = Pipeline.from_pretrained(args.model, safety=safety)
    video = make(pipe)
    video.fps = fps
    check_output_path(args.output, len(video.frames), force=args.force, argument="-o")
    path = video.save(args.output, inputs=inputs)
    result = video.published
    t, h, w = video.frames.shape[:3]
    mode = f" ({video.info['mode']})" if "mode" in video.info else ""
    expansion = video.info.get("expansion") or {}
    if expansion.get("expanded", args.prompt) != args.prompt:
        print(f"prompt expanded ({expansion['by']}): {expansion['expanded']}")
    elif expansion.get("by", "none") != "none":
        print(f"prompt used as written ({expansion['reason']})")
    print(f"wrote {path}{mode} ({t} frames, {w}x{h}, {time.time() - started:.1f} s)")
    if result.watermark_payload:
        print(f"  watermark payload {result.watermark_payload}; output sha256 {result.output_sha256[:16]}...")
    if result.skipped:
        print(f"  WARNING: safety stages skipped on request: {', '.join(result.skipped)}", file=sys.stderr)
    return 0


def read_input(path: str, argument: str):
    """Frames (T, H, W, 3) uint8 and fps of an input video or image; one line naming `argument`."""
    from ..errors import VideoIOError
    from ..video_io import read_video

    try:
        return read_video(path)
    except VideoIOError as error:
        raise VideoIOError(f"{argument}: {error}") from None


def cmd_generate(args: argparse.Namespace) -> int:
    from ..errors import InvalidRequestError

    image = read_input(args.image, "--image")[0][:1] if args.image is not None else None
    if (args.height is None) != (args.width is None):
        raise InvalidRequestError("give --height and --width together (or neither)")
    inputs = [(args.image, "componentOf")] if args.image is not None else []

    def make(pipe):
        options = generation_options(args)
        height, width = args.height, args.width
        if image is not None:
            fitted = pipe.fit_image(image, height, width)
            if height is None:
                print(
                    f"the image is {image.shape[2]}x{image.shape[1]}; animating it at "
                    f"{fitted.shape[2]}x{fitted.shape[1]}, the allowed size nearest its own",
                    file=sys.stderr,
                )
            if args.loop:
                return pipe.loop(args.prompt, args.frames, image=fitted, **options)
            return pipe.animate(args.prompt, fitted[0], args.frames, **options)
        height, width = height or 64, width or 64
        if args.loop:
            return pipe.loop(args.prompt, args.frames, height=height, width=width, **options)
        return pipe(args.prompt, args.frames, height, width, **options)

    if args.height is not None:
        from ..pipeline import check_request

        check_request(args.prompt, args.frames, args.height, args.width, steps=1, guidance=1.0, seed=0)
    return run_generation(args, args.frames, make, inputs=inputs)
