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

MAX_DEPTH = 64   # transformer blocks `train --depth` accepts


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
    add_safety_arguments(p)
    p.set_defaults(func=cmd_generate)


def add_safety_arguments(p: argparse.ArgumentParser) -> None:
    """Every command that writes generated media takes the same safety switches."""
    g = p.add_argument_group("safety and provenance (all stages on by default)")
    g.add_argument("--frame-action", choices=["block", "blur"], default="block",
                   help="what frame review does when it finds a face (default: block the output)")
    g.add_argument("--signing-key", default=None, help="an organisation's PKCS#8 signing key (PEM)")
    g.add_argument("--signing-chain", default=None, help="its certificate chain (PEM, leaf first)")
    g.add_argument("--audit-log", default=None, help="audit log file (default: <config dir>/audit.jsonl)")
    for stage in ("prompt-policy", "frame-review", "watermark", "c2pa", "audit"):
        g.add_argument(f"--unsafe-skip-{stage}", action="store_true",
                       help=f"research only: skip the {stage.replace('-', ' ')} stage")


def safety_settings_from(args: argparse.Namespace):
    from .safety.guard import SafetySettings

    return SafetySettings(prompt_policy=not args.unsafe_skip_prompt_policy,
                          frame_review=not args.unsafe_skip_frame_review, frame_action=args.frame_action,
                          watermark=not args.unsafe_skip_watermark, c2pa=not args.unsafe_skip_c2pa,
                          audit=not args.unsafe_skip_audit, audit_path=args.audit_log,
                          signing_key=args.signing_key, signing_chain=args.signing_chain)


