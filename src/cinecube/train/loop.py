"""The training loop of the diffusion transformer: token-budget packed batches, AdamW with
warmup, gradient clipping, EMA, optional bf16 autocast, periodic samples and a loss curve,
atomic checkpoints, exact resume.

Randomness is a pure function of (seed, step) (noise, timesteps, caption dropout) and of
(seed, video index) (the data), so the state to resume exactly is the weights, the optimizer
and two integers. An interrupted-then-resumed run ends with the same weights as an
uninterrupted one (a test checks it).

A latent-space model (autoencoder kind other than "pixel") trains on the latents of a trained
autoencoder: `autoencoder=` names its folder, which the run keeps as `autoencoder/` and copies
into every checkpoint. With `latents=` (a cache written by `cinecube data cache-latents`) the
stream reads stored latents instead of rendering and encoding videos every step.

`train` reads top to bottom as its steps: check the run folder, build the model (from scratch,
from another model, or from the newest checkpoint), build the stream, then one step at a time,
with a checkpoint, a log record and samples at their intervals.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..autoencoder import (
    Autoencoder,
    build_autoencoder,
    frames_to_tensor,
    load_autoencoder,
    load_model_autoencoder,
    save_autoencoder,
    tensor_to_frames,
)
from ..conditioning import ConditionLatent, draw_condition_spans, draw_kind, encode_clip, extras_for
from ..config import ModelConfig, TrainConfig
from ..diffusion import Objective
from ..errors import CheckpointError, CinecubeError
from ..model_folder import (
    AUTOENCODER_DIR,
    CONFIG_FILE,
    ModelFolder,
    checkpoint_dirs,
    load_model_folder,
    load_weights_into,
)
from ..outputs import write_json
from ..patches import pack
from ..text import TextEncoder, get_text_encoder
from ..transformer import DiffusionTransformer, deepened_state_dict, refined_model_config, refined_state_dict
from .checkpoint import (
    TrainingCheckpoint,
    find_resume_point,
    prune_checkpoints,
    run_folder_state,
    save_training_checkpoint,
)
from .distributed import Parallel, start_parallel, unwrap
from .ema import update_ema
from .interrupt import StopRequest
from .metrics import METRICS_FILE, MetricsLog, plot_loss_curve
from .nonfinite import NonFiniteGuard
from .precision import bf16_supported, device_for
from .samples import write_samples
from .schedule import learning_rate
from .stream import build_stream, latent_folders

RUN_FILE = "run.json"


@dataclass
class TrainResult:
    step: int
    last_loss: float
    run_dir: Path
    main: bool = True  # this process writes and reports (the only one, or rank 0 of several)


@dataclass
class _Run:
    """Everything a run holds while it trains."""

    folder: Path
    model_config: ModelConfig
    train: TrainConfig
    device: torch.device
    model: DiffusionTransformer
    ema: DiffusionTransformer
    optimizer: torch.optim.Optimizer
    autoencoder: Autoencoder
    autoencoder_dir: Path | None
    text_encoder: TextEncoder
    objective: Objective
    stream: Any
    use_bf16: bool
    stored_text: bool = False  # the stream's items carry their caption embeddings
    step: int = 0
    parallel: Parallel = field(default_factory=Parallel)

    def learning_rate(self, step: int) -> float:
        return learning_rate(step, self.train)


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: str | Path,
    *,
    world: str = "shapes",
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    init_from: str | Path | None = None,
    autoencoder: str | Path | None = None,
    latents: str | Path | list[str] | None = None,
    resume_from: TrainingCheckpoint | None = None,
    parallel: str = "none",
) -> TrainResult:
    """Train (or resume) a run in `run_dir`. `stop_after` ends early at that step (for tests).

    `resume` continues the run from its newest checkpoint that can be resumed from (damaged
    newer ones are moved aside with a warning; see `find_resume_point`), or from `resume_from`
    when the caller has already found it. Resuming a folder that holds no run is an error.

    `init_from` starts a new run from another model's weights (a checkpoint, run or exported
    folder with the same architecture, a shallower one: see `deepened_state_dict`, or one with
    coarser cubes: see `refined_state_dict`) with a fresh optimizer: fine-tuning, continuing a
    model whose optimizer state was not kept, growing a trained model deeper or refining its cubes.
    The new run's config takes the source's rotary scale and shift base (`refined_model_config`).

    `autoencoder` is a trained autoencoder folder (or run) whose config equals
    `model_config.autoencoder`; the run stores it as `autoencoder/`, and a resumed run reads
    it from there. `latents` is a latent cache folder made with that autoencoder: the stream
    then reads its latents (and `world` is not used).

    Everything is checked, and the model, stream and autoencoder built, before anything is
    written to `run_dir`. Ctrl-C or SIGTERM saves a checkpoint at the end of the step, then
    raises KeyboardInterrupt (train/interrupt.py).

    `parallel` "ddp" trains as one of the processes torchrun started (train/distributed.py says
    what differs: each process draws its share of the same global batch, and only the main
    process writes the run folder); "none" is one process.
    """
    run_dir = Path(run_dir)
    par = start_parallel(parallel, device_for(device))
    dev = par.device
    progress = progress and par.main
    if not resume and _restarted_attempt_of(run_dir, par):
        resume = True  # torchrun restarted this job after a failure: go on from its last checkpoint
    if resume and resume_from is None:
        # The main process sets damaged checkpoints aside first; the others then find the same one.
        for turn in (True, False):
            if par.main == turn:
                resume_from = find_resume_point(
                    run_dir, RESUME_STATE, warn=lambda m: tqdm.write(m, file=sys.stderr) if par.main else None
                )
            par.barrier()
    recorded_init = _check_run_folder(run_dir, resume_from, init_from)
    source = None
    if init_from is not None and resume_from is None:
        source, model_config = _init_source(init_from, model_config)

    latent_data = None
    if latents is not None:
        from ..data.latents import LatentDataset

        latent_data = LatentDataset(latents)
    run, autoencoder_to_store = _build_run(run_dir, model_config, train_config, dev, autoencoder, latent_data, world)
    if source is not None:
        _start_from_source(run, source)
    if resume_from is not None:
        _resume(run, resume_from)
    run.model, run.parallel = par.wrap(run.model), par

    # Checked and built: from here on the run folder is written (by the main process).
    if par.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if autoencoder_to_store is not None:
            save_autoencoder(run.autoencoder_dir, autoencoder_to_store)
        started_from = (
            str(Path(init_from).resolve()) if init_from is not None and resume_from is None else recorded_init
        )
        _write_run_info(run, world, latent_data, started_from)
    if latent_data is not None and not run.stored_text and progress:
        tqdm.write(
            "the latent cache has no caption embeddings for this model's text encoder; encoding "
            "captions as they come (rerun `cinecube data cache-latents` to store them)",
            file=sys.stderr,
        )

    last_stop = train_config.steps if stop_after is None else min(stop_after, train_config.steps)
    guard = NonFiniteGuard()
    bar = tqdm(total=last_stop, initial=run.step, desc="training", disable=not progress, dynamic_ncols=True)
    loss_value, tokens_seen, started, saved_at = float("nan"), 0, time.time(), run.step
    metrics = MetricsLog(run_dir / METRICS_FILE, resumed_at=run.step) if par.main else None
    try:
        with StopRequest() as stop:
            while run.step < last_stop:
                keys, batch = _draw_share(run.stream, par)
                loss_value, grad_norm, n_tokens = _train_step(run, batch, keys, guard)
                run.step += 1
                tokens_seen += n_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                stopping = par.any(stop.requested is not None)  # every process stops at the same step
                if metrics is not None and (run.step % train_config.log_every == 0 or run.step == last_stop):
                    elapsed = time.time() - started
                    metrics.write(
                        {
                            "step": run.step,
                            "loss": loss_value,
                            "lr": run.learning_rate(run.step - 1),
                            "grad_norm": grad_norm,
                            "videos": len(batch),
                            "tokens": n_tokens,
                            "tokens_per_s": tokens_seen / max(elapsed, 1e-9),
                            "time": time.time(),
                            **({"skipped": True} if grad_norm is None else {}),
                        }
                    )
                if run.step % train_config.checkpoint_every == 0 or run.step == last_stop or stopping:
                    if par.main:
                        _save_checkpoint(run)
                    saved_at = run.step
                    par.barrier()  # no process goes on before the checkpoint is whole
                if stopping:
                    bar.close()
                    if par.main:
                        tqdm.write(
                            f"{stop.requested or 'stop'}: saved a checkpoint at step {saved_at} in {run_dir}; "
                            "continue with the same command and --resume",
                            file=sys.stderr,
                        )
                    raise KeyboardInterrupt
                if par.main and (run.step % train_config.sample_every == 0 or run.step == last_stop):
                    write_samples(
                        run.ema, run.autoencoder, run.text_encoder, run_dir / "samples" / f"step_{run.step:07d}.mp4"
                    )
                    plot_loss_curve(run_dir / METRICS_FILE, run_dir / "loss.png")
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
        par.close()
    return TrainResult(run.step, loss_value, run_dir, par.main)


# What a transformer run's training/state.json must hold to be resumed from.
RESUME_STATE = ("step", "stream")


# ------------------------------------------------------------------------------ start or resume


def _restarted_attempt_of(run_dir: Path, par: Parallel) -> bool:
    """Whether this process is a restart (torchrun --max-restarts) of the job whose run this
    folder holds: the same job id (TORCHELASTIC_RUN_ID) recorded in run.json by an earlier attempt.
    A run of another job in the folder is never resumed this way."""
    if not par.distributed or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return False
    try:
        recorded = json.loads((run_dir / RUN_FILE).read_text()).get("elastic_run_id")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded is not None and recorded == os.environ.get("TORCHELASTIC_RUN_ID") and bool(checkpoint_dirs(run_dir))


def _check_run_folder(
    run_dir: Path, resume_from: TrainingCheckpoint | None, init_from: str | Path | None
) -> str | None:
    """Refuse a run folder that does not fit the request; return where a resumed run started."""
    state = run_folder_state(run_dir)
    if resume_from is None and state == "run" and checkpoint_dirs(run_dir):
        raise CinecubeError(
            f"run folder '{run_dir}' already has checkpoints; pass --resume to continue it or choose another --out"
        )
    if state == "other":
        kind = "a file" if run_dir.exists() and not run_dir.is_dir() else "a folder that holds no training run"
        raise CinecubeError(f"--out '{run_dir}' is {kind}; give a new or empty folder, or a run folder to resume")
    if resume_from is None:
        return None
    # Where a resumed run's weights started (run.json), kept across resumes.
    recorded_init = None
    try:
        recorded_init = json.loads((run_dir / RUN_FILE).read_text()).get("init_from")
    except (OSError, ValueError, AttributeError):
        tqdm.write(f"{run_dir / RUN_FILE} is unreadable; it is written anew from the checkpoint", file=sys.stderr)
    if init_from is not None and recorded_init != str(Path(init_from).resolve()):
        # A resumed run continues its own weights; --init-from could only apply to a new run.
        raise CinecubeError(
            f"run folder '{run_dir}' already has checkpoints (started from "
            f"{recorded_init or 'scratch'}); --resume continues those weights, so "
            f"--init-from '{init_from}' cannot apply: drop it or choose another --out"
        )
    return recorded_init


def _init_source(init_from: str | Path, model_config: ModelConfig) -> tuple[ModelFolder, ModelConfig]:
    """The model a new run starts from, checked against the requested one, and the run's config
    with the source's rotary scale and shift base (scaled when the cubes are finer), so the
    new run sees its videos as the source did."""
    source = load_model_folder(init_from)
    source_shape, target_shape = source.model_config.transformer, model_config.transformer
    same_but_depth = (
        dataclasses.replace(source_shape, depth=target_shape.depth, rope_scale=target_shape.rope_scale) == target_shape
    )
    if not same_but_depth:
        raise CheckpointError(
            f"cannot start from '{source.path}': its transformer differs from the "
            "requested preset (only the depth may grow and the cubes be refined)"
        )
    if source_shape.depth > target_shape.depth:
        raise CheckpointError(
            f"cannot start from '{source.path}': it has {source_shape.depth} blocks "
            f"and the new model {target_shape.depth}; the depth may only grow"
        )
    try:
        return source, refined_model_config(model_config, source.model_config)
    except ValueError as error:
        raise CheckpointError(f"cannot start from '{source.path}': {error}") from None


def _build_run(
    run_dir: Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    dev: torch.device,
    autoencoder: str | Path | None,
    latent_data,
    world: str,
) -> tuple[_Run, Autoencoder | None]:
    """A fresh model, its EMA and optimizer, the autoencoder and text encoder, and the stream,
    with nothing written yet; and the autoencoder the run folder must store, if it has none."""
    torch.manual_seed(train_config.seed)
    model = DiffusionTransformer(model_config).to(dev)
    ema = DiffusionTransformer(model_config).to(dev).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    # fused: one kernel for all parameters (the per-parameter loop was ~10 % of a CPU step).
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=train_config.lr,
        betas=train_config.betas,
        weight_decay=train_config.weight_decay,
        fused=True,
    )
    autoencoder_net, to_store = _run_autoencoder(run_dir, model_config, autoencoder, latent_data)
    autoencoder_net = autoencoder_net.to(dev)
    text_encoder = get_text_encoder(model_config.text_max_tokens)
    stream = build_stream(model_config, train_config, autoencoder_net, world=world, latent_data=latent_data)
    # Caption embeddings stored in the latent cache stand in for the text encoder when they
    # were made by the same encoder with the model's token limit.
    stored_text = latent_data is not None and latent_data.text_encoder_settings == (
        text_encoder.name,
        model_config.text_max_tokens,
    )
    run = _Run(
        run_dir,
        model_config,
        train_config,
        dev,
        model,
        ema,
        optimizer,
        autoencoder_net,
        run_dir / AUTOENCODER_DIR if model_config.autoencoder.kind != "pixel" else None,
        text_encoder,
        Objective(model_config.diffusion),
        stream,
        use_bf16=train_config.bf16 and bf16_supported(dev),
        stored_text=stored_text,
    )
    return run, to_store


def _start_from_source(run: _Run, source: ModelFolder) -> None:
    """Load another model's weights; a deeper model starts as the source's function (its new
    blocks pass their input through), a finer-cubed one sees videos as the source did."""
    weights = deepened_state_dict(
        source.weights, source.model_config.transformer.depth, run.model_config.transformer.depth
    )
    if source.model_config.patch_size != run.model_config.patch_size:
        weights = refined_state_dict(
            weights, source.model_config.patch_size, run.model_config.patch_size, run.model_config.latent_channels
        )
    load_weights_into(run.model, weights, str(source.path))
    run.ema.load_state_dict(run.model.state_dict())


def _resume(run: _Run, checkpoint: TrainingCheckpoint) -> None:
    """Continue from a checkpoint: weights, EMA, optimizer, stream position and step."""
    if checkpoint.model_config != run.model_config:
        raise CheckpointError(f"cannot resume '{run.folder}': its model config differs from the requested one")
    load_weights_into(run.model, checkpoint.raw_weights, str(checkpoint.path))
    load_weights_into(run.ema, checkpoint.ema_weights, str(checkpoint.path))
    try:
        run.optimizer.load_state_dict(checkpoint.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"checkpoint '{checkpoint.path}': training/optimizer.pt does not fit the model ({error})"
        ) from None
    run.stream.load_state_dict(checkpoint.state["stream"])
    run.step = int(checkpoint.state["step"])


def _write_run_info(run: _Run, world: str, latent_data, started_from: str | None) -> None:
    info: dict[str, Any] = {
        "model": run.model_config.to_dict(),
        "train": run.train.to_dict(),
        "world": world,
        "parameters": unwrap(run.model).num_parameters(),
    }
    if latent_data is not None:
        info["latents"] = latent_folders(latent_data)
    if run.parallel.distributed:
        info["processes"] = run.parallel.world
        info["elastic_run_id"] = os.environ.get("TORCHELASTIC_RUN_ID")
    # Where the weights started, kept across resumes: a second-stage run names its first stage.
    if started_from:
        info["init_from"] = started_from
    write_json(run.folder / RUN_FILE, info)


def _run_autoencoder(
    run_dir: Path, model_config: ModelConfig, given: str | Path | None, latent_data
) -> tuple[Autoencoder, Autoencoder | None]:
    """(the autoencoder the run trains in, the one to store as the run's `autoencoder/` when it
    has none yet): the identity for pixel models; else the run's own copy, or the one `given`
    (or the latent cache's) on first use."""
    stored = run_dir / AUTOENCODER_DIR
    if model_config.autoencoder.kind == "pixel":
        if given is not None:
            raise CinecubeError("an autoencoder was given but the model config's autoencoder kind is 'pixel'")
        return build_autoencoder(model_config.autoencoder), None
    source = given if given is not None else (latent_data.autoencoder_dir if latent_data is not None else None)
    if (stored / CONFIG_FILE).is_file():
        own = load_model_autoencoder(run_dir, model_config)
        if source is not None and not _same_weights(own, load_autoencoder(source)):
            raise CheckpointError(f"run '{run_dir}' already trains on another autoencoder than '{source}'")
        return own, None
    if source is None:
        raise CinecubeError(
            f"the model works in the latents of a {model_config.autoencoder.kind} autoencoder: "
            "pass --autoencoder PATH (a trained autoencoder folder or run)"
        )
    network = load_autoencoder(source)
    if network.config != model_config.autoencoder:
        raise CinecubeError(f"autoencoder '{source}' differs from the model config's autoencoder")
    return network, network


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------ one step


def _draw_share(stream, par: Parallel) -> tuple[list[int], list]:
    """This process's (stream indices, videos) of the next global batch (all of it in one
    process). A process the batch left empty computes a stand-in video with no weight."""
    keys, items = [], []
    for index in par.share(stream.next_plan()):
        key = index if index >= 0 else -1 - index
        keys.append(key)
        items.append(stream.load(key) if index >= 0 else _Weightless(stream.load(key)))
    return keys, items


class _Weightless:
    """A video a process computes with a loss weight of 0 (so that it still takes part in the step)."""

    def __init__(self, item):
        self.item = item

    def __getattr__(self, name):
        return getattr(self.item, name)


def _train_step(run: _Run, batch: list, keys: list[int], guard: NonFiniteGuard) -> tuple[float, float | None, int]:
    """One optimizer step on this process's share of a global batch: (the global batch's mean
    loss, gradient norm or None if the step was skipped, this process's tokens)."""
    par = run.parallel
    if run.stored_text:
        for item in batch:
            run.text_encoder.remember(item.caption, item.text)
    loss, n_tokens = _loss_for_batch(
        run.model,
        run.autoencoder,
        run.text_encoder,
        run.objective,
        batch,
        keys,
        run.train,
        run.step,
        run.device,
        run.use_bf16,
    )
    own_tokens = 0 if batch and isinstance(batch[0], _Weightless) else n_tokens
    local = loss.item()  # one host sync per step: needed to refuse a bad loss
    # The global mean: every process's mean weighted by its tokens (one process: its own mean).
    global_tokens = par.sum(own_tokens)
    loss_value = par.sum(local * own_tokens) / max(global_tokens, 1) if par.distributed else local
    if not guard.check(run.step, "loss", loss_value if not par.any(not math.isfinite(local)) else math.nan):
        return loss_value, None, own_tokens
    for group in run.optimizer.param_groups:
        group["lr"] = run.learning_rate(run.step)
    run.optimizer.zero_grad(set_to_none=True)
    # DDP averages the gradients over processes: scaled by this process's share of the global
    # tokens (times the process count), the step is the one process's on the whole batch.
    (loss * (own_tokens * par.world / max(global_tokens, 1)) if par.distributed else loss).backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.train.grad_clip))
    if not guard.check(run.step, "gradient", grad_norm):
        run.optimizer.zero_grad(set_to_none=True)
        return loss_value, None, own_tokens
    guard.stepped()
    run.optimizer.step()
    update_ema(run.ema, unwrap(run.model), run.step, run.train.ema_decay)
    return loss_value, grad_norm, own_tokens


