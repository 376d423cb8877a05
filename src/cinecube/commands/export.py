"""`cinecube export`: a checkpoint's inference weights as a small model folder.

cinecube export CHECKPOINT_OR_RUN --out FOLDER [--dtype bfloat16]
"""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="write a checkpoint's inference weights as a small model folder")
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--out", required=True, help="model folder to write (config.json + model.safetensors)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from ..autoencoder import load_model_autoencoder
    from ..model_folder import AUTOENCODER_DIR, WEIGHTS_FILE, load_model_folder, load_weights_into, save_model_folder
    from ..transformer import DiffusionTransformer

    checkpoint = load_model_folder(args.model)
    model = DiffusionTransformer(checkpoint.model_config)
    load_weights_into(model, checkpoint.weights, str(checkpoint.path))
    # A latent-space model takes its autoencoder along (checked by loading it).
    autoencoder_dir = None
    if checkpoint.model_config.autoencoder.kind != "pixel":
        load_model_autoencoder(checkpoint.path, checkpoint.model_config)
        autoencoder_dir = checkpoint.path / AUTOENCODER_DIR
    path = save_model_folder(
        args.out,
        checkpoint.model_config,
        model,
        train_config=checkpoint.train_config,
        step=checkpoint.step,
        dtype=getattr(torch, args.dtype),
        autoencoder_dir=autoencoder_dir,
    )
    size = (path / WEIGHTS_FILE).stat().st_size / 2**20
    print(f"wrote {path} (step {checkpoint.step}, {size:.1f} MiB, {args.dtype})")
    return 0