def cmd_generate(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline, check_output_path

    check_output_path(args.output, args.frames)   # fail before any work is done
    safety = safety_settings_from(args)
    started = time.time()
    pipe = Pipeline.from_pretrained(args.model, safety=safety)
    video = pipe(args.prompt, frames=args.frames, height=args.height, width=args.width,
                 steps=args.steps, guidance=args.guidance, seed=args.seed, sampler=args.sampler,
                 progress=sys.stderr.isatty())
    video.fps = args.fps
    path = video.save(args.output)
    result = video.published
    print(f"wrote {path} ({args.frames} frames, {args.width}x{args.height}, "
          f"{time.time() - started:.1f} s)")
    if result.watermark_payload:
        print(f"  watermark payload {result.watermark_payload}; output sha256 {result.output_sha256[:16]}...")
    if result.skipped:
        print(f"  WARNING: safety stages skipped on request: {', '.join(result.skipped)}", file=sys.stderr)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import PRESETS

    p = sub.add_parser("train", help="train a model on a world")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--world", default="shapes", help="shapes, fashion, pans or mix")
    p.add_argument("--autoencoder", default=None,
                   help="train in the latent space of this trained autoencoder (folder or run); the run keeps a copy")
    p.add_argument("--latents", default=None,
                   help="read cached latents (`cinecube data cache-latents`) instead of rendering and encoding; "
                        "several caches of one autoencoder, comma-separated, are read as one")
    p.add_argument("--patch-size", default=None,
                   help="spacetime patch T,H,W in latent cells (default: the preset's; 1,2,2 with an autoencoder); "
                        "with --init-from a model of coarser cubes that these divide, the model is refined: "
                        "it keeps what it learned and sees each video in more, smaller cubes")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the preset's)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, samples, loss curve)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--init-from", default=None,
                   help="start a new run from this model's weights (same architecture, fewer blocks: "
                        "see --depth, or coarser cubes: see --patch-size), fresh optimizer")
    p.add_argument("--depth", type=int, default=None,
                   help="transformer blocks (default: the preset's); with --init-from a shallower model, "
                        "the model grows: the extra blocks start as the identity")
    p.add_argument("--tokens-per-step", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--cooldown-steps", type=int, default=None,
                   help="decay the learning rate linearly to 0 over the last this many of --steps "
                        "(default 0: constant after warm-up); works on --resume too")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast where bf16 matmuls measure faster than fp32 (base and large ask "
                        "for it already)")
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
    if args.depth is not None:
        if not 1 <= args.depth <= MAX_DEPTH:
            raise CinecubeError(f"--depth must be 1..{MAX_DEPTH}, got {args.depth}")
        model_config = dataclasses.replace(
            model_config, transformer=dataclasses.replace(model_config.transformer, depth=args.depth))
    run_json = Path(args.out) / "run.json"
    if args.resume and checkpoint_dirs(args.out) and run_json.exists():
        # A resumed run keeps its own configs; only the step count may be extended.
        saved = json.loads(run_json.read_text())
        train_config = TrainConfig.from_dict(saved["train"])
        from .config import ModelConfig
        model_config = ModelConfig.from_dict(saved["model"])
        if args.depth is not None and args.depth != model_config.transformer.depth:
            raise CinecubeError(f"--depth {args.depth} cannot apply to '{args.out}': the run has "
                                f"{model_config.transformer.depth} blocks; drop --depth or choose another --out")
    overrides = {"steps": args.steps, "tokens_per_step": args.tokens_per_step, "lr": args.lr,
                 "seed": args.seed, "checkpoint_every": args.checkpoint_every,
                 "sample_every": args.sample_every, "cooldown_steps": args.cooldown_steps}
    if args.bf16:
        overrides["bf16"] = True
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if key in ("seed", "bf16", "cooldown_steps"):
            continue
        if value <= 0:
            raise CinecubeError(f"--{key.replace('_', '-')} must be positive, got {value}")
    train_config = dataclasses.replace(train_config, **overrides)
    if not 0 <= train_config.cooldown_steps <= train_config.steps:
        raise CinecubeError(f"--cooldown-steps must be 0..{train_config.steps} (the run's steps), "
                            f"got {train_config.cooldown_steps}")
    if args.latents is not None:
        args.latents = [part for part in args.latents.split(",") if part]
    resuming = args.resume and checkpoint_dirs(args.out) and run_json.exists()
    if not resuming:
        model_config = _latent_space_config(model_config, args.autoencoder, args.latents, args.patch_size,
                                            args.init_from)
    result = train(model_config, train_config, args.out, world=args.world, resume=args.resume,
                   device=args.device, progress=True, init_from=args.init_from,
                   autoencoder=args.autoencoder, latents=args.latents)
    print(f"trained to step {result.step}, last loss {result.last_loss:.4f}; run folder {result.run_dir}")
    return 0


def _latent_space_config(model_config, autoencoder: str | None, latents: str | None, patch_size: str | None,
                        init_from: str | None = None):
    """The model config with the autoencoder of --autoencoder (or of the --latents cache) and
    its latent channels; the patch defaults to that of the --init-from model, or else to 1x2x2
    latent cells in latent space."""
    from .data.latents import LatentDataset
    from .train.checkpoint import load_checkpoint

    if autoencoder is not None:
        ae_config = load_checkpoint(autoencoder).model_config.autoencoder
        if ae_config.kind == "pixel":
            raise CinecubeError(f"--autoencoder '{autoencoder}' holds no trained autoencoder")
    elif latents is not None:
        ae_config = LatentDataset(latents).autoencoder_config
    else:
        ae_config = None
    if ae_config is not None:
        model_config = dataclasses.replace(model_config, autoencoder=ae_config, patch_size=(1, 2, 2))
    if init_from is not None and patch_size is None:
        model_config = dataclasses.replace(model_config, patch_size=load_checkpoint(init_from).model_config.patch_size)
    if patch_size is not None:
        try:
            patch = tuple(int(x) for x in patch_size.split(","))
        except ValueError:
            patch = ()
        if len(patch) != 3 or min(patch) < 1:
            raise CinecubeError(f"--patch-size {patch_size!r} must be three positive integers T,H,W, e.g. 1,2,2")
        model_config = dataclasses.replace(model_config, patch_size=patch)
    return model_config


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
    a.add_argument("--grid", type=int, default=None,
                   help="make every case with sides rounded to multiples of this many pixels (a multiple of "
                        "the model's own cell), e.g. 16 to compare a model of 8-px cells with one of 16-px "
                        "cells at the same sizes (default: the model's own cell)")
    a.add_argument("--ceiling", action="store_true",
                   help="score the world's own renders at the model's sizes, passed through the model's "
                        "autoencoder: the most any model in that latent space can reach")
    a.set_defaults(func=cmd_eval_adherence)
    return ev


