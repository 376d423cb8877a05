"""Sample videos written during training, to watch a run learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..autoencoder import tensor_to_frames
from ..pipeline import generate_video
from ..video_io import write_video

SAMPLE_PROMPTS = (
    "a red circle moving right on a black background",
    "a blue square moving up on a white background",
    "a green triangle moving left on gray",
    "a yellow circle moving down and a purple square, still, on black",
)


@torch.no_grad()
def write_samples(
    model, autoencoder, text_encoder, path: Path, height: int = 32, width: int = 32, frames: int = 16, steps: int = 20
) -> None:
    """A side-by-side video of the sample prompts (and the prompts in a .txt beside it).

    Training samples are diagnostics of a run, not published videos: they go to the run
    folder without the output gate (no watermark or manifest)."""
    frames = autoencoder.pixel_frames(autoencoder.latent_frames(frames))  # the causal layout's count
    was_training = model.training
    model.eval()
    videos = [
        tensor_to_frames(
            generate_video(
                model, autoencoder, text_encoder, prompt, frames, height, width, steps=steps, guidance=3.0, seed=i
            )
        )
        for i, prompt in enumerate(SAMPLE_PROMPTS)
    ]
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    gap = np.full((frames, height, 2, 3), 255, dtype=np.uint8)
    row = np.concatenate([x for v in videos for x in (v, gap)][:-1], axis=2)
    # Upscale 4x so the small samples are watchable.
    write_video(path, row.repeat(4, axis=1).repeat(4, axis=2), fps=8)
    (path.with_suffix(".txt")).write_text("\n".join(SAMPLE_PROMPTS) + "\n")
