"""Training checkpoints: a model folder (see cinecube/model_folder.py) plus what resuming needs.

    RUN/checkpoints/step_NNNNNNN/
        config.json, model.safetensors   the model folder: configs and the EMA weights
        autoencoder/                     (latent-space models) the network the model works in
        training/raw.safetensors         the raw (non-EMA) weights
        training/optimizer.pt            the optimizer state (tensors only)
        training/state.json              step, data-stream state, counters

A checkpoint is published whole by one rename (`save_model_folder`), and a run keeps the
newest `keep` of them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, TrainConfig
from ..errors import CheckpointError
from ..model_folder import (
    CHECKPOINTS_DIR,
    STEP_PREFIX,
    checkpoint_dirs,
    load_model_folder,
    save_model_folder,
    state_dict_for_saving,
)

TRAINING_DIR = "training"


@dataclass
class TrainingCheckpoint:
    """What a run resumes from: the model folder's config and EMA weights, and the training state."""

    path: Path
    model_config: ModelConfig
    ema_weights: dict[str, torch.Tensor]
    raw_weights: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    state: dict[str, Any]


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"{STEP_PREFIX}{step:07d}"


def save_training_checkpoint(
    run_dir: str | Path,
    step: int,
    model_config: ModelConfig,
    ema: torch.nn.Module,
    *,
    raw_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    train_config: TrainConfig | None = None,
    autoencoder_dir: str | Path | None = None,
) -> Path:
    """Write RUN/checkpoints/step_NNNNNNN atomically: the EMA model folder plus training/."""

    def training_files(folder: Path) -> None:
        (folder / TRAINING_DIR).mkdir()
        save_file(state_dict_for_saving(raw_model), str(folder / TRAINING_DIR / "raw.safetensors"))
        torch.save(optimizer.state_dict(), folder / TRAINING_DIR / "optimizer.pt")
        (folder / TRAINING_DIR / "state.json").write_text(json.dumps(state, indent=2))

    return save_model_folder(
        checkpoint_path(run_dir, step),
        model_config,
        ema,
        train_config=train_config,
        step=step,
        autoencoder_dir=autoencoder_dir,
        extra_files=training_files,
        replace=True,  # a checkpoint of this step that was skipped as damaged, or one of an abandoned branch
    )


def load_training_checkpoint(folder: Path, state_keys: tuple[str, ...] = ("step",)) -> TrainingCheckpoint:
    """Read and check everything a run needs to resume from one checkpoint folder.

    Raises CheckpointError (one line, naming the file) for anything missing, unreadable or
    inconsistent: the configs, every weight file (all values finite), the optimizer state, and
    a state.json holding `state_keys` with a step that matches the folder's."""
    stored = load_model_folder(folder)
    training = folder / TRAINING_DIR
    files = {"raw.safetensors": None, "optimizer.pt": None, "state.json": None}
    try:
        files["raw.safetensors"] = load_file(str(training / "raw.safetensors"))
        files["optimizer.pt"] = torch.load(training / "optimizer.pt", weights_only=True)
        files["state.json"] = json.loads((training / "state.json").read_text())
    except Exception as error:  # safetensors, pickle and json each fail in their own way
        broken = next(name for name, value in files.items() if value is None)
        raise CheckpointError(f"checkpoint '{folder}': training/{broken} is unreadable ({_one_line(error)})") from None
    raw, optimizer, state = files["raw.safetensors"], files["optimizer.pt"], files["state.json"]
    if not isinstance(state, dict) or any(key not in state for key in state_keys):
        raise CheckpointError(f"checkpoint '{folder}': training/state.json lacks {', '.join(state_keys)}")
    if not isinstance(state.get("step"), int) or state["step"] != stored.step:
        raise CheckpointError(f"checkpoint '{folder}': training/state.json's step does not match config.json's")
    if not isinstance(optimizer, dict) or "state" not in optimizer:
        raise CheckpointError(f"checkpoint '{folder}': training/optimizer.pt holds no optimizer state")
    for name, weights in (("model.safetensors", stored.weights), ("training/raw.safetensors", raw)):
        if not all(torch.isfinite(t.float()).all() for t in weights.values()):
            raise CheckpointError(f"checkpoint '{folder}': {name} holds non-finite values")
    return TrainingCheckpoint(stored.path, stored.model_config, stored.weights, raw, optimizer, state)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def find_resume_point(
    run_dir: str | Path,
    state_keys: tuple[str, ...] = ("step",),
    warn: Callable[[str], None] | None = None,
    move_aside: bool = True,
) -> TrainingCheckpoint:
    """The newest checkpoint of a run that passes `load_training_checkpoint`.

    A damaged checkpoint newer than it is moved aside to `checkpoints/damaged-step_NNNNNNN`
    (kept for inspection, out of the way of anything that reads a run's newest checkpoint),
    and `warn` is told which and why (`move_aside=False` only looks). Raises CheckpointError
    when there is no checkpoint, or none that can be resumed from, naming what was wrong with
    each."""
    found = checkpoint_dirs(run_dir)
    if not found:
        raise CheckpointError(f"'{run_dir}' holds no run to resume (no {CHECKPOINTS_DIR}/{STEP_PREFIX}*)")
    problems = []
    for folder in reversed(found):
        try:
            checkpoint = load_training_checkpoint(folder, state_keys)
        except CheckpointError as error:
            problems.append((folder, str(error)))
            continue
        for damaged, reason in problems if move_aside else []:
            aside = damaged.with_name(f"damaged-{damaged.name}")
            if aside.exists():  # damaged twice at one step: keep both
                aside = damaged.with_name(f"damaged-{damaged.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(damaged, aside)
            if warn is not None:
                warn(f"skipped {damaged.name} ({reason}); moved it aside to {aside.name}; resuming from {folder.name}")
        return checkpoint
    listed = "; ".join(reason for _, reason in problems)
    raise CheckpointError(f"no checkpoint of '{run_dir}' can be resumed from: {listed}")


RUN_ENTRIES = ("run.json", "metrics.jsonl", "loss.png", "samples", CHECKPOINTS_DIR, "autoencoder", "source.json")


def run_folder_state(path: str | Path) -> str:
    """'new' (absent or empty), 'run' (a training run's folder: run.json or checkpoints/), or
    'other' (a file, or a folder holding something else), for `--out` checks before any work."""
    path = Path(path)
    if not path.exists():
        return "new"
    if not path.is_dir():
        return "other"
    if (path / "run.json").is_file() or (path / CHECKPOINTS_DIR).is_dir():
        return "run"
    return "other" if any(path.iterdir()) else "new"


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of a run (keep <= 0 keeps all)."""
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