def _loss_for_batch(
    model,
    autoencoder,
    text_encoder,
    objective: Objective,
    batch,
    keys: list[int],
    train: TrainConfig,
    step: int,
    device: torch.device,
    use_bf16: bool,
) -> tuple[Tensor, int]:
    """Pack a list of captioned videos and return the mean loss over their tokens, and how many.

    Each video's randomness (caption dropout, conditions, timestep, noise) is drawn from (seed,
    step, its stream index `key`), so it is the same whichever process of a distributed run
    computes it, and in whatever company.

    A share of the videos (`train.conditioning`) is conditioned on some of its own frames: those
    come as extra clean tokens (see cinecube/conditioning.py) and the loss is taken on the
    videos' own tokens only, so the model learns to continue, join and animate what it is given."""
    cfg = unwrap(model).config
    rngs = [np.random.default_rng([train.seed, step, key]) for key in keys]
    with torch.no_grad():
        # Cached latents (data/latents.py) come encoded; rendered videos are encoded here.
        latents = [
            item.latent.to(device)
            if hasattr(item, "latent")
            else autoencoder.encode(frames_to_tensor(item.video).to(device))
            for item in batch
        ]
        # Caption dropout: the empty prompt is the unconditional input for guidance.
        captions = [("" if rng.random() < train.caption_dropout else item.caption) for item, rng in zip(batch, rngs)]
        conditions = [
            _draw_conditions(item, latent, autoencoder, train, rng, device)
            for item, latent, rng in zip(batch, latents, rngs)
        ]
        packed = pack(latents, cfg.patch_size, extras=[extras_for(c, cfg) for c in conditions])
        text, text_mask = text_encoder.encode(captions)
        text, text_mask = text.to(device), text_mask.to(device)

    # One t per video (shifted by its own token count), the same on all its generated tokens;
    # conditioning tokens get `condition_noise` (0: clean).
    t_parts, noise_parts = [], []
    for rng, n, total in zip(rngs, packed.video_lengths, packed.lengths):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        t_parts.append(objective.sample_timesteps(torch.tensor([n]), generator).repeat(total))
        noise_parts.append(torch.randn((total, cfg.patch_dim), generator=generator))
    t = torch.cat(t_parts)[:, None].to(device)  # (N, 1)
    is_extra = packed.is_extra
    t = t.masked_fill(is_extra[:, None], train.condition_noise)
    x0 = packed.tokens
    noise = torch.cat(noise_parts).to(device)
    x_t = objective.noisy(x0, noise, t)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        output = model(x_t, packed.positions, packed.segment_ids, t[:, 0], text, text_mask)
    generated = ~is_extra
    loss = objective.loss(output.float()[generated], x0[generated], noise[generated], x_t[generated], t[generated])
    return loss.mean(), int(generated.sum())


