"""Training the causal video autoencoder: L1 + edge + small KL, AdamW, gradient clipping, EMA,
atomic checkpoints and exact resume.

    from cinecube.config import AUTOENCODER_PRESETS
    from cinecube.train.autoencoder_loop import AUTOENCODER_TRAIN_PRESETS, train_autoencoder
    train_autoencoder(AUTOENCODER_PRESETS["small"], AUTOENCODER_TRAIN_PRESETS["small"], "runs/vae")

Videos come from a `VideoSource`: a function step -> that step's videos, uint8 (T, H, W, 3)
arrays of any sizes (one forward pass per video, gradients accumulated over the step). The
default source draws from the shapes world; real footage plugs in as another function. A
source must be a pure function of the step, and posterior noise is seeded by (seed, step),
so the state needed to resume exactly is the weights, the EMA, the optimizer and the step.

Checkpoints are ordinary cinecube checkpoint folders (see train/checkpoint.py): config.json
holds a ModelConfig whose `autoencoder` field is the network's config (the transformer part
is the default and unused), model.safetensors the EMA weights with their latent statistics,
training/ the raw weights, optimizer and run state. `load_autoencoder` reads them back.

The loss is assembled in one place, `autoencoder_losses`. A perceptual term (LPIPS) adds a
named entry there (or comes in through `extra_loss`); an adversarial term needs its own
discriminator and optimizer, stepped after the autoencoder's step in the loop below.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..autoencoder import CausalVideoAutoencoder, DiagonalGaussian, fit_linear_path, frames_to_tensor
from ..config import AutoencoderConfig, ModelConfig
from ..errors import CheckpointError, CinecubeError
from .loop import learning_rate, update_ema
from .checkpoint import (checkpoint_dirs, load_training_state, load_weights_into, prune_checkpoints,
                         save_checkpoint)

VideoSource = Callable[[int], list[np.ndarray]]            # step -> uint8 (T, H, W, 3) videos
ExtraLoss = Callable[[Tensor, Tensor], Tensor]              # (reconstruction, target) -> scalar


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """How one autoencoder training run goes. Saved in every checkpoint's training state."""

    steps: int = 20000
    videos_per_step: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    grad_clip: float = 1.0
    kl_weight: float = 1e-6          # small: the latent statistics, not the KL, set the latent scale
    edge_weight: float = 0.5         # L1 on spatial/temporal differences: keeps edges and motion sharp
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    stats_steps: int = 4             # the videos of this many steps estimate the latent statistics
    linear_fit_steps: int = 32       # a linear path (if the config has one) starts as the PCA of these steps' videos
    # ...drawn at these canvases (empty: the training canvases). Larger windows of the photos
    # have the statistics of full-size footage; the PCA costs little even at 256x256.
    linear_fit_canvases: tuple[tuple[int, int], ...] = ()
    linear_path_lr_scale: float = 0.01   # the linear path learns at this fraction of lr (0 keeps the PCA)
    # The default (shapes world) source: canvases (height, width) and frame counts drawn from.
    world_canvases: tuple[tuple[int, int], ...] = ((64, 64), (48, 80), (80, 48), (32, 32))
    world_frame_counts: tuple[int, ...] = (1, 5, 9, 17)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AutoencoderTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AutoencoderTrainConfig fields: {sorted(unknown)}")
        as_tuples = {k: _to_tuples(v) for k, v in data.items()}
        return cls(**as_tuples)


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


AUTOENCODER_TRAIN_PRESETS: dict[str, AutoencoderTrainConfig] = {
    "tiny": AutoencoderTrainConfig(steps=20, videos_per_step=2, lr=2e-3, warmup_steps=2, log_every=1,
                                   checkpoint_every=10, stats_steps=2, world_canvases=((32, 32),),
                                   world_frame_counts=(5,)),
    # The linear code is fitted in closed form before step 1; --steps 0 keeps exactly that fit.
    "linear": AutoencoderTrainConfig(steps=0, linear_fit_steps=48,
                                     world_canvases=((64, 64), (48, 80), (80, 48), (96, 96), (64, 112)),
                                     world_frame_counts=(1, 5, 9, 17),
                                     # large windows fit the held-out footage best (measured: 30.35
                                     # dB; with 96x96 and 64x64 windows mixed in 29.95-30.14 dB)
                                     linear_fit_canvases=((256, 256), (192, 320), (320, 192))),
    "small": AutoencoderTrainConfig(steps=20000, videos_per_step=3, lr=6e-4, checkpoint_every=250,
                                    world_canvases=((64, 64), (48, 80), (80, 48), (96, 96), (64, 112)),
                                    world_frame_counts=(1, 5, 9, 17),
                                    linear_fit_canvases=((256, 256), (192, 320), (96, 96))),
}


