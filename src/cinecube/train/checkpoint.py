"""Checkpoints: written atomically, loaded with clear errors, enough to resume exactly.

A checkpoint is a folder:

    config.json              {"format", "model": ModelConfig, "train": TrainConfig | null, "step"}
    model.safetensors        inference weights (the EMA weights of a training run)
    training/raw.safetensors the raw (non-EMA) weights            } only in training
    training/optimizer.pt    AdamW state (tensors only)           } checkpoints, needed
    training/state.json      step, data-stream state, counters    } to resume
    autoencoder/             the video compression network the model works in (a checkpoint
                             folder of its own, `save_autoencoder` format); only for models
                             whose autoencoder kind is not "pixel"

It is written into a temporary sibling folder and renamed into place, so a crash never leaves
a half-written checkpoint under a real name. A run folder keeps the newest k of them under
`checkpoints/step_NNNNNNN`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, TrainConfig
from ..errors import CheckpointError

FORMAT = "cinecube-checkpoint/1"
STEP_PREFIX = "step_"
AUTOENCODER_DIR = "autoencoder"


@dataclass
class Checkpoint:
    path: Path
    model_config: ModelConfig
    train_config: TrainConfig | None
    step: int
    weights: dict[str, torch.Tensor]


def _state_dict_for_saving(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
            for k, v in module.state_dict().items()}


def save_checkpoint(folder: str | Path, model_config: ModelConfig, weights: torch.nn.Module, *,
                    train_config: TrainConfig | None = None, step: int = 0,
                    raw_model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                    state: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                    autoencoder_dir: str | Path | None = None) -> Path:
    """Write a checkpoint folder atomically. `dtype` (e.g. bfloat16) shrinks shipped weights.

    `autoencoder_dir` (an autoencoder checkpoint folder) is copied in as `autoencoder/`, so the
    folder alone rebuilds a latent-space model."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        config = {"format": FORMAT, "model": model_config.to_dict(),
                  "train": train_config.to_dict() if train_config else None, "step": step}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file(_state_dict_for_saving(weights, dtype), str(tmp / "model.safetensors"))
        if raw_model is not None or optimizer is not None or state is not None:
            (tmp / "training").mkdir()
            if raw_model is not None:
                save_file(_state_dict_for_saving(raw_model), str(tmp / "training" / "raw.safetensors"))
            if optimizer is not None:
                torch.save(optimizer.state_dict(), tmp / "training" / "optimizer.pt")
            (tmp / "training" / "state.json").write_text(json.dumps(state or {}, indent=2))
        if autoencoder_dir is not None:
            copy_tree_linked(autoencoder_dir, tmp / AUTOENCODER_DIR)
        if folder.exists():   # replacing: move the old one aside first, then swap
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The checkpoints of a run folder, oldest first."""
    ckpt_root = Path(run_dir) / "checkpoints"
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir()
             if p.is_dir() and p.name.startswith(STEP_PREFIX) and p.name[len(STEP_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def resolve_model_dir(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (-> its newest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model '{path}' does not exist: give a checkpoint folder "
                              "(with config.json and model.safetensors) or a run folder")
    if (path / "config.json").is_file():
        return path
    found = checkpoint_dirs(path)
    if found:
        return found[-1]
    raise CheckpointError(f"'{path}' is neither a checkpoint folder (config.json + model.safetensors) "
                          "nor a run folder with checkpoints/step_*")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder's config and inference weights, validating both."""
    folder = resolve_model_dir(path)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint '{folder}': config.json is unreadable ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{folder}': config.json is not a {FORMAT} file")
    try:
        model_config = ModelConfig.from_dict(config["model"])
        train_config = TrainConfig.from_dict(config["train"]) if config.get("train") else None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}': config.json has an invalid config ({error})") from None
    weights_file = folder / "model.safetensors"
    if not weights_file.is_file():
        raise CheckpointError(f"checkpoint '{folder}': model.safetensors is missing")
    try:
        weights = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}': model.safetensors is corrupt ({error})") from None
    return Checkpoint(folder, model_config, train_config, int(config.get("step", 0)), weights)


def load_weights_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with float conversion; a shape or key mismatch is a CheckpointError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{where}' does not match its config: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, tensor in weights.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"checkpoint '{where}': {name} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(own[name].shape)}")
        if not torch.isfinite(tensor.float()).all():
            raise CheckpointError(f"checkpoint '{where}': {name} holds non-finite values")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()})


def load_training_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(raw weights, optimizer state, run state) of a training checkpoint."""
    training = folder / "training"
    try:
        raw = load_file(str(training / "raw.safetensors"))
        optimizer = torch.load(training / "optimizer.pt", weights_only=True)
        state = json.loads((training / "state.json").read_text())
    except (OSError, SafetensorError, json.JSONDecodeError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}' cannot be resumed from: {error}") from None
    return raw, optimizer, state


def copy_tree_linked(source: str | Path, target: str | Path) -> None:
    """Copy a folder, hard-linking files where the file system allows.

    Checkpoint files are never modified in place (every write goes to a new file that is
    renamed), so a link is as safe as a copy and costs no space: every checkpoint of a run
    can carry the same autoencoder.
    """
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def load_model_autoencoder(folder: str | Path, model_config: ModelConfig, device: str | torch.device = "cpu"):
    """The autoencoder a model works in: the identity for kind "pixel", else `folder/autoencoder/`.

    Raises CheckpointError (one line) when that folder is missing, corrupt, or holds another
    network than the model config names.
    """
    from ..autoencoder import build_autoencoder, load_autoencoder

    config = model_config.autoencoder
    if config.kind == "pixel":
        return build_autoencoder(config).to(device)
    folder = Path(folder)
    stored = folder / AUTOENCODER_DIR
    if not (stored / "config.json").is_file():
        raise CheckpointError(f"checkpoint '{folder}' uses a {config.kind} autoencoder but has no "
                              f"{AUTOENCODER_DIR}/ folder (config.json + model.safetensors) with its weights")
    autoencoder = load_autoencoder(stored, device)
    if autoencoder.config != config:
        raise CheckpointError(f"checkpoint '{folder}': {AUTOENCODER_DIR}/ holds another autoencoder than "
                              "the model config names")
    return autoencoder
