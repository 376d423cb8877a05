"""The training loop: token-budget packed batches, AdamW with warmup, gradient clipping, EMA,
optional bf16 autocast, periodic samples and a loss curve, atomic checkpoints, exact resume.

Randomness is a pure function of (seed, step) (noise, timesteps, caption dropout) and of
(seed, video index) (the data), so the state to resume exactly is the weights, the optimizer
and two integers. An interrupted-then-resumed run ends with the same weights as an
uninterrupted one (a test checks it).

A latent-space model (autoencoder kind other than "pixel") trains on the latents of a trained
autoencoder: `autoencoder=` names its folder, which the run keeps as `autoencoder/` and copies
into every checkpoint. With `latents=` (a cache written by `cinecube data cache-latents`) the
stream reads stored latents instead of rendering and encoding videos every step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..autoencoder import build_autoencoder, frames_to_tensor, tensor_to_frames
from ..config import ModelConfig, TrainConfig
from ..data.batching import SizeMix, TokenBudgetStream
from ..diffusion import Objective
from ..errors import CheckpointError, CinecubeError
from ..patches import pack
from ..pipeline import generate_video, tokens_for_size
from ..text import get_text_encoder
from ..transformer import DiffusionTransformer, deepened_state_dict, refined_model_config, refined_state_dict
from .checkpoint import (AUTOENCODER_DIR, checkpoint_dirs, load_model_autoencoder, load_training_state,
                         load_weights_into, prune_checkpoints, save_checkpoint)

SAMPLE_PROMPTS = (
    "a red circle moving right on a black background",
    "a blue square moving up on a white background",
    "a green triangle moving left on gray",
    "a yellow circle moving down and a purple square, still, on black",
)


class NonFiniteLossError(CinecubeError):
    """Training produced NaN/inf losses several steps in a row."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    run_dir: Path


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast only where bf16 matmuls beat fp32.

    On GPUs that is wherever bf16 exists. On CPUs it depends on more than the flags: with
    AMX tiles or AMD Zen 4's bf16 dot products a bf16 matmul ran 2.8x as fast as fp32 here, on a
    Xeon with avx512_bf16 but no AMX at 0.51x (an earlier benchmark run). So it is measured,
    once per process (~0.1 s).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bf16_matmul_speedup() >= 1.25


