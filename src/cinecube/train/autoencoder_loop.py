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

Checkpoints are ordinary cinecube training checkpoints (see train/checkpoint.py): config.json
holds a ModelConfig whose `autoencoder` field is the network's config (the transformer part
is the default and unused), model.safetensors the EMA weights with their latent statistics,
training/ the raw weights, optimizer and run state. `load_autoencoder` reads them back.

The loss is assembled in one place, `autoencoder_losses`. A perceptual term (LPIPS) adds a
named entry there (or comes in through `extra_loss`); an adversarial term needs its own
discriminator and optimizer, stepped after the autoencoder's step in the loop below.
"""

from __future__ import annotations

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

from ..autoencoder import CausalVideoAutoencoder, DiagonalGaussian, crop_to_layout, fit_linear_path, frames_to_tensor
from ..config import AutoencoderConfig, ModelConfig
from ..errors import CheckpointError, CinecubeError
from ..model_folder import checkpoint_dirs, load_weights_into
from ..outputs import write_json
from .checkpoint import (
    TrainingCheckpoint,
    find_resume_point,
    prune_checkpoints,
    run_folder_state,
    save_training_checkpoint,
)
from .ema import update_ema
from .interrupt import StopRequest
from .metrics import METRICS_FILE, MetricsLog
from .nonfinite import NonFiniteGuard
from .precision import device_for
from .schedule import learning_rate

VideoSource = Callable[[int], list[np.ndarray]]  # step -> uint8 (T, H, W, 3) videos
ExtraLoss = Callable[[Tensor, Tensor], Tensor]  # (reconstruction, target) -> scalar


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """How one autoencoder training run goes. Saved in every checkpoint's training state."""

    steps: int = 20000
    videos_per_step: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    cooldown_steps: int = 0  # > 0: lr decays linearly to 0 over the last this many steps
    grad_clip: float = 1.0
    kl_weight: float = 1e-6  # small: the latent statistics, not the KL, set the latent scale
    edge_weight: float = 0.5  # L1 on spatial/temporal differences: keeps edges and motion sharp
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    stats_steps: int = 4  # the videos of this many steps estimate the latent statistics
    linear_fit_steps: int = 32  # a linear path (if the config has one) starts as the PCA of these steps' videos
    # ...drawn at these canvases (empty: the training canvases). Larger windows of the photos
    # have the statistics of full-size footage; the PCA costs little even at 256x256.
    linear_fit_canvases: tuple[tuple[int, int], ...] = ()
    linear_path_lr_scale: float = 0.01  # the linear path learns at this fraction of lr (0 keeps the PCA)
    # The default (shapes world) source: canvases (height, width) and frame counts drawn from.
    world_canvases: tuple[tuple[int, int], ...] = ((64, 64), (48, 80), (80, 48), (32, 32))
    world_frame_counts: tuple[int, ...] = (1, 5, 9, 17)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AutoencoderTrainConfig fields: {sorted(unknown)}")
        as_tuples = {k: _to_tuples(v) for k, v in data.items()}
        return cls(**as_tuples)


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


AUTOENCODER_TRAIN_PRESETS: dict[str, AutoencoderTrainConfig] = {
    "tiny": AutoencoderTrainConfig(
        steps=20,
        videos_per_step=2,
        lr=2e-3,
        warmup_steps=2,
        log_every=1,
        checkpoint_every=10,
        stats_steps=2,
        world_canvases=((32, 32),),
        world_frame_counts=(5,),
    ),
    # The linear code is fitted in closed form before step 1; --steps 0 keeps exactly that fit.
    "linear": AutoencoderTrainConfig(
        steps=0,
        linear_fit_steps=48,
        world_canvases=((64, 64), (48, 80), (80, 48), (96, 96), (64, 112)),
        world_frame_counts=(1, 5, 9, 17),
        # large windows fit the held-out footage best (docs/autoencoder.md)
        linear_fit_canvases=((256, 256), (192, 320), (320, 192)),
    ),
    "small": AutoencoderTrainConfig(
        steps=20000,
        videos_per_step=3,
        lr=6e-4,
        checkpoint_every=250,
        world_canvases=((64, 64), (48, 80), (80, 48), (96, 96), (64, 112)),
        world_frame_counts=(1, 5, 9, 17),
        linear_fit_canvases=((256, 256), (192, 320), (96, 96)),
    ),
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


def _finite_differences(x: Tensor) -> list[Tensor]:
    """Differences along W, H and (for videos) T of x (B, C, T, H, W)."""
    diffs = [x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]]
    if x.shape[2] > 1:
        diffs.append(x[:, :, 1:] - x[:, :, :-1])
    return diffs


