"""Where a training run's batches come from: a world rendered at mixed sizes, or a latent cache.

Both streams hand out token-budget batches (see data/batching.py and data/latents.py) and
resume exactly from their `state_dict`.
"""

from __future__ import annotations

from pathlib import Path

from ..autoencoder import Autoencoder
from ..config import ModelConfig, TrainConfig
from ..data.batching import SizeMix, TokenBudgetStream
from ..errors import CinecubeError
from ..pipeline import tokens_for_size

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

    Canvases must be whole tokens (multiples of `ModelConfig.token_pixels`); frame counts must
    fit the causal layout 1 + tf*k, and when the mix has fewer than two of those, the layout's
    own counts up to world_max_frames are used instead. The pixel autoencoder takes every
    size, so its mix is returned unchanged.
    """
    ae = model_config.autoencoder
    if ae.kind == "pixel":
        return mix
    tf = ae.temporal_factor
    cell_h, cell_w = model_config.token_pixels
    canvases = tuple((h, w) for h, w in mix.canvases if h % cell_h == 0 and w % cell_w == 0)
    if not canvases:
        raise CinecubeError(
            f"no training canvas is a multiple of {cell_h}x{cell_w} pixels (one token: the "
            f"autoencoder's {ae.spatial_factor}x cells times the patch); canvases: {list(mix.canvases)}"
        )
    frame_counts = tuple(f for f in mix.frame_counts if (f - 1) % tf == 0)
    if len(frame_counts) < 2:
        frame_counts = tuple(range(1, max(train.world_max_frames, 1 + tf) + 1, tf))
    return SizeMix(canvases, frame_counts)


def build_stream(
    model_config: ModelConfig, train: TrainConfig, autoencoder: Autoencoder, *, world: str, latent_data=None
):
    """The run's batch stream: cached latents when `latent_data` (a LatentDataset) is given,
    else videos of `world` rendered at the sizes the model can take."""
    if latent_data is not None:
        from ..data.latents import LatentStream

        if latent_data.autoencoder_config != model_config.autoencoder:
            raise CinecubeError(
                f"latent cache '{latent_data.folder}' was made with another autoencoder than the model's"
            )
        return LatentStream(
            latent_data, model_config.patch_size, train.tokens_per_step, train.max_tokens_per_video, seed=train.seed
        )
    world_obj, mix = make_world(world, train, train.seed)
    mix = fit_mix(mix, model_config, train)
    return TokenBudgetStream(
        world_obj,
        mix,
        lambda f, h, w: tokens_for_size(model_config, autoencoder, f, h, w),
        train.tokens_per_step,
        train.max_tokens_per_video,
        seed=train.seed,
    )


def latent_folders(latent_data) -> list[str]:
    """The absolute paths of a latent dataset's cache folders, as run.json records them."""
    return [str(Path(f).resolve()) for f in latent_data.folders]