def cmd_eval_adherence(args: argparse.Namespace) -> int:
    from .evaluate.adherence import evaluate_adherence, heldout_cases
    from .pipeline import Pipeline

    if args.n < 1:
        raise CinecubeError(f"--n must be at least 1, got {args.n}")
    pipe = Pipeline.from_pretrained(args.model)
    if args.grid is not None and (args.grid < 1 or args.grid % pipe.cell_px):
        raise CinecubeError(f"--grid must be a multiple of the model's cell of {pipe.cell_px} px, got {args.grid}")
    grid = args.grid or pipe.cell_px
    cases = heldout_cases(args.n, seed=args.seed)

    def generate(case):
        # A latent-space model may not allow the case's canvas (e.g. 40x40 with 16-px cells):
        # it makes the nearest allowed size (on --grid when given), which is measured as it is.
        frames, height, width = pipe.nearest_allowed(case.frames, case.height, case.width, grid)
        if args.ceiling:
            return autoencoder_round_trip(pipe.autoencoder, case.scene, frames, height, width)
        return pipe(case.prompt, frames=frames, height=height, width=width,
                    steps=args.steps, guidance=args.guidance, seed=case.seed, progress=False).frames

    report = evaluate_adherence(generate, cases, progress=True, samples_dir=args.samples)
    print(report.table())
    out = Path(args.out)
    result = report.to_json()
    result["model"] = {"name": pipe.name, "weights_sha256": pipe.weights_sha256, "grid_px": grid}
    result["model"].update({"ceiling": "ground-truth renders through the model's autoencoder"} if args.ceiling
                           else {"steps": args.steps, "guidance": args.guidance})
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


def autoencoder_round_trip(autoencoder, scene, frames: int, height: int, width: int):
    """The world's render of `scene` at (frames, height, width), encoded and decoded: uint8
    (T, H, W, 3). Frames beyond the autoencoder's causal layout are rendered, then dropped."""
    import dataclasses

    import torch

    from .autoencoder import frames_to_tensor, tensor_to_frames
    from .data.shapes import render

    made = autoencoder.frames_covering(frames)
    video = render(dataclasses.replace(scene, frames=made, height=height, width=width))
    with torch.no_grad():
        decoded = autoencoder.decode(autoencoder.encode(frames_to_tensor(video)))
    return tensor_to_frames(decoded)[:frames]


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint's inference weights as a small model folder")
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--out", required=True, help="model folder to write (config.json + model.safetensors)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .train.checkpoint import (AUTOENCODER_DIR, load_checkpoint, load_model_autoencoder, load_weights_into,
                                   save_checkpoint)
    from .transformer import DiffusionTransformer

    checkpoint = load_checkpoint(args.model)
    model = DiffusionTransformer(checkpoint.model_config)
    load_weights_into(model, checkpoint.weights, str(checkpoint.path))
    # A latent-space model takes its autoencoder along (checked by loading it).
    autoencoder_dir = None
    if checkpoint.model_config.autoencoder.kind != "pixel":
        load_model_autoencoder(checkpoint.path, checkpoint.model_config)
        autoencoder_dir = checkpoint.path / AUTOENCODER_DIR
    path = save_checkpoint(args.out, checkpoint.model_config, model, train_config=checkpoint.train_config,
                           step=checkpoint.step, dtype=getattr(torch, args.dtype), autoencoder_dir=autoencoder_dir)
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
