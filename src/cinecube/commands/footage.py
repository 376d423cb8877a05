"""Real-footage commands.

cinecube data build --world shapes|fashion|pans|mix --n N --out DIR [--seed --min-size --max-size --frames]
cinecube data inspect DIR
cinecube reconstruct IN -o OUT [--autoencoder PATH | --model M] [--max-frames N]
cinecube eval autoencoder [--autoencoder PATH | --model M] [--clips a,b] [--max-frames 33]
                          [--max-side N] [--out ae.json] [--images DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from ..errors import CinecubeError
from . import arguments as arg
from .generate import add_safety_arguments, safety_settings_from


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="build or inspect a folder of captioned training clips")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    build = data_sub.add_parser("build", help="write N clips of a world as mp4 + captions.jsonl")
    build.add_argument("--world", choices=["shapes", "fashion", "pans", "mix"], default="mix")
    build.add_argument("--n", type=int, required=True, help="number of clips")
    arg.add_output(build, "--out", kind="folder", required=True, help="folder to create (new or empty)")
    arg.add_force(build, "a corpus built at --out before")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--split",
        choices=["train", "eval"],
        default="train",
        help="eval: Fashion-MNIST test images and held-out photos",
    )
    build.add_argument("--min-size", type=int, default=64, help="smallest side in pixels (multiple of 8)")
    build.add_argument("--max-size", type=int, default=128, help="largest side in pixels")
    build.add_argument("--frames", type=int, default=33, help="frames per clip (default 33, 8 fps)")
    build.set_defaults(func=cmd_data_build)

    inspect = data_sub.add_parser("inspect", help="counts, sizes, durations and skipped files of a clip folder")
    inspect.add_argument("folder")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(func=cmd_data_inspect)
    from .autoencoder_training import add_cache_latents_parser

    add_cache_latents_parser(data_sub)

    rec = commands.add_parser("reconstruct", help="encode and decode a video with the autoencoder")
    rec.add_argument("input", help="video or image (mp4, avi, gif, png, ...)")
    arg.add_output(rec, "-o", "--output", kind="file", required=True, help="output .mp4, .gif or (one frame) .png")
    arg.add_force(rec)
    _autoencoder_arguments(rec)
    rec.add_argument("--max-frames", type=arg.positive_int, default=None, help="only the first N frames (default: all)")
    add_safety_arguments(rec, reconstruction=True)
    rec.set_defaults(func=cmd_reconstruct)

    ev = eval_commands.add_parser("autoencoder", help="PSNR/SSIM of the autoencoder on the held-out real clips")
    _autoencoder_arguments(ev)
    ev.add_argument("--clips", default=None, help="comma-separated clip names (default: all held-out clips)")
    ev.add_argument("--max-frames", type=int, default=33)
    ev.add_argument("--max-side", type=int, default=None, help="shrink clips so the longer side is at most this")
    arg.add_output(ev, "--out", kind="file", default="autoencoder.json", help="JSON report path")
    arg.add_output(
        ev, "--images", kind="folder", default=None, help="folder for side-by-side PNGs (original | reconstruction)"
    )
    arg.add_force(ev, "the report and images")
    ev.set_defaults(func=cmd_eval_autoencoder)


def _autoencoder_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--autoencoder", default=None, help="autoencoder checkpoint folder (save_autoencoder) or autoencoder run folder"
    )
    group.add_argument(
        "--model",
        default=None,
        help="use this model's autoencoder (default: the bundled model's, or the bundled "
        "autoencoder when that model works on pixels)",
    )


def load_command_autoencoder(autoencoder: str | None, model: str | None):
    """(autoencoder, one-line description). A pixel autoencoder is the identity map.

    With neither given: the bundled model's autoencoder (weights/default/autoencoder)."""
    from ..autoencoder import PixelAutoencoder, load_autoencoder, load_model_autoencoder
    from ..model_folder import load_model_folder

    if autoencoder is not None:
        ae = load_autoencoder(autoencoder)
        return ae, f"causal3d autoencoder from {autoencoder}"
    if model is None:
        from ..pipeline import default_model_dir

        model_path, label = default_model_dir(), "the bundled model"
    else:
        model_path, label = Path(model), model
    checkpoint = load_model_folder(model_path)
    config = checkpoint.model_config.autoencoder
    if config.kind == "pixel":
        return PixelAutoencoder(config), f"{label} uses the pixel autoencoder: the identity (no compression)"
    return (load_model_autoencoder(checkpoint.path, checkpoint.model_config), f"{config.kind} autoencoder of {label}")