def autoencoder_losses(
    reconstruction: Tensor,
    target: Tensor,
    posterior: DiagonalGaussian,
    train: AutoencoderTrainConfig,
    extra_loss: ExtraLoss | None = None,
) -> dict[str, Tensor]:
    """The named loss terms and their weighted sum, "loss". Inputs (B, 3, T, H, W) in [-1, 1]."""
    terms = {
        "l1": (reconstruction - target).abs().mean(),
        "edge": torch.stack(
            [(a - b).abs().mean() for a, b in zip(_finite_differences(reconstruction), _finite_differences(target))]
        ).mean(),
        "kl": posterior.kl(),
    }
    loss = terms["l1"] + train.edge_weight * terms["edge"] + train.kl_weight * terms["kl"]
    if extra_loss is not None:  # the seam for a perceptual term
        terms["extra"] = extra_loss(reconstruction, target)
        loss = loss + terms["extra"]
    terms["loss"] = loss
    return terms


def train_autoencoder(
    config: AutoencoderConfig,
    train: AutoencoderTrainConfig,
    run_dir: str | Path,
    *,
    videos: VideoSource | None = None,
    fit_videos: VideoSource | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    extra_loss: ExtraLoss | None = None,
    on_checkpoint: Callable[[int, CausalVideoAutoencoder], None] | None = None,
    resume_from: TrainingCheckpoint | None = None,
) -> AutoencoderTrainResult:
    """Train (or resume) an autoencoder run in `run_dir`; `stop_after` ends early at that step.

    `fit_videos` (default: `videos`) are what a linear path's PCA is fitted on before step 1.
    `on_checkpoint(step, ema)` runs after each checkpoint is written (sample reconstructions,
    plots); it must not change the weights. `resume` continues from the newest checkpoint that
    loads whole (damaged newer ones are moved aside with a warning), or from `resume_from`.
    Nothing is written before the run is checked and built; Ctrl-C or SIGTERM saves a
    checkpoint at the end of the step, then raises KeyboardInterrupt."""
    run_dir = Path(run_dir)
    dev = device_for(device)
    if resume and resume_from is None:
        resume_from = find_resume_point(run_dir, warn=lambda m: tqdm.write(m, file=sys.stderr))
    state = run_folder_state(run_dir)
    if resume_from is None and (state == "other" or checkpoint_dirs(run_dir)):
        raise CinecubeError(
            f"run folder '{run_dir}' already has checkpoints or other files; resume it or choose another folder"
        )
    source = videos if videos is not None else shapes_source(train)
    tf, s = config.temporal_factor, config.spatial_factor

    def layout_videos(steps: range, draw: VideoSource):
        # (3, T, H, W) tensors cropped to the causal layout, for the fit and the statistics
        return (frames_to_tensor(crop_to_layout(v, tf, s)).to(dev) for k in steps for v in draw(k))

    torch.manual_seed(train.seed)
    model = CausalVideoAutoencoder(config).to(dev)
    ema = CausalVideoAutoencoder(config).to(dev).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    optimizer = _optimizer(model, train)
    model_config = ModelConfig(autoencoder=config)

    step = 0
    if config.linear_path and resume_from is None:
        fit = fit_linear_path(model, layout_videos(range(train.linear_fit_steps), fit_videos or source))
        ema.load_state_dict(model.state_dict())
        tqdm.write(
            f"linear path: PCA of {fit['blocks']} pixel blocks keeps {100 * fit['explained']:.2f} % "
            f"of their variance; decoder fit: MSE {fit['mse']:.5f} (PCA alone {fit['pca_mse']:.5f})",
            file=sys.stderr,
        )
    if resume_from is not None:
        step = _resume(resume_from, run_dir, config, model, ema, optimizer)

    # Checked and built: from here on the run folder is written.
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / "run.json",
        {"autoencoder": asdict(config), "train": train.to_dict(), "parameters": model.num_parameters()},
    )
    last_stop = train.steps if stop_after is None else min(stop_after, train.steps)

    def write_checkpoint() -> None:
        # Statistics of the weights being saved, from a fixed set of videos.
        ema.estimate_latent_stats(layout_videos(range(train.stats_steps), source))
        save_training_checkpoint(
            run_dir,
            step,
            model_config,
            ema,
            raw_model=model,
            optimizer=optimizer,
            state={"step": step, "train": train.to_dict()},
        )
        prune_checkpoints(run_dir, train.keep_checkpoints)
        if on_checkpoint is not None:
            on_checkpoint(step, ema)

    if last_stop == 0 and resume_from is None:
        write_checkpoint()  # zero steps: the closed-form fit (linear path) is the model
    guard = NonFiniteGuard()
    bar = tqdm(total=last_stop, initial=step, desc="training autoencoder", disable=not progress, dynamic_ncols=True)
    started = time.time()
    last: dict[str, float] = {}
    try:
        with MetricsLog(run_dir / METRICS_FILE, resumed_at=step) as metrics, StopRequest() as stop:
            while step < last_stop:
                batch = [frames_to_tensor(crop_to_layout(v, tf, s)).to(dev) for v in source(step)]
                last, grad_norm = _train_step(model, ema, optimizer, batch, train, step, guard, extra_loss)
                step += 1
                bar.update(1)
                bar.set_postfix(l1=f"{last['l1']:.4f}")
                if step % train.log_every == 0 or step == last_stop:
                    metrics.write(
                        {
                            "step": step,
                            **last,
                            "lr": learning_rate(step - 1, train),
                            "grad_norm": grad_norm,
                            "seconds": time.time() - started,
                            **({"skipped": True} if grad_norm is None else {}),
                        }
                    )
                if step % train.checkpoint_every == 0 or step == last_stop or stop.requested:
                    write_checkpoint()
                if stop.requested:
                    bar.close()
                    tqdm.write(
                        f"{stop.requested}: saved a checkpoint at step {step} in {run_dir}; "
                        "continue with the same command and --resume",
                        file=sys.stderr,
                    )
                    raise KeyboardInterrupt
    finally:
        bar.close()
    return AutoencoderTrainResult(step, last, run_dir)


