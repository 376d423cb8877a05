"""`cinecube train`: train (or resume, or start from another model) a diffusion transformer.

cinecube train --preset tiny --world shapes --steps N --out runs/NAME [--resume]
cinecube train --preset small --latents CACHE --init-from MODEL --out runs/NAME
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import CinecubeError
from ..model_folder import load_model_folder
from . import arguments as arg

MAX_DEPTH = 64  # transformer blocks `train --depth` accepts


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    from ..config import PRESETS

    p = commands.add_parser("train", help="train a model on a world")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--world", default="shapes", help="shapes, fashion, pans or mix")
    p.add_argument(
        "--autoencoder",
        default=None,
        help="train in the latent space of this trained autoencoder (folder or run); the run keeps a copy",
    )
    p.add_argument(
        "--latents",
        default=None,
        help="read cached latents (`cinecube data cache-latents`) instead of rendering and encoding; "
        "several caches of one autoencoder, comma-separated, are read as one",
    )
    p.add_argument(
        "--patch-size",
        default=None,
        help="spacetime patch T,H,W in latent cells (default: the preset's; 1,2,2 with an autoencoder); "
        "with --init-from a model of coarser cubes that these divide, the model is refined: "
        "it keeps what it learned and sees each video in more, smaller cubes",
    )
    p.add_argument("--steps", type=arg.positive_int, default=None, help="total steps (default: the preset's)")
    arg.add_output(
        p,
        "--out",
        kind="folder",
        required=True,
        help="run folder (checkpoints, samples, loss curve): new or empty, or a run to --resume",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument(
        "--init-from",
        default=None,
        help="start a new run from this model's weights (same architecture, fewer blocks: "
        "see --depth, or coarser cubes: see --patch-size), fresh optimizer",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=None,
        help="transformer blocks (default: the preset's); with --init-from a shallower model, "
        "the model grows: the extra blocks start as the identity",
    )
    p.add_argument("--tokens-per-step", type=arg.positive_int, default=None)
    p.add_argument("--lr", type=arg.positive_float, default=None)
    p.add_argument(
        "--cooldown-steps",
        type=int,
        default=None,
        help="decay the learning rate linearly to 0 over the last this many of --steps "
        "(default 0: constant after warm-up); works on --resume too",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast where bf16 matmuls measure faster than fp32 (base and large ask for it already)",
    )
    p.add_argument("--seed", type=arg.seed, default=None)
    p.add_argument("--checkpoint-every", type=arg.positive_int, default=None)
    p.add_argument("--sample-every", type=arg.positive_int, default=None)
    p.add_argument("--log-every", type=arg.positive_int, default=None, help="steps between metrics records")
    p.add_argument("--device", type=arg.device, default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument(
        "--parallel",
        choices=["none", "ddp"],
        default="none",
        help="ddp: train as one of the processes of `torchrun --nproc_per_node N -m cinecube train ...` "
        "(each draws its share of every global batch; see docs/training.md)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:

    from ..config import PRESETS, TRAIN_PRESETS
    from ..train.checkpoint import find_resume_point, run_folder_state
    from ..train.loop import RESUME_STATE, train

    out = Path(args.out)
    state = run_folder_state(out)
    if state == "other":
        kind = "a file" if out.exists() and not out.is_dir() else "a folder that holds no training run"
        raise CinecubeError(f"--out '{out}' is {kind}; give a new or empty folder, or a run folder to --resume")
    if args.resume and state != "run":
        raise CinecubeError(f"--resume: '{out}' holds no run to continue; drop --resume to start one there")
    model_config = PRESETS[args.preset]
    train_config = TRAIN_PRESETS[args.preset]
    if args.depth is not None:
        if not 1 <= args.depth <= MAX_DEPTH:
            raise CinecubeError(f"--depth must be 1..{MAX_DEPTH}, got {args.depth}")
        model_config = dataclasses.replace(
            model_config, transformer=dataclasses.replace(model_config.transformer, depth=args.depth)
        )
    resume_from = None
    if args.resume:
        # A resumed run keeps the configs of the checkpoint it continues; only the step count
        # and the intervals may change. Damaged newer checkpoints are set aside with a warning.
        # (train() sets damaged ones aside, once, with a warning; here the configs are only read.)
        resume_from = find_resume_point(out, RESUME_STATE, move_aside=False)
        model_config = resume_from.model_config
        stored = load_model_folder(resume_from.path)
        train_config = stored.train_config or train_config
        if args.depth is not None and args.depth != model_config.transformer.depth:
            raise CinecubeError(
                f"--depth {args.depth} cannot apply to '{args.out}': the run has "
                f"{model_config.transformer.depth} blocks; drop --depth or choose another --out"
            )
    overrides = {
        "steps": args.steps,
        "tokens_per_step": args.tokens_per_step,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "sample_every": args.sample_every,
        "log_every": args.log_every,
        "cooldown_steps": args.cooldown_steps,
    }
    if args.bf16:
        overrides["bf16"] = True
    train_config = dataclasses.replace(train_config, **{k: v for k, v in overrides.items() if v is not None})
    if args.latents is not None:
        args.latents = [part for part in args.latents.split(",") if part]
    if resume_from is None:
        model_config = _latent_space_config(
            model_config, args.autoencoder, args.latents, args.patch_size, args.init_from
        )
    result = train(
        model_config,
        train_config,
        out,
        world=args.world,
        resume=args.resume,
        device=args.device,
        parallel=args.parallel,
        progress=True,
        init_from=args.init_from,
        autoencoder=args.autoencoder,
        latents=args.latents,
    )
    if result.main:
        print(f"trained to step {result.step}, last loss {result.last_loss:.4f}; run folder {result.run_dir}")
    return 0


def _latent_space_config(
    model_config, autoencoder: str | None, latents: str | None, patch_size: str | None, init_from: str | None = None
):
    """The model config with the autoencoder of --autoencoder (or of the --latents cache) and
    its latent channels; the patch defaults to that of the --init-from model, or else to 1x2x2
    latent cells in latent space."""
    from ..data.latents import LatentDataset
    from ..model_folder import load_model_folder

    if autoencoder is not None:
        ae_config = load_model_folder(autoencoder).model_config.autoencoder
        if ae_config.kind == "pixel":
            raise CinecubeError(f"--autoencoder '{autoencoder}' holds no trained autoencoder")
    elif latents is not None:
        ae_config = LatentDataset(latents).autoencoder_config
    else:
        ae_config = None
    if ae_config is not None:
        model_config = dataclasses.replace(model_config, autoencoder=ae_config, patch_size=(1, 2, 2))
    if init_from is not None and patch_size is None:
        model_config = dataclasses.replace(
            model_config, patch_size=load_model_folder(init_from).model_config.patch_size
        )
    if patch_size is not None:
        try:
            patch = tuple(int(x) for x in patch_size.split(","))
        except ValueError:
            patch = ()
        if len(patch) != 3 or min(patch) < 1:
            raise CinecubeError(f"--patch-size {patch_size!r} must be three positive integers T,H,W, e.g. 1,2,2")
        model_config = dataclasses.replace(model_config, patch_size=patch)
    return model_config
