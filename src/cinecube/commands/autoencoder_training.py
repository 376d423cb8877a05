"""Training the video compression network, and caching its latents.

    cinecube train-autoencoder --preset small --steps N --out runs/vae [--resume]
                               [--corpus DIR | --worlds pans,fashion,shapes]
    cinecube export-autoencoder RUN --out FOLDER [--dtype float32|bfloat16]
    cinecube data cache-latents --autoencoder PATH (--corpus DIR | --world W --n N) --out LATENTS
                                [--shard-size 256] [--max-frames 17]

A run folder holds checkpoints/step_N (resumable exactly), metrics.jsonl, loss.png,
samples/step_N.png (original above, reconstruction below, for a few fixed clips) and
source.json (what it trains on; a resumed run keeps its own).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import CinecubeError
from . import arguments as arg


def parse_canvases(text: str) -> list[tuple[int, int]]:
    """'32x32,48x80' -> [(32, 32), (48, 80)]; a clear error for anything else."""
    canvases = []
    for part in text.split(","):
        try:
            height, width = (int(x) for x in part.strip().lower().split("x"))
        except ValueError:
            height = width = 0
        if height < 1 or width < 1:
            raise CinecubeError(
                f"--canvases: {part.strip()!r} is not HEIGHTxWIDTH with positive sides "
                "(e.g. 48x80); give them comma-separated"
            )
        canvases.append((height, width))
    return canvases


WORLD_CHOICES = ("shapes", "fashion", "pans")
SAMPLE_CLIPS = 3


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    from ..config import AUTOENCODER_PRESETS

    p = commands.add_parser("train-autoencoder", help="train the causal video autoencoder (resumable)")
    p.add_argument("--preset", choices=sorted(AUTOENCODER_PRESETS), default="small")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the preset's)")
    arg.add_output(
        p,
        "--out",
        kind="folder",
        required=True,
        help="run folder (checkpoints, samples, loss curve): new or empty, or a run to --resume",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--corpus", default=None, help="folder of captioned clips (e.g. from `cinecube data build`)")
    source.add_argument("--worlds", default=None, help="comma-separated worlds to mix (default pans,fashion,shapes)")
    p.add_argument("--videos-per-step", type=arg.positive_int, default=None)
    p.add_argument("--lr", type=arg.positive_float, default=None)
    p.add_argument("--seed", type=arg.seed, default=None)
    p.add_argument("--checkpoint-every", type=arg.positive_int, default=None)
    p.add_argument("--device", type=arg.device, default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    p.set_defaults(func=cmd_train_autoencoder)

    e = commands.add_parser("export-autoencoder", help="write an autoencoder run's weights as a small folder")
    e.add_argument("run", help="autoencoder run or checkpoint folder")
    arg.add_output(e, "--out", kind="folder", required=True, help="folder to write (config.json + model.safetensors)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    arg.add_force(e, "an earlier export at --out")
    e.set_defaults(func=cmd_export_autoencoder)


def add_cache_latents_parser(data_sub: argparse._SubParsersAction) -> None:
    """Add `cache-latents` to the `cinecube data` subcommands (commands/footage.py owns `data`
    and calls this when it builds them)."""
    from ..data.latents import CACHE_CANVASES

    c = data_sub.add_parser("cache-latents", help="encode clips once into sharded latent files for training")
    c.add_argument("--autoencoder", required=True, help="trained autoencoder folder or run")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", default=None, help="folder of captioned clips")
    source.add_argument("--world", choices=["shapes", "fashion", "pans", "mix"], default=None)
    c.add_argument("--n", type=int, default=None, help="number of world clips (with --world)")
    arg.add_output(
        c,
        "--out",
        kind="folder",
        required=True,
        help="cache folder, new or empty (rerun the same command to continue it)",
    )
    c.add_argument("--shard-size", type=int, default=256, help="latents per shard file (default 256)")
    c.add_argument("--max-frames", type=int, default=17, help="frames per clip at most (default 17)")
    c.add_argument(
        "--canvases",
        default=None,
        help="world canvases HxW,HxW,... drawn per clip (default: "
        + ",".join(f"{h}x{w}" for h, w in CACHE_CANVASES)
        + ")",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    c.add_argument("--device", default="cpu")
    c.add_argument(
        "--text-max-tokens",
        type=int,
        default=64,
        help="also store the captions' text embeddings, cut to this many tokens: the "
        "model's text_max_tokens (default 64; 0: do not store them)",
    )
    c.add_argument(
        "--object-counts",
        default=None,
        help="weights of 1, 2 and 3 objects a shapes scene, e.g. 0.2,0.4,0.4 for more crowded "
        "scenes (default: the world's 0.6,0.25,0.15)",
    )
    c.set_defaults(func=cmd_cache_latents)


def _source_for(spec: dict, train, canvases=None):
    from ..data.corpus import corpus_source

    if spec.get("corpus"):
        return corpus_source(train, folder=spec["corpus"])
    return corpus_source(train, worlds=tuple(spec["worlds"]), canvases=canvases or None)


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    import sys

    from ..config import AUTOENCODER_PRESETS
    from ..outputs import write_json
    from ..train.autoencoder_loop import AUTOENCODER_TRAIN_PRESETS, AutoencoderTrainConfig, train_autoencoder
    from ..train.checkpoint import find_resume_point, run_folder_state

    out = Path(args.out)
    state = run_folder_state(out)
    if state == "other":
        kind = "a file" if out.exists() and not out.is_dir() else "a folder that holds no training run"
        raise CinecubeError(f"--out '{out}' is {kind}; give a new or empty folder, or a run folder to --resume")
    if args.resume and state != "run":
        raise CinecubeError(f"--resume: '{out}' holds no run to continue; drop --resume to start one there")
    config = AUTOENCODER_PRESETS[args.preset]
    train = AUTOENCODER_TRAIN_PRESETS.get(args.preset, AutoencoderTrainConfig())
    if args.corpus is not None:
        if not Path(args.corpus).is_dir():
            raise CinecubeError(f"--corpus '{args.corpus}' is not a folder")
        spec = {"corpus": str(Path(args.corpus).resolve())}
    else:
        worlds = [w.strip() for w in (args.worlds or "pans,fashion,shapes").split(",") if w.strip()]
        bad = [w for w in worlds if w not in WORLD_CHOICES]
        if bad or not worlds:
            raise CinecubeError(f"--worlds {args.worlds!r}: allowed worlds are {', '.join(WORLD_CHOICES)}")
        spec = {"worlds": worlds}
    resume_from = None
    if args.resume:
        # A resumed run keeps the configs of the checkpoint it continues, and its source; only
        # the step count and intervals may change. Damaged newer checkpoints are set aside.
        resume_from = find_resume_point(out, ("step", "train"), warn=lambda m: print(f"warning: {m}", file=sys.stderr))
        config = resume_from.model_config.autoencoder
        train = AutoencoderTrainConfig.from_dict(resume_from.state["train"])
        try:
            spec = json.loads((out / "source.json").read_text())
        except (OSError, ValueError):
            print(f"warning: {out / 'source.json'} is unreadable; training on the source given now", file=sys.stderr)
    overrides = {
        "steps": args.steps,
        "videos_per_step": args.videos_per_step,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if key == "steps" and value == 0 and not config.networks:
            continue  # zero steps: the closed-form fit of a linear code alone
        if key == "steps" and value <= 0:
            raise CinecubeError(
                f"--steps must be positive, got {value} (0 only for a linear code alone, --preset linear)"
            )
        if key != "seed" and value <= 0:
            raise CinecubeError(f"--{key.replace('_', '-')} must be positive, got {value}")
    train = dataclasses.replace(train, **overrides)
    source = _source_for(spec, train)

    def on_checkpoint(step: int, ema) -> None:
        if not (out / "source.json").is_file():  # with the first checkpoint: what the run trains on
            write_json(out / "source.json", spec)
        write_reconstructions(ema, source, out / "samples" / f"step_{step:07d}.png")
        from ..train.metrics import plot_loss_curve

        if (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size:  # none at step 0
            plot_loss_curve(out / "metrics.jsonl", out / "loss.png", ylabel="L1 + edge + KL loss")

    fit_source = _source_for(spec, train, canvases=train.linear_fit_canvases)
    result = train_autoencoder(
        config,
        train,
        out,
        videos=source,
        fit_videos=fit_source,
        resume=args.resume,
        resume_from=resume_from,
        device=args.device,
        progress=True,
        on_checkpoint=on_checkpoint,
    )
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items())
    print(f"trained to step {result.step} ({losses}); run folder {result.run_dir}")
    return 0


def write_reconstructions(model, source, path: Path) -> None:
    """A PNG: the middle frame of a few fixed clips (those of step 0), originals above,
    reconstructions below."""
    import numpy as np
    import torch

    from ..autoencoder import crop_to_layout, frames_to_tensor, tensor_to_frames
    from ..video_io import write_video

    c = model.config
    clips = [crop_to_layout(v, c.temporal_factor, c.spatial_factor) for v in source(0)][:SAMPLE_CLIPS]
    device = next(model.parameters()).device
    tiles = []
    with torch.no_grad():
        for clip in clips:
            back = tensor_to_frames(model.decode(model.encode(frames_to_tensor(clip).to(device))))
            middle = clip.shape[0] // 2
            tiles.append(np.concatenate([clip[middle], back[middle]], axis=0))  # (2H, W, 3)
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0)), constant_values=255) for t in tiles]
    sheet = np.concatenate(tiles, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, sheet.repeat(2, axis=0).repeat(2, axis=1)[None], fps=1)


def cmd_export_autoencoder(args: argparse.Namespace) -> int:
    import torch

    from ..autoencoder import load_autoencoder, save_autoencoder
    from ..model_folder import is_model_folder
    from ..outputs import check_output_folder

    out = check_output_folder(
        args.out, "--out", kind="model folder", is_ours=is_model_folder, force=args.force, sources=[args.run]
    )
    model = load_autoencoder(args.run)
    path = save_autoencoder(out, model, dtype=getattr(torch, args.dtype), replace=True)
    size = (path / "model.safetensors").stat().st_size / 2**20
    print(f"wrote {path} ({model.num_parameters() / 1e6:.2f} M parameters, {size:.1f} MiB, {args.dtype})")
    return 0


def cmd_cache_latents(args: argparse.Namespace) -> int:
    from ..data.corpus import parse_object_counts
    from ..data.latents import CACHE_CANVASES, cache_latents

    if args.corpus is not None and args.n is not None:
        raise CinecubeError("--n goes with --world; a --corpus folder is encoded whole")
    canvases = CACHE_CANVASES if args.canvases is None else parse_canvases(args.canvases)
    if args.text_max_tokens < 0:
        raise CinecubeError(f"--text-max-tokens must be 0 (no text embeddings) or more, got {args.text_max_tokens}")
    object_counts = None if args.object_counts is None else parse_object_counts(args.object_counts)
    index = cache_latents(
        args.out,
        args.autoencoder,
        corpus=args.corpus,
        world=args.world,
        n=args.n,
        seed=args.seed,
        canvases=canvases,
        max_frames=args.max_frames,
        shard_size=args.shard_size,
        dtype=args.dtype,
        device=args.device,
        progress=True,  # shown in logs too, like `train`
        text_max_tokens=args.text_max_tokens or None,
        object_counts=object_counts,
    )
    seconds = index.get("seconds")
    timing = f" in {seconds:.1f} s" if seconds is not None else " (already complete)"
    print(f"wrote {index['items']} latents in {len(index['shards'])} shards to {args.out}{timing}")
    return 0
