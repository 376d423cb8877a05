"""`cinecube ...` subcommands.

    cinecube generate PROMPT [--frames --height --width --steps --guidance --seed --model -o]
    cinecube train --preset tiny --world shapes --steps N --out runs/NAME [--resume]
    cinecube eval adherence --model M [--n 120 --out adherence.json]
    cinecube export CHECKPOINT --out FOLDER [--dtype bfloat16]

Errors the user can fix print one line (`error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pkgutil
import sys
import time
from pathlib import Path

# OpenMP threads that spin while waiting slow every op ~10x as soon as another process wants a
# core (measured on 2 cores); passive waiting costs little when the machine is idle. Must be
# set before torch is imported; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import commands as commands_package
from .errors import CinecubeError


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a video from a prompt")
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
    p.add_argument("-o", "--output", default="out.mp4", help="output .mp4, .gif or (one frame) .png")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline, check_output_path

    check_output_path(args.output, args.frames)   # fail before any work is done
    started = time.time()
    pipe = Pipeline.from_pretrained(args.model)
    video = pipe(args.prompt, frames=args.frames, height=args.height, width=args.width,
                 steps=args.steps, guidance=args.guidance, seed=args.seed, sampler=args.sampler,
                 progress=sys.stderr.isatty())
    video.fps = args.fps
    path = video.save(args.output)
    print(f"wrote {path} ({args.frames} frames, {args.width}x{args.height}, "
          f"{time.time() - started:.1f} s)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import PRESETS

    p = sub.add_parser("train", help="train a model on a world")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--world", default="shapes")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the preset's)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, samples, loss curve)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--init-from", default=None,
                   help="start a new run from this model's weights (same architecture), fresh optimizer")
    p.add_argument("--tokens-per-step", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast where the processor supports it")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--sample-every", type=int, default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import PRESETS, TRAIN_PRESETS, TrainConfig
    from .train.checkpoint import checkpoint_dirs
    from .train.loop import train

    model_config = PRESETS[args.preset]
    train_config = TRAIN_PRESETS[args.preset]
    run_json = Path(args.out) / "run.json"
    if args.resume and checkpoint_dirs(args.out) and run_json.exists():
        # A resumed run keeps its own configs; only the step count may be extended.
        saved = json.loads(run_json.read_text())
        train_config = TrainConfig.from_dict(saved["train"])
        from .config import ModelConfig
        model_config = ModelConfig.from_dict(saved["model"])
    overrides = {"steps": args.steps, "tokens_per_step": args.tokens_per_step, "lr": args.lr,
                 "seed": args.seed, "checkpoint_every": args.checkpoint_every,
                 "sample_every": args.sample_every}
    if args.bf16:
        overrides["bf16"] = True
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and key != "seed":
            raise CinecubeError(f"--{key.replace('_', '-')} must be positive, got {value}")
    train_config = dataclasses.replace(train_config, **overrides)
    result = train(model_config, train_config, args.out, world=args.world, resume=args.resume,
                   device=args.device, progress=True, init_from=args.init_from)
    print(f"trained to step {result.step}, last loss {result.last_loss:.4f}; run folder {result.run_dir}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    p = sub.add_parser("eval", help="evaluate a model")
    ev = p.add_subparsers(dest="what", required=True)
    a = ev.add_parser("adherence", help="prompt adherence on held-out prompts, measured from the pixels")
    a.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    a.add_argument("--n", type=int, default=120, help="number of held-out prompts (default 120)")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--guidance", type=float, default=3.0)
    a.add_argument("--seed", type=int, default=1234)
    a.add_argument("--out", default="adherence.json", help="JSON report path")
    a.add_argument("--samples", default=None, help="folder for a contact sheet of the generated videos")
    a.set_defaults(func=cmd_eval_adherence)
    return ev


def cmd_eval_adherence(args: argparse.Namespace) -> int:
    from .evaluate.adherence import evaluate_adherence, heldout_cases
    from .pipeline import Pipeline

    if args.n < 1:
        raise CinecubeError(f"--n must be at least 1, got {args.n}")
    pipe = Pipeline.from_pretrained(args.model)
    cases = heldout_cases(args.n, seed=args.seed)

    def generate(case):
        return pipe(case.prompt, frames=case.frames, height=case.height, width=case.width,
                    steps=args.steps, guidance=args.guidance, seed=case.seed, progress=False).frames

    report = evaluate_adherence(generate, cases, progress=True, samples_dir=args.samples)
    print(report.table())
    out = Path(args.out)
    result = report.to_json()
    result["model"] = {"name": pipe.name, "weights_sha256": pipe.weights_sha256,
                       "steps": args.steps, "guidance": args.guidance}
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint's inference weights as a small model folder")
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--out", required=True, help="model folder to write (config.json + model.safetensors)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .train.checkpoint import load_checkpoint, load_weights_into, save_checkpoint
    from .transformer import DiffusionTransformer

    checkpoint = load_checkpoint(args.model)
    model = DiffusionTransformer(checkpoint.model_config)
    load_weights_into(model, checkpoint.weights, str(checkpoint.path))
    path = save_checkpoint(args.out, checkpoint.model_config, model, train_config=checkpoint.train_config,
                           step=checkpoint.step, dtype=getattr(torch, args.dtype))
    size = (path / "model.safetensors").stat().st_size / 2**20
    print(f"wrote {path} (step {checkpoint.step}, {size:.1f} MiB, {args.dtype})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinecube", description="Sora-style text-to-video.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_train(sub)
    eval_sub = _add_eval(sub)
    _add_export(sub)
    # Each module in cinecube.commands adds its own subcommands through
    # `register(commands, eval_commands)`, so features live beside their code.
    for module_info in sorted(pkgutil.iter_modules(commands_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands_package.__name__}.{module_info.name}")
        module.register(sub, eval_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CinecubeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
