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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
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
    )


def load_training_checkpoint(folder: Path) -> TrainingCheckpoint:
    """Read everything a run needs to resume from one checkpoint folder."""
    stored = load_model_folder(folder)
    training = folder / TRAINING_DIR
    try:
        raw = load_file(str(training / "raw.safetensors"))
        optimizer = torch.load(training / "optimizer.pt", weights_only=True)
        state = json.loads((training / "state.json").read_text())
    except (OSError, SafetensorError, json.JSONDecodeError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}' cannot be resumed from: {error}") from None
    return TrainingCheckpoint(stored.path, stored.model_config, stored.weights, raw, optimizer, state)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of a run (keep <= 0 keeps all)."""
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