@dataclass
class AutoencoderTrainResult:
    step: int
    last_losses: dict[str, float]
    run_dir: Path


def shapes_source(train: AutoencoderTrainConfig) -> VideoSource:
    """The shapes world as a VideoSource: step s gets videos s*n .. s*n+n-1, sizes drawn per video."""
    from ..data.shapes import ShapesWorld

    world = ShapesWorld(seed=train.seed)

    def videos(step: int) -> list[np.ndarray]:
        out = []
        for i in range(train.videos_per_step):
            index = step * train.videos_per_step + i
            rng = np.random.default_rng([train.seed, index, 7])
            height, width = train.world_canvases[int(rng.integers(len(train.world_canvases)))]
            frames = train.world_frame_counts[int(rng.integers(len(train.world_frame_counts)))]
            out.append(world.sample_at(index, height, width, frames).video)
        return out

    return videos


def crop_to_layout(frames: np.ndarray, temporal_factor: int, spatial_factor: int) -> np.ndarray:
    """Crop uint8 (T, H, W, 3) to the largest 1 + tf*k frames and multiples of s pixels.

    Training may drop a few frames or edge pixels of a clip; inference refuses such sizes
    instead (see CausalVideoAutoencoder.encode), where the caller decides.
    """
    t, h, w = frames.shape[:3]
    t = 1 + (t - 1) // temporal_factor * temporal_factor
    h, w = h // spatial_factor * spatial_factor, w // spatial_factor * spatial_factor
    if t < 1 or h < spatial_factor or w < spatial_factor:
        raise CinecubeError(f"training video of shape {frames.shape} is smaller than one latent cell "
                            f"({spatial_factor}x{spatial_factor} pixels)")
    top, left = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
    return frames[:t, top:top + h, left:left + w]


def _finite_differences(x: Tensor) -> list[Tensor]:
    """Differences along W, H and (for videos) T of x (B, C, T, H, W)."""
    diffs = [x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]]
    if x.shape[2] > 1:
        diffs.append(x[:, :, 1:] - x[:, :, :-1])
    return diffs


def autoencoder_losses(reconstruction: Tensor, target: Tensor, posterior: DiagonalGaussian,
                       train: AutoencoderTrainConfig, extra_loss: ExtraLoss | None = None) -> dict[str, Tensor]:
    """The named loss terms and their weighted sum, "loss". Inputs (B, 3, T, H, W) in [-1, 1]."""
    terms = {
        "l1": (reconstruction - target).abs().mean(),
        "edge": torch.stack([(a - b).abs().mean() for a, b in zip(_finite_differences(reconstruction),
                                                                 _finite_differences(target))]).mean(),
        "kl": posterior.kl(),
    }
    loss = terms["l1"] + train.edge_weight * terms["edge"] + train.kl_weight * terms["kl"]
    if extra_loss is not None:           # the seam for a perceptual term
        terms["extra"] = extra_loss(reconstruction, target)
        loss = loss + terms["extra"]
    terms["loss"] = loss
    return terms