@functools.lru_cache(maxsize=1)
def bf16_matmul_speedup(size: int = 768) -> float:
    """How many times faster a (size x size) @ (size x size) matmul runs in bf16 than in fp32 on
    this CPU (best of 4 each, interleaved); 0 where bf16 matmuls are not available."""
    try:
        a32, b32 = torch.randn(size, size), torch.randn(size, size)
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        best = {torch.float32: math.inf, torch.bfloat16: math.inf}
        for _ in range(4):
            for dtype, (a, b) in ((torch.float32, (a32, b32)), (torch.bfloat16, (a16, b16))):
                started = time.perf_counter()
                torch.mm(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    except RuntimeError:
        return 0.0
    return best[torch.float32] / best[torch.bfloat16]


WORLDS = ("shapes", "fashion", "pans", "mix")


def make_world(name: str, train: TrainConfig, seed: int):
    """The training world by name (see data/corpus.py) and the sizes drawn from it."""
    if name not in WORLDS:
        raise CinecubeError(f"unknown world {name!r}; allowed: {', '.join(WORLDS)}")
    from ..data.shapes import TRAIN_CANVASES, TRAIN_FRAME_COUNTS, ShapesWorld, WorldConfig

    canvases = train.world_canvases or TRAIN_CANVASES
    frame_counts = train.world_frame_counts or tuple(f for f in TRAIN_FRAME_COUNTS if f <= train.world_max_frames)
    if name != "shapes":
        from ..data.corpus import make_world as make_footage_world

        return make_footage_world(name, "train", seed), SizeMix(canvases, frame_counts)
    world = ShapesWorld(WorldConfig(canvases=canvases, frame_counts=frame_counts), seed=seed)
    return world, SizeMix(canvases, frame_counts)


def fit_mix(mix: SizeMix, model_config: ModelConfig, train: TrainConfig) -> SizeMix:
    """The sizes of a mix that a compressing autoencoder and the patch size can take.

    Canvases must be whole latent patches (multiples of spatial_factor * patch); frame counts
    must fit the causal layout 1 + tf*k, and when the mix has fewer than two of those, the
    layout's own counts up to world_max_frames are used instead. The pixel autoencoder takes
    every size, so its mix is returned unchanged.
    """
    ae = model_config.autoencoder
    if ae.kind == "pixel":
        return mix
    tf, s = ae.temporal_factor, ae.spatial_factor
    _, ph, pw = model_config.patch_size
    canvases = tuple((h, w) for h, w in mix.canvases if h % (s * ph) == 0 and w % (s * pw) == 0)
    if not canvases:
        raise CinecubeError(f"no training canvas is a multiple of {s * ph}x{s * pw} pixels (autoencoder "
                            f"{s}x plus patch {ph}x{pw}); canvases: {list(mix.canvases)}")
    frame_counts = tuple(f for f in mix.frame_counts if (f - 1) % tf == 0)
    if len(frame_counts) < 2:
        frame_counts = tuple(range(1, max(train.world_max_frames, 1 + tf) + 1, tf))
    return SizeMix(canvases, frame_counts)


def learning_rate(step: int, train: TrainConfig) -> float:
    """Linear warmup, then constant (EMA weights do the averaging; runs can be extended), and
    with `cooldown_steps` a linear decay to zero over the last that many of `steps`
    (warmup-stable-decay: a constant-rate run can be cooled down from any checkpoint).

    Any config with `lr` and `warmup_steps` works (the autoencoder's training uses it too)."""
    rate = train.lr * min(1.0, (step + 1) / max(1, train.warmup_steps))
    cooldown = getattr(train, "cooldown_steps", 0)
    if cooldown > 0:
        rate *= min(1.0, (train.steps - step) / cooldown)
    return rate


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    # Warm the decay up so early EMA weights are not dominated by the random initialisation.
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - d)


