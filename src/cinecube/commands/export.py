"""`cinecube export`: a checkpoint's inference weights as a small model folder.

    cinecube export CHECKPOINT_OR_RUN --out FOLDER [--dtype bfloat16] [--force]

--out must be new or empty; `--force` replaces an earlier export (a folder holding nothing but
a model folder cinecube wrote). A folder that is, or contains, the source is always refused.
"""

from __future__ import annotations

import argparse

from . import arguments as arg


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="write a checkpoint's inference weights as a small model folder")
    p.add_argument("model", help="checkpoint or run folder")
    arg.add_output(
        p, "--out", kind="folder", required=True, help="model folder to write (config.json + model.safetensors)"
    )
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    arg.add_force(p, "an earlier export at --out")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from ..autoencoder import load_model_autoencoder
    from ..model_folder import (
        AUTOENCODER_DIR,
        WEIGHTS_FILE,
        is_model_folder,
        load_model_folder,
        load_weights_into,
        save_model_folder,
    )
    from ..outputs import check_output_folder
    from ..transformer import DiffusionTransformer

    out = check_output_folder(
        args.out, "--out", kind="model folder", is_ours=is_model_folder, force=args.force, sources=[args.model]
    )
    checkpoint = load_model_folder(args.model)
    model = DiffusionTransformer(checkpoint.model_config)
    load_weights_into(model, checkpoint.weights, str(checkpoint.path))
    # A latent-space model takes its autoencoder along (checked by loading it).
    autoencoder_dir = None
    if checkpoint.model_config.autoencoder.kind != "pixel":
        load_model_autoencoder(checkpoint.path, checkpoint.model_config)
        autoencoder_dir = checkpoint.path / AUTOENCODER_DIR
    path = save_model_folder(
        out,
        checkpoint.model_config,
        model,
        train_config=checkpoint.train_config,
        step=checkpoint.step,
        dtype=getattr(torch, args.dtype),
        autoencoder_dir=autoencoder_dir,
        replace=True,  # checked above: absent, empty, or an earlier export with --force
    )
    size = (path / WEIGHTS_FILE).stat().st_size / 2**20
    print(f"wrote {path} (step {checkpoint.step}, {size:.1f} MiB, {args.dtype})")
    return 0