def train_autoencoder(config: AutoencoderConfig, train: AutoencoderTrainConfig, run_dir: str | Path, *,
                      videos: VideoSource | None = None, fit_videos: VideoSource | None = None,
                      resume: bool = False, device: str | None = None,
                      progress: bool = True, stop_after: int | None = None,
                      extra_loss: ExtraLoss | None = None,
                      on_checkpoint: Callable[[int, CausalVideoAutoencoder], None] | None = None
                      ) -> AutoencoderTrainResult:
    """Train (or resume) an autoencoder run in `run_dir`; `stop_after` ends early at that step.

    `fit_videos` (default: `videos`) are what a linear path's PCA is fitted on before step 1.
    `on_checkpoint(step, ema)` runs after each checkpoint is written (sample reconstructions,
    plots); it must not change the weights."""
    run_dir = Path(run_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = checkpoint_dirs(run_dir)
    if existing and not resume:
        raise CinecubeError(f"run folder '{run_dir}' already has checkpoints; resume it or choose another folder")
    source = videos if videos is not None else shapes_source(train)
    tf, s = config.temporal_factor, config.spatial_factor

    torch.manual_seed(train.seed)
    model = CausalVideoAutoencoder(config).to(dev)
    ema = CausalVideoAutoencoder(config).to(dev).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    # Adam moves every weight by ~lr a step whatever its size; the linear path's PCA weights
    # (~1/sqrt(3*tf*s*s) each) would be scrambled at the networks' rate, so they get a fraction.
    linear = [p for name, p in model.named_parameters() if ".linear_path." in name]
    networks = [p for name, p in model.named_parameters() if ".linear_path." not in name]
    groups = [{"params": networks, "lr_scale": 1.0}]
    if linear:
        groups.append({"params": linear, "lr_scale": train.linear_path_lr_scale, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    model_config = ModelConfig(autoencoder=config)

    step = 0
    if config.linear_path and not existing:
        fit = fit_linear_path(model, (frames_to_tensor(crop_to_layout(v, tf, s)).to(dev)
                                      for k in range(train.linear_fit_steps) for v in (fit_videos or source)(k)))
        ema.load_state_dict(model.state_dict())
        tqdm.write(f"linear path: PCA of {fit['blocks']} pixel blocks keeps {100 * fit['explained']:.2f} % "
                   f"of their variance; decoder fit: MSE {fit['mse']:.5f} (PCA alone {fit['pca_mse']:.5f})",
                   file=sys.stderr)
    if existing:
        latest = existing[-1]
        saved = json.loads((latest / "config.json").read_text())
        if ModelConfig.from_dict(saved["model"]).autoencoder != config:
            raise CheckpointError(f"cannot resume '{run_dir}': its autoencoder config differs from the requested one")
        raw, optim_state, state = load_training_state(latest)
        load_weights_into(model, raw, str(latest))
        from safetensors.torch import load_file
        load_weights_into(ema, load_file(str(latest / "model.safetensors")), str(latest))
        optimizer.load_state_dict(optim_state)
        step = int(state["step"])
        _truncate_metrics(run_dir / "metrics.jsonl", step)

    (run_dir / "run.json").write_text(json.dumps(
        {"autoencoder": asdict(config), "train": train.to_dict(), "parameters": model.num_parameters()},
        indent=2))
    last_stop = train.steps if stop_after is None else min(stop_after, train.steps)

    def write_checkpoint() -> None:
        # Statistics of the weights being saved, from a fixed set of videos.
        ema.estimate_latent_stats(frames_to_tensor(crop_to_layout(v, tf, s)).to(dev)
                                  for k in range(train.stats_steps) for v in source(k))
        save_checkpoint(run_dir / "checkpoints" / f"step_{step:07d}", model_config, ema,
                        step=step, raw_model=model, optimizer=optimizer,
                        state={"step": step, "train": train.to_dict()})
        prune_checkpoints(run_dir, train.keep_checkpoints)
        if on_checkpoint is not None:
            on_checkpoint(step, ema)

    if last_stop == 0 and not existing:
        write_checkpoint()           # zero steps: the closed-form fit (linear path) is the model
    bar = tqdm(total=last_stop, initial=step, desc="training autoencoder", disable=not progress,
               dynamic_ncols=True)
    metrics = (run_dir / "metrics.jsonl").open("a")
    bad_steps, started = 0, time.time()
    last: dict[str, float] = {}
    try:
        while step < last_stop:
            batch = [frames_to_tensor(crop_to_layout(v, tf, s)).to(dev) for v in source(step)]
            generator = torch.Generator(device=dev).manual_seed(train.seed * 1_000_003 + step)
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, Tensor] = {}
            for video in batch:
                # One video per forward: sizes may differ, and memory is one video's worth.
                reconstruction, posterior = model(video[None], generator)
                terms = autoencoder_losses(reconstruction, video[None], posterior, train, extra_loss)
                (terms["loss"] / len(batch)).backward()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value.detach() / len(batch)
            last = {name: value.item() for name, value in sums.items()}    # one host sync per step
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            if not (math.isfinite(last["loss"]) and torch.isfinite(grad_norm)):
                bad_steps += 1
                tqdm.write(f"step {step}: non-finite loss or gradient; step skipped, weights untouched",
                           file=sys.stderr)
                if bad_steps >= 5:
                    raise CinecubeError(f"{bad_steps} non-finite losses in a row at step {step}; lower lr")
                step += 1    # the next step draws other videos; retrying the same ones would fail again
                continue
            bad_steps = 0
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, train) * group["lr_scale"]
            optimizer.step()
            update_ema(ema, model, step, train.ema_decay)
            step += 1
            bar.update(1)
            bar.set_postfix(l1=f"{last['l1']:.4f}")
            if step % train.log_every == 0 or step == last_stop:
                record = {"step": step, **last, "lr": learning_rate(step - 1, train),
                          "grad_norm": float(grad_norm), "seconds": time.time() - started}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if step % train.checkpoint_every == 0 or step == last_stop:
                write_checkpoint()
    finally:
        metrics.close()
        bar.close()
    return AutoencoderTrainResult(step, last, run_dir)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines past the checkpoint so the log has no duplicated steps."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