def train(model_config: ModelConfig, train_config: TrainConfig, run_dir: str | Path, *,
          world: str = "shapes", resume: bool = False, device: str | None = None,
          progress: bool = True, stop_after: int | None = None,
          init_from: str | Path | None = None, autoencoder: str | Path | None = None,
          latents: str | Path | None = None) -> TrainResult:
    """Train (or resume) a run in `run_dir`. `stop_after` ends early at that step (for tests).

    `init_from` starts a new run from another model's weights (a checkpoint, run or exported
    folder with the same architecture, a shallower one: see `deepened_state_dict`, or one with
    coarser cubes: see `refined_state_dict`) with a fresh optimizer: fine-tuning, continuing a
    model whose optimizer state was not kept, growing a trained model deeper or refining its cubes.
    The new run's config takes the source's rotary scale and shift base (`refined_model_config`).

    `autoencoder` is a trained autoencoder folder (or run) whose config equals
    `model_config.autoencoder`; the run stores it as `autoencoder/`, and a resumed run reads
    it from there. `latents` is a latent cache folder made with that autoencoder: the stream
    then reads its latents (and `world` is not used).
    """
    run_dir = Path(run_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = checkpoint_dirs(run_dir)
    if existing and not resume:
        raise CinecubeError(f"run folder '{run_dir}' already has checkpoints; pass --resume to continue "
                            "it or choose another --out")
    # Where a resumed run's weights started (run.json), kept across resumes.
    recorded_init = (json.loads((run_dir / "run.json").read_text()).get("init_from")
                     if existing and (run_dir / "run.json").exists() else None)
    if existing and init_from is not None:
        # A resumed run continues its own weights; --init-from could only apply to a new run.
        if recorded_init != str(Path(init_from).resolve()):
            raise CinecubeError(f"run folder '{run_dir}' already has checkpoints (started from "
                                f"{recorded_init or 'scratch'}); --resume continues those weights, so "
                                f"--init-from '{init_from}' cannot apply: drop it or choose another --out")

    source = None
    if init_from is not None and not existing:
        from .checkpoint import load_checkpoint

        source = load_checkpoint(init_from)
        source_shape, target_shape = source.model_config.transformer, model_config.transformer
        same_but_depth = dataclasses.replace(source_shape, depth=target_shape.depth,
                                             rope_scale=target_shape.rope_scale) == target_shape
        if not same_but_depth:
            raise CheckpointError(f"cannot start from '{source.path}': its transformer differs from the "
                                  "requested preset (only the depth may grow and the cubes be refined)")
        if source_shape.depth > target_shape.depth:
            raise CheckpointError(f"cannot start from '{source.path}': it has {source_shape.depth} blocks "
                                  f"and the new model {target_shape.depth}; the depth may only grow")
        # Rotary scale and shift base follow the source's (scaled when the cubes are finer), so
        # the new run sees its videos as the source did.
        try:
            model_config = refined_model_config(model_config, source.model_config)
        except ValueError as error:
            raise CheckpointError(f"cannot start from '{source.path}': {error}") from None

    torch.manual_seed(train_config.seed)
    model = DiffusionTransformer(model_config).to(dev)
    ema = DiffusionTransformer(model_config).to(dev).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    # fused: one kernel for all parameters (the per-parameter loop was ~10 % of a CPU step).
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, betas=train_config.betas,
                                  weight_decay=train_config.weight_decay, fused=True)
    latent_data = None
    if latents is not None:
        from ..data.latents import LatentDataset

        latent_data = LatentDataset(latents)
    ae_dir = _run_autoencoder(run_dir, model_config, autoencoder, latent_data)
    autoencoder_net = (load_model_autoencoder(run_dir, model_config, dev) if ae_dir is not None
                       else build_autoencoder(model_config.autoencoder).to(dev))
    text_encoder = get_text_encoder(model_config.text_max_tokens)
    objective = Objective(model_config.diffusion)
    if latent_data is not None:
        from ..data.latents import LatentStream

        if latent_data.autoencoder_config != model_config.autoencoder:
            raise CinecubeError(f"latent cache '{latent_data.folder}' was made with another autoencoder than the model's")
        stream = LatentStream(latent_data, model_config.patch_size, train_config.tokens_per_step,
                              train_config.max_tokens_per_video, seed=train_config.seed)
    else:
        world_obj, mix = make_world(world, train_config, train_config.seed)
        mix = fit_mix(mix, model_config, train_config)
        stream = TokenBudgetStream(
            world_obj, mix, lambda f, h, w: tokens_for_size(model_config, autoencoder_net, f, h, w),
            train_config.tokens_per_step, train_config.max_tokens_per_video, seed=train_config.seed)

    step = 0
    if source is not None:
        # A deeper model starts as the source's function: its new blocks pass their input through.
        weights = deepened_state_dict(source.weights, source.model_config.transformer.depth,
                                      model_config.transformer.depth)
        if source.model_config.patch_size != model_config.patch_size:
            weights = refined_state_dict(weights, source.model_config.patch_size, model_config.patch_size,
                                         model_config.latent_channels)
        load_weights_into(model, weights, str(source.path))
        ema.load_state_dict(model.state_dict())
    if existing:
        latest = existing[-1]
        saved = json.loads((latest / "config.json").read_text())
        if ModelConfig.from_dict(saved["model"]) != model_config:
            raise CheckpointError(f"cannot resume '{run_dir}': its model config differs from the requested one")
        raw, optim_state, state = load_training_state(latest)
        load_weights_into(model, raw, str(latest))
        from safetensors.torch import load_file
        load_weights_into(ema, load_file(str(latest / "model.safetensors")), str(latest))
        optimizer.load_state_dict(optim_state)
        stream.load_state_dict(state["stream"])
        step = int(state["step"])
        _truncate_metrics(run_dir / "metrics.jsonl", step)

    run_info = {"model": model_config.to_dict(), "train": train_config.to_dict(), "world": world,
                "parameters": model.num_parameters()}
    if latents is not None:
        run_info["latents"] = [str(f.resolve()) for f in latent_data.folders]
    # Where the weights started, kept across resumes: a second-stage run names its first stage.
    started_from = str(Path(init_from).resolve()) if init_from is not None and not existing else recorded_init
    if started_from:
        run_info["init_from"] = started_from
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=2))
    use_bf16 = train_config.bf16 and bf16_supported(dev)
    # Caption embeddings stored in the latent cache stand in for the text encoder when they
    # were made by the same encoder with the model's token limit.
    stored_text = (latent_data is not None and latent_data.text_encoder_settings
                   == (text_encoder.name, model_config.text_max_tokens))
    if latent_data is not None and not stored_text and progress:
        tqdm.write("the latent cache has no caption embeddings for this model's text encoder; encoding "
                   "captions as they come (rerun `cinecube data cache-latents` to store them)", file=sys.stderr)
    last_stop = train_config.steps if stop_after is None else min(stop_after, train_config.steps)
    bar = tqdm(total=last_stop, initial=step, desc="training", disable=not progress, dynamic_ncols=True)
    metrics = (run_dir / "metrics.jsonl").open("a")
    bad_steps, loss_value, started = 0, float("nan"), time.time()
    tokens_seen = 0
    try:
        while step < last_stop:
            batch = stream.next_batch()
            if stored_text:
                for item in batch:
                    text_encoder.remember(item.caption, item.text)
            loss, n_tokens = _loss_for_batch(model, autoencoder_net, text_encoder, objective, batch,
                                              train_config, step, dev, use_bf16)
            loss_value = loss.item()   # one host sync per step: needed to refuse a bad loss
            if not math.isfinite(loss_value):
                bad_steps += 1
                tqdm.write(f"step {step}: non-finite loss ({loss_value}); step skipped, weights untouched",
                           file=sys.stderr)
                if bad_steps >= 5:
                    raise NonFiniteLossError(f"{bad_steps} non-finite losses in a row at step {step}; "
                                             "lower --lr or check the data")
                continue
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, train_config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            if not torch.isfinite(grad_norm):
                bad_steps += 1
                tqdm.write(f"step {step}: non-finite gradient; step skipped, weights untouched", file=sys.stderr)
                if bad_steps >= 5:
                    raise NonFiniteLossError(f"{bad_steps} non-finite gradients in a row at step {step}")
                continue
            bad_steps = 0
            optimizer.step()
            update_ema(ema, model, step, train_config.ema_decay)
            step += 1
            tokens_seen += n_tokens
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if step % train_config.log_every == 0 or step == last_stop:
                elapsed = time.time() - started
                record = {"step": step, "loss": loss_value, "lr": learning_rate(step - 1, train_config),
                          "grad_norm": float(grad_norm), "videos": len(batch), "tokens": n_tokens,
                          "tokens_per_s": tokens_seen / max(elapsed, 1e-9), "time": time.time()}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if step % train_config.checkpoint_every == 0 or step == last_stop:
                save_checkpoint(run_dir / "checkpoints" / f"step_{step:07d}", model_config, ema,
                                train_config=train_config, step=step, raw_model=model, optimizer=optimizer,
                                state={"step": step, "stream": stream.state_dict()}, autoencoder_dir=ae_dir)
                prune_checkpoints(run_dir, train_config.keep_checkpoints)
            if step % train_config.sample_every == 0 or step == last_stop:
                write_samples(ema, autoencoder_net, text_encoder, run_dir / "samples" / f"step_{step:07d}.mp4")
                plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss.png")
    finally:
        metrics.close()
        bar.close()
    return TrainResult(step, loss_value, run_dir)


