"""Model folders: a model's config and weights on disk, written atomically, read with clear errors.

A model folder is what `Pipeline.from_pretrained` and `cinecube export` read and write, and
what every training checkpoint is at heart:

    config.json              {"format", "model": ModelConfig, "train": TrainConfig | null, "step"}
    model.safetensors        inference weights (a training run's EMA weights)
    autoencoder/             the video compression network the model works in (a model folder
                             of its own); only for models whose autoencoder kind is not "pixel"
    training/                only in training checkpoints: what resuming needs
                             (written by cinecube.train.checkpoint through `extra_files`)

A run folder keeps its checkpoints, each a model folder, under `checkpoints/step_NNNNNNN`;
anything that takes a model folder also takes a run folder and reads its newest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig, TrainConfig
from .errors import CheckpointError
from .outputs import staged_folder

FORMAT = "cinecube-checkpoint/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
AUTOENCODER_DIR = "autoencoder"
CHECKPOINTS_DIR = "checkpoints"
STEP_PREFIX = "step_"


@dataclass
class ModelFolder:
    """A model folder as read from disk: its configs, step and inference weights."""

    path: Path
    model_config: ModelConfig
    train_config: TrainConfig | None
    step: int
    weights: dict[str, torch.Tensor]


def state_dict_for_saving(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A module's tensors as safetensors wants them: contiguous, on the CPU, floats cast to `dtype`."""
    return {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
        for k, v in module.state_dict().items()
    }


def save_model_folder(
    folder: str | Path,
    model_config: ModelConfig,
    weights: torch.nn.Module,
    *,
    train_config: TrainConfig | None = None,
    step: int = 0,
    dtype: torch.dtype | None = None,
    autoencoder_dir: str | Path | None = None,
    extra_files: Callable[[Path], None] | None = None,
    replace: bool = False,
) -> Path:
    """Write a model folder atomically. `dtype` (e.g. bfloat16) shrinks shipped weights.

    `autoencoder_dir` (an autoencoder's model folder) is copied in as `autoencoder/`, so the
    folder alone rebuilds a latent-space model. `extra_files(tmp)` writes more files into the
    folder before it is published (a training checkpoint's `training/`).

    Everything is written into a temporary sibling folder that is renamed into place, so a
    crash never leaves a half-written folder under the real name. An existing folder is
    replaced only with `replace` (the caller has checked it may go: see outputs.py).
    """
    folder = Path(folder)
    if (folder.exists() or folder.is_symlink()) and not replace:
        raise CheckpointError(f"'{folder}' already exists; it is replaced only when asked")
    with staged_folder(folder) as tmp:
        config = {
            "format": FORMAT,
            "model": model_config.to_dict(),
            "train": train_config.to_dict() if train_config else None,
            "step": step,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        save_file(state_dict_for_saving(weights, dtype), str(tmp / WEIGHTS_FILE))
        if extra_files is not None:
            extra_files(tmp)
        if autoencoder_dir is not None:
            copy_tree_linked(autoencoder_dir, tmp / AUTOENCODER_DIR)
    return folder


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` holds a model folder cinecube wrote and nothing else (so it may be replaced)."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    own_entries = {CONFIG_FILE, WEIGHTS_FILE, AUTOENCODER_DIR, "training"}
    return (
        isinstance(config, dict)
        and config.get("format") == FORMAT
        and all(entry.name in own_entries for entry in path.iterdir())
    )


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The checkpoint folders of a run folder (`checkpoints/step_*`), oldest first."""
    ckpt_root = Path(run_dir) / CHECKPOINTS_DIR
    if not ckpt_root.is_dir():
        return []
    found = [
        p
        for p in ckpt_root.iterdir()
        if p.is_dir() and p.name.startswith(STEP_PREFIX) and p.name[len(STEP_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run folder (-> its newest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"model '{path}' does not exist: give a checkpoint folder "
            "(with config.json and model.safetensors) or a run folder"
        )
    if (path / CONFIG_FILE).is_file():
        return path
    found = checkpoint_dirs(path)
    if found:
        return found[-1]
    raise CheckpointError(
        f"'{path}' is neither a checkpoint folder (config.json + model.safetensors) "
        "nor a run folder with checkpoints/step_*"
    )


def load_model_folder(path: str | Path) -> ModelFolder:
    """Read a model folder's (or a run folder's newest checkpoint's) config and weights, validating both."""
    folder = resolve_model_dir(path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint '{folder}': config.json is unreadable ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{folder}': config.json is not a {FORMAT} file")
    try:
        model_config = ModelConfig.from_dict(config["model"])
        train_config = TrainConfig.from_dict(config["train"]) if config.get("train") else None
        step = int(config.get("step", 0))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}': config.json has an invalid config ({error})") from None
    weights_file = folder / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CheckpointError(f"checkpoint '{folder}': model.safetensors is missing")
    try:
        weights = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint '{folder}': model.safetensors is corrupt ({error})") from None
    return ModelFolder(folder, model_config, train_config, step, weights)


def load_weights_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with float conversion; a shape or key mismatch is a CheckpointError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{where}' does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for name, tensor in weights.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"checkpoint '{where}': {name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)}"
            )
        if not torch.isfinite(tensor.float()).all():
            raise CheckpointError(f"checkpoint '{where}': {name} holds non-finite values")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()})


def copy_tree_linked(source: str | Path, target: str | Path) -> None:
    """Copy a folder, hard-linking files where the file system allows.

    Model folder files are never modified in place (every write goes to a new file that is
    renamed), so a link is as safe as a copy and costs no space: every checkpoint of a run
    can carry the same autoencoder.
    """

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)
