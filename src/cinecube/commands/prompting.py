"""Prompting with videos: `cinecube extend`, `connect` and `edit`.

    cinecube extend VIDEO PROMPT --frames N [--direction forward|backward] -o OUT
    cinecube connect A B PROMPT --frames N -o OUT
    cinecube edit VIDEO PROMPT [--strength 0.6] -o OUT

Each takes the options of `generate` (steps, guidance, seed, model, fps, the safety flags) and
writes mp4, gif or png through the same output gate; the inputs are recorded in the output's
C2PA manifest. The given frames are in the output as they were (extend, connect).
"""

from __future__ import annotations

import argparse

from .generate import add_generation_arguments, generation_options, read_input, run_generation


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    e = commands.add_parser("extend", help="new frames after (or before) a video, which is kept as it is")
    e.add_argument("video", help="the video (or image) to extend")
    e.add_argument("prompt")
    e.add_argument("--frames", type=int, default=8, help="new frames (default 8)")
    e.add_argument("--direction", choices=["forward", "backward"], default="forward")
    add_generation_arguments(e, fps_default=None)
    e.set_defaults(func=cmd_extend)

    c = commands.add_parser("connect", help="a transition from where one video ends to where another starts")
    c.add_argument("first", help="the video (or image) the transition starts from")
    c.add_argument("second", help="the video (or image) it leads into")
    c.add_argument("prompt")
    c.add_argument("--frames", type=int, default=8, help="frames of the transition (default 8)")
    add_generation_arguments(c, fps_default=None)
    c.set_defaults(func=cmd_connect)

    d = commands.add_parser("edit", help="change a video by a prompt (SDEdit), keeping its motion and layout")
    d.add_argument("video")
    d.add_argument("prompt")
    d.add_argument("--strength", type=float, default=0.6, help="0 keeps the video, 1 ignores it (default 0.6)")
    add_generation_arguments(d, fps_default=None)
    d.set_defaults(func=cmd_edit)


def cmd_extend(args: argparse.Namespace) -> int:
    video, fps = read_input(args.video, "VIDEO")
    return run_generation(
        args,
        len(video) + max(args.frames, 1),
        lambda pipe: pipe.extend(args.prompt, video, args.frames, args.direction, **generation_options(args)),
        inputs=[(args.video, "parentOf")],
        fps=fps,
    )


def cmd_connect(args: argparse.Namespace) -> int:
    first, fps = read_input(args.first, "FIRST")
    second, _ = read_input(args.second, "SECOND")
    return run_generation(
        args,
        len(first) + len(second) + max(args.frames, 1),
        lambda pipe: pipe.connect(args.prompt, first, second, args.frames, **generation_options(args)),
        inputs=[(args.first, "componentOf"), (args.second, "componentOf")],
        fps=fps,
    )


def cmd_edit(args: argparse.Namespace) -> int:
    from ..errors import InvalidRequestError

    if not 0 <= args.strength <= 1:  # before the video is read
        raise InvalidRequestError(f"--strength {args.strength} is not allowed; use 0..1 (0 keeps the video)")
    video, fps = read_input(args.video, "VIDEO")
    return run_generation(
        args,
        len(video),
        lambda pipe: pipe.edit(args.prompt, video, args.strength, **generation_options(args)),
        inputs=[(args.video, "parentOf")],
        fps=fps,
    )