def _run_autoencoder(run_dir: Path, model_config: ModelConfig, given: str | Path | None,
                     latent_data) -> Path | None:
    """The run's `autoencoder/` folder (written from `given` or the latent cache's on first use);
    None for the pixel autoencoder."""
    from ..autoencoder import load_autoencoder, save_autoencoder

    stored = run_dir / AUTOENCODER_DIR
    if model_config.autoencoder.kind == "pixel":
        if given is not None:
            raise CinecubeError("an autoencoder was given but the model config's autoencoder kind is 'pixel'")
        return None
    source = given if given is not None else (latent_data.autoencoder_dir if latent_data is not None else None)
    if (stored / "config.json").is_file():
        if source is not None:
            own, other = load_autoencoder(stored), load_autoencoder(source)
            if not _same_weights(own, other):
                raise CheckpointError(f"run '{run_dir}' already trains on another autoencoder than '{source}'")
        return stored
    if source is None:
        raise CinecubeError(f"the model works in the latents of a {model_config.autoencoder.kind} autoencoder: "
                            "pass --autoencoder PATH (a trained autoencoder folder or run)")
    network = load_autoencoder(source)
    if network.config != model_config.autoencoder:
        raise CinecubeError(f"autoencoder '{source}' differs from the model config's autoencoder")
    save_autoencoder(stored, network)
    return stored


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def _loss_for_batch(model, autoencoder, text_encoder, objective: Objective, batch, train: TrainConfig,
                    step: int, device: torch.device, use_bf16: bool) -> tuple[Tensor, int]:
    """Pack a list of captioned videos and return the mean loss over their tokens."""
    cfg = model.config
    generator = torch.Generator().manual_seed(train.seed * 1_000_003 + step)
    rng = np.random.default_rng([train.seed, step, 11])
    with torch.no_grad():
        # Cached latents (data/latents.py) come encoded; rendered videos are encoded here.
        latents = [item.latent.to(device) if hasattr(item, "latent")
                   else autoencoder.encode(frames_to_tensor(item.video).to(device)) for item in batch]
        packed = pack(latents, cfg.patch_size)
        # Caption dropout: the empty prompt is the unconditional input for guidance.
        captions = [("" if rng.random() < train.caption_dropout else item.caption) for item in batch]
        text, text_mask = text_encoder.encode(captions)
        text, text_mask = text.to(device), text_mask.to(device)

    lengths = torch.tensor(packed.lengths)
    t_video = objective.sample_timesteps(lengths, generator)                    # (S,)
    t = t_video.repeat_interleave(lengths)[:, None].to(device)                  # (N, 1)
    x0 = packed.tokens
    noise = torch.randn(x0.shape, generator=generator).to(device)
    x_t = objective.noisy(x0, noise, t)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        output = model(x_t, packed.positions, packed.segment_ids, t[:, 0], text, text_mask)
    loss = objective.loss(output.float(), x0, noise, x_t, t).mean()
    return loss, int(x0.shape[0])


