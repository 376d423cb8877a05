"""The video compression network: frames <-> latents.

base.py        the `Autoencoder` interface, the pixel-space identity, frame conversions
causal.py      the causal 3D autoencoder (`kind="causal3d"`): encoder, decoder, chunks in time
layers.py      its causal building blocks (convolutions, per-frame norms, resampling, folds)
tiling.py      overlapping spatial tiles for large frames
linear_fit.py  the closed-form fit of its linear path (PCA encoder, least-squares decoder)
folder.py      saving and loading autoencoders, and the one a model works in
"""

from .base import Autoencoder, PixelAutoencoder, crop_to_layout, frames_to_tensor, tensor_to_frames
from .causal import CHUNK_LATENT_FRAMES, TILE_OVERLAP, CausalVideoAutoencoder, DiagonalGaussian
from .folder import build_autoencoder, load_autoencoder, load_model_autoencoder, save_autoencoder
from .linear_fit import fit_linear_path

__all__ = [
    "CHUNK_LATENT_FRAMES",
    "TILE_OVERLAP",
    "Autoencoder",
    "CausalVideoAutoencoder",
    "DiagonalGaussian",
    "PixelAutoencoder",
    "build_autoencoder",
    "crop_to_layout",
    "fit_linear_path",
    "frames_to_tensor",
    "load_autoencoder",
    "load_model_autoencoder",
    "save_autoencoder",
    "tensor_to_frames",
]
