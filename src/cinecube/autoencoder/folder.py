"""Autoencoders on disk: save and load a causal autoencoder's model folder, and the
autoencoder a model works in (the identity, or its `autoencoder/` folder)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import AutoencoderConfig, ModelConfig
from ..errors import CheckpointError
from ..model_folder import AUTOENCODER_DIR, CONFIG_FILE, load_model_folder, load_weights_into, save_model_folder
from .base import Autoencoder, PixelAutoencoder
from .causal import CausalVideoAutoencoder


def save_autoencoder(
    folder: str | Path, model: CausalVideoAutoencoder, *, dtype: torch.dtype | None = None, replace: bool = False
) -> Path:
    """Write an autoencoder's model folder atomically: config.json + model.safetensors.

    The config.json is an ordinary cinecube model folder config: a ModelConfig whose
    `autoencoder` field is this network's config (its other fields are defaults, unused here).
    So `load_model_folder` reads it like any model folder, and a transformer to be trained on
    these latents takes its `autoencoder` field from it.
    """
    return save_model_folder(folder, ModelConfig(autoencoder=model.config), model, dtype=dtype)


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> CausalVideoAutoencoder:
    """Load a causal autoencoder's model folder (or a run folder's newest checkpoint) in eval mode.

    Raises CheckpointError for a missing or corrupt folder, or one that holds another model.
    """
    stored = load_model_folder(path)
    config = stored.model_config.autoencoder
    if config.kind != "causal3d":
        raise CheckpointError(
            f"checkpoint '{stored.path}' holds no causal3d autoencoder (its autoencoder kind is {config.kind!r})"
        )
    try:
        model = CausalVideoAutoencoder(config)
    except ValueError as error:
        raise CheckpointError(f"checkpoint '{stored.path}': invalid autoencoder config ({error})") from None
    load_weights_into(model, stored.weights, str(stored.path))
    return model.to(device).eval()


def build_autoencoder(config: AutoencoderConfig) -> Autoencoder:
    """A freshly initialised autoencoder of this config (the pixel identity has no weights)."""
    if config.kind == "pixel":
        return PixelAutoencoder(config)
    if config.kind == "causal3d":
        return CausalVideoAutoencoder(config)
    raise ValueError(f"unknown autoencoder kind {config.kind!r}; allowed: 'pixel', 'causal3d'")


def load_model_autoencoder(
    folder: str | Path, model_config: ModelConfig, device: str | torch.device = "cpu"
) -> Autoencoder:
    """The autoencoder a model works in: the identity for kind "pixel", else `folder/autoencoder/`.

    Raises CheckpointError (one line) when that folder is missing, corrupt, or holds another
    network than the model config names.
    """
    config = model_config.autoencoder
    if config.kind == "pixel":
        return build_autoencoder(config).to(device)
    folder = Path(folder)
    stored = folder / AUTOENCODER_DIR
    if not (stored / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"checkpoint '{folder}' uses a {config.kind} autoencoder but has no "
            f"{AUTOENCODER_DIR}/ folder (config.json + model.safetensors) with its weights"
        )
    autoencoder = load_autoencoder(stored, device)
    if autoencoder.config != config:
        raise CheckpointError(
            f"checkpoint '{folder}': {AUTOENCODER_DIR}/ holds another autoencoder than the model config names"
        )
    return autoencoder