@torch.no_grad()
def write_samples(model, autoencoder, text_encoder, path: Path, height: int = 32, width: int = 32,
                  frames: int = 16, steps: int = 20) -> None:
    """A side-by-side video of the sample prompts, to watch a run learn."""
    from ..video_io import write_video

    frames = autoencoder.pixel_frames(autoencoder.latent_frames(frames))   # the causal layout's count
    was_training = model.training
    model.eval()
    videos = [tensor_to_frames(generate_video(model, autoencoder, text_encoder, prompt, frames, height,
                                              width, steps=steps, guidance=3.0, seed=i))
              for i, prompt in enumerate(SAMPLE_PROMPTS)]
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    gap = np.full((frames, height, 2, 3), 255, dtype=np.uint8)
    row = np.concatenate([x for v in videos for x in (v, gap)][:-1], axis=2)
    # Upscale 4x so the small samples are watchable.
    write_video(path, row.repeat(4, axis=1).repeat(4, axis=2), fps=8)
    (path.with_suffix(".txt")).write_text("\n".join(SAMPLE_PROMPTS) + "\n")


def plot_loss_curve(metrics_file: Path, out_png: Path, ylabel: str = "velocity MSE") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    losses = np.array([r["loss"] for r in records])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, alpha=0.35, label="loss")
    if len(losses) >= 10:
        k = max(5, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_png)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines past the checkpoint so the curve has no duplicated steps."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