def _optimizer(model: CausalVideoAutoencoder, train: AutoencoderTrainConfig) -> torch.optim.Optimizer:
    """AdamW with the linear path in a group of its own at a fraction of the rate.

    Adam moves every weight by ~lr a step whatever its size; the linear path's PCA weights
    (~1/sqrt(3*tf*s*s) each) would be scrambled at the networks' rate."""
    linear = [p for name, p in model.named_parameters() if ".linear_path." in name]
    networks = [p for name, p in model.named_parameters() if ".linear_path." not in name]
    groups = [{"params": networks, "lr_scale": 1.0}]
    if linear:
        groups.append({"params": linear, "lr_scale": train.linear_path_lr_scale, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)


def _resume(
    checkpoint: TrainingCheckpoint,
    run_dir: Path,
    config: AutoencoderConfig,
    model: CausalVideoAutoencoder,
    ema: CausalVideoAutoencoder,
    optimizer: torch.optim.Optimizer,
) -> int:
    """Load weights, EMA and optimizer from a checkpoint; return its step."""
    if checkpoint.model_config.autoencoder != config:
        raise CheckpointError(f"cannot resume '{run_dir}': its autoencoder config differs from the requested one")
    load_weights_into(model, checkpoint.raw_weights, str(checkpoint.path))
    load_weights_into(ema, checkpoint.ema_weights, str(checkpoint.path))
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"checkpoint '{checkpoint.path}': training/optimizer.pt does not fit the model ({error})"
        ) from None
    return int(checkpoint.state["step"])


def _train_step(
    model: CausalVideoAutoencoder,
    ema: CausalVideoAutoencoder,
    optimizer: torch.optim.Optimizer,
    batch: list[Tensor],
    train: AutoencoderTrainConfig,
    step: int,
    guard: NonFiniteGuard,
    extra_loss: ExtraLoss | None,
) -> tuple[dict[str, float], float | None]:
    """One optimizer step over a batch of videos: (the mean loss terms, the gradient norm, or
    None when the step was skipped)."""
    generator = torch.Generator(device=batch[0].device).manual_seed(train.seed * 1_000_003 + step)
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, Tensor] = {}
    for video in batch:
        # One video per forward: sizes may differ, and memory is one video's worth.
        reconstruction, posterior = model(video[None], generator)
        terms = autoencoder_losses(reconstruction, video[None], posterior, train, extra_loss)
        (terms["loss"] / len(batch)).backward()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach() / len(batch)
    last = {name: value.item() for name, value in sums.items()}  # one host sync per step
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip))
    if not (guard.check(step, "loss", last["loss"]) and guard.check(step, "gradient", grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        return last, None
    guard.stepped()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, train) * group["lr_scale"]
    optimizer.step()
    update_ema(ema, model, step, train.ema_decay)
    return last, grad_norm