def cmd_data_build(args: argparse.Namespace) -> int:
    from ..data.corpus import build_corpus

    manifest = build_corpus(
        args.out,
        args.world,
        args.n,
        seed=args.seed,
        split=args.split,
        min_size=args.min_size,
        max_size=args.max_size,
        frames=args.frames,
        progress=True,  # shown in logs too, like `train`
        force=args.force,
    )
    worlds = ", ".join(f"{k} {v}" for k, v in manifest["worlds"].items())
    print(
        f"wrote {args.n} clips to {args.out} ({worlds}) in {manifest['seconds']:.1f} s "
        f"({manifest['clips_per_second']} clips/s)"
    )
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from ..data.corpus import inspect_corpus

    summary = inspect_corpus(args.folder)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['folder']}: {summary['videos']} readable captioned videos, "
        f"{summary['total_seconds']:.1f} s in all ({summary['mean_seconds']:.2f} s each on average)"
    )
    if summary["videos"]:
        print(
            f"  heights {summary['height_range'][0]}-{summary['height_range'][1]}, "
            f"widths {summary['width_range'][0]}-{summary['width_range'][1]}; "
            f"common sizes (WxH): {', '.join(f'{k} x{v}' for k, v in summary['common_sizes'].items())}"
        )
        print(f"  worlds: {', '.join(f'{k} {v}' for k, v in summary['worlds'].items())}")
    skipped = summary["skipped"]
    print(f"  skipped: {', '.join(f'{k} {v}' for k, v in skipped.items()) if skipped else 'none'}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Round-trip a video through the autoencoder. The output is made by cinecube's network, so
    it goes through the output gate like a generated video (watermark, signed manifest, audit
    record): a reconstruction cannot carry a cinecube video away from its provenance. Frame
    review is off by default, since the frames are the user's own footage, not generated."""
    from ..data.folder import read_frames
    from ..evaluate.autoencoder import pad_to_grid, psnr, round_trip
    from ..pipeline import check_output_path
    from ..safety.guard import check_settings, publish
    from ..video_io import IMAGE_SUFFIXES, read_video, video_info

    info = video_info(args.input)  # fails early on an unreadable input
    frames_wanted = info["frames"] if args.max_frames is None else min(info["frames"], args.max_frames)
    check_output_path(args.output, frames_wanted, force=args.force, argument="-o")
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise CinecubeError(f"-o '{args.output}' is the input; write the reconstruction beside it")
    safety = safety_settings_from(args)
    check_settings(safety)
    autoencoder, description = load_command_autoencoder(args.autoencoder, args.model)
    started = time.time()
    if Path(args.input).suffix.lower() in IMAGE_SUFFIXES:
        frames, fps = read_video(args.input)
    else:
        # Only the frames wanted are decoded; [:H, :W] drops the even-size padding of odd-sized
        # mp4s written by cinecube (video_info reports their true size).
        frames = read_frames(args.input, None, args.max_frames)[:, : info["height"], : info["width"]]
        fps = info["fps"]
    frames = frames[: args.max_frames] if args.max_frames else frames
    t, h, w = frames.shape[:3]
    check_output_path(args.output, t, force=args.force, argument="-o")
    padded = pad_to_grid(frames, autoencoder)
    reconstruction = round_trip(autoencoder, padded)[:t, :h, :w]
    result = publish(
        reconstruction,
        args.output,
        prompt="",
        seed=0,
        fps=fps,
        model_name=f"autoencoder: {description}",
        checkpoint_sha256=_weights_sha256(autoencoder),
        generation={"source": "reconstruction", "input": Path(args.input).name},
        settings=safety,
        prompt_stage={"stage": "prompt_policy", "decision": "not applicable: no prompt"},
    )
    print(f"{description}")
    print(
        f"wrote {result.path} ({t} frames, {w}x{h}, {fps:g} fps; PSNR {psnr(frames, reconstruction):.2f} dB; "
        f"{time.time() - started:.1f} s)"
    )
    if result.watermark_payload:
        print(f"  watermark payload {result.watermark_payload}; output sha256 {result.output_sha256[:16]}...")
    return 0


def _weights_sha256(module) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cmd_eval_autoencoder(args: argparse.Namespace) -> int:
    from ..data.assets import real_clip_paths
    from ..evaluate.autoencoder import evaluate_autoencoder
    from ..outputs import check_output_file, check_output_folder, staged_folder, write_json

    names = [n.strip() for n in args.clips.split(",") if n.strip()] if args.clips else None
    clips = real_clip_paths(names)
    out = check_output_file(args.out, "--out", suffixes=(".json",), force=args.force)
    images = None
    if args.images is not None:
        images = check_output_folder(
            args.images,
            "--images",
            kind="set of comparison images",
            is_ours=lambda p: all(e.suffix == ".png" for e in p.iterdir()),
            force=args.force,
        )
    autoencoder, description = load_command_autoencoder(args.autoencoder, args.model)
    print(description)
    # The images are written into a staged folder that is published with the report.
    with staged_folder(images) if images is not None else contextlib.nullcontext() as staged:
        report = evaluate_autoencoder(
            autoencoder,
            clips,
            max_frames=args.max_frames,
            out_dir=staged,
            max_side=args.max_side,
            progress=print,
        )
        if images is not None:  # the report names the images where they will be
            for row in report["clips"]:
                if "image" in row:
                    row["image"] = str(images / Path(row["image"]).name)
        report["autoencoder"] = args.autoencoder or args.model or "bundled model"
        report["description"] = description
        print(
            f"mean PSNR {report['mean_psnr']:.2f} dB, mean SSIM {report['mean_ssim']:.4f} over "
            f"{len(report['clips'])} clips at {report['compression']} compression ({report['seconds']:.1f} s)"
        )
        write_json(out, report)
    print(f"wrote {out}")
    return 0