def _draw_conditions(item, latent: Tensor, autoencoder, train: TrainConfig, rng: np.random.Generator, device):
    """The conditions of one training video (most get none): clips of its own frames, each
    encoded on its own as it would be at generation time."""
    kind = draw_kind(train.conditioning, rng)
    if kind is None:
        return []
    tf = autoencoder.config.temporal_factor
    frames = autoencoder.pixel_frames(latent.shape[1])
    pixels = None
    conditions = []
    for start, length in draw_condition_spans(kind, frames, tf, rng):
        if start == 0:
            # A clip from frame 0 is encoded exactly as the video's own first latent frames
            # are (the code is causal), so those are its encoding on its own.
            conditions.append(ConditionLatent(latent[:, : autoencoder.latent_frames(length)], 0))
            continue
        if pixels is None:
            # Rendered videos have their pixels; a cached latent is decoded (the frames of a
            # condition are then the autoencoder's reconstruction, as a user's video's are).
            pixels = item.video if hasattr(item, "video") else tensor_to_frames(autoencoder.decode(latent))
        conditions.append(ConditionLatent(encode_clip(autoencoder, pixels[start : start + length], device), start))
    return conditions


# ------------------------------------------------------------------------------ checkpoint


def _save_checkpoint(run: _Run) -> None:
    save_training_checkpoint(
        run.folder,
        run.step,
        run.model_config,
        run.ema,
        raw_model=unwrap(run.model),
        optimizer=run.optimizer,
        state={"step": run.step, "stream": run.stream.state_dict()},
        train_config=run.train,
        autoencoder_dir=run.autoencoder_dir,
    )
    prune_checkpoints(run.folder, run.train.keep_checkpoints)
