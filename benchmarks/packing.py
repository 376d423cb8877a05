"""Packing vs padding vs per-size bucketing on a realistic mix of sizes and durations.

One sampled mix of videos (1:1, 16:9 and 9:16 canvases; 1 to 32 frames) is trained on
(forward + backward of the same cinecube model) three ways:

- packing: all videos in one sequence, block-diagonal attention (cinecube's own path);
- padding: every video padded to the longest one, dense attention over the padded batch
  with a key-padding mask (pad tokens are computed, then dropped from the loss);
- bucketing: videos grouped by equal token count, one batch per group.

The figure is useful (non-pad) tokens per second.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from cinecube import transformer as transformer_module
from cinecube.config import PRESETS, ModelConfig
from cinecube.patches import pack
from cinecube.transformer import DiffusionTransformer

from .common import best_times_interleaved

# (height, width) in pixels for the pixel autoencoder with 4x4x4 patches: each canvas is
# 144 tokens per 4 frames, so durations of 1..32 frames give 144..1152 tokens per video.
CANVASES = {"1:1": (48, 48), "16:9": (36, 64), "9:16": (64, 36)}
MAX_FRAMES = 32
QUICK_CANVASES = {"1:1": (8, 8), "16:9": (8, 16), "9:16": (16, 8)}


def sample_mix(count: int, seed: int, canvases=CANVASES, max_frames=MAX_FRAMES) -> list[tuple[int, int, int]]:
    """(frames, height, width) of `count` videos: uniform canvas, uniform duration 1..max_frames."""
    rng = np.random.default_rng(seed)
    names = list(canvases)
    return [(int(rng.integers(1, max_frames + 1)), *canvases[names[rng.integers(len(names))]]) for _ in range(count)]


@contextlib.contextmanager
def key_padding_self_attention(valid: torch.Tensor):
    """Swap cinecube's attention seam for dense attention over a padded batch.

    valid (B, L) is True at real tokens. Self-attention (every query segment of length L)
    runs as one (B, H, L, L) attention with the padded keys masked out; cross-attention to
    the text is unchanged.
    """
    original = transformer_module.varlen_attention
    batch, length = valid.shape
    key_mask = valid[:, None, None, :]  # (B, 1, 1, L)

    def padded(q, k, v, q_lengths, k_lengths):
        if list(k_lengths) != [length] * batch:
            return original(q, k, v, q_lengths, k_lengths)
        heads, d = q.shape[1:]

        def view(x):
            return x.view(batch, length, heads, d).transpose(1, 2)  # (B, H, L, d)

        # The fused kernel with a key mask: on padded sequences it beats plain matmuls, whose
        # (B, H, L, L) scores grow with the padding, so the reference runs at its best.
        o = F.scaled_dot_product_attention(view(q), view(k), view(v), attn_mask=key_mask)
        return o.transpose(1, 2).reshape(batch * length, heads, d)

    transformer_module.varlen_attention = padded
    try:
        yield
    finally:
        transformer_module.varlen_attention = original


def run(quick: bool, seed: int = 0, repeats: int | None = None) -> dict:
    """Useful tokens/s of the three ways on one sampled mix (the bundled `small` model's shape)."""
    config: ModelConfig = PRESETS["tiny" if quick else "small"]
    sizes = sample_mix(4, seed, QUICK_CANVASES, max_frames=8) if quick else sample_mix(12, seed)
    repeats = repeats or (1 if quick else 2)
    torch.manual_seed(seed)
    model = DiffusionTransformer(config)
    channels = config.latent_channels
    latents = [torch.randn(channels, f, h, w) for f, h, w in sizes]
    text_lengths = [int(n) for n in np.random.default_rng(seed + 1).integers(8, 21, len(sizes))]
    text = torch.randn(len(sizes), max(text_lengths), config.transformer.text_dim)
    text_mask = torch.arange(max(text_lengths))[None] < torch.tensor(text_lengths)[:, None]
    t_video = torch.rand(len(sizes))
    patch = config.patch_size

    def train_packed(items: list[int]) -> int:
        batch = pack([latents[i] for i in items], patch)
        t = t_video[items][batch.segment_ids]
        out = model(batch.tokens, batch.positions, batch.segment_ids, t, text[items], text_mask[items])
        F.mse_loss(out, batch.tokens).backward()
        return batch.tokens.shape[0]

    everything = list(range(len(sizes)))
    useful = pack(latents, patch).tokens.shape[0]

    # Padding: each video's tokens padded to the longest; positions 0, the video's own t.
    batch = pack(latents, patch)
    longest = max(batch.lengths)
    count = len(sizes)
    tokens = torch.zeros(count, longest, batch.tokens.shape[1])
    positions = torch.zeros(count, longest, 3)
    valid = torch.zeros(count, longest, dtype=torch.bool)
    for i, (seq, pos) in enumerate(zip(batch.tokens.split(batch.lengths), batch.positions.split(batch.lengths))):
        tokens[i, : len(seq)], positions[i, : len(seq)], valid[i, : len(seq)] = seq, pos, True
    segment_ids = torch.arange(count).repeat_interleave(longest)
    t_padded = t_video[segment_ids]

    def train_padded() -> None:
        with key_padding_self_attention(valid):
            out = model(
                tokens.view(-1, tokens.shape[-1]), positions.view(-1, 3), segment_ids, t_padded, text, text_mask
            )
        keep = valid.view(-1)
        F.mse_loss(out[keep], tokens.view(-1, tokens.shape[-1])[keep]).backward()

    buckets: dict[int, list[int]] = {}
    for i, length in enumerate(batch.lengths):
        buckets.setdefault(length, []).append(i)

    def train_bucketed() -> None:
        for items in buckets.values():
            train_packed(items)

    def step(fn):
        def run_step():
            model.zero_grad(set_to_none=True)
            fn()

        return run_step

    seconds = best_times_interleaved(
        {
            "packing": step(lambda: train_packed(everything)),
            "padding": step(train_padded),
            "bucketing": step(train_bucketed),
        },
        repeats,
        warmup=1,
    )
    return {
        "videos": [{"frames": f, "height": h, "width": w} for f, h, w in sizes],
        "model": {
            "width": config.transformer.width,
            "depth": config.transformer.depth,
            "heads": config.transformer.heads,
            "patch": list(patch),
        },
        "useful_tokens": useful,
        "padded_tokens": count * longest,
        "buckets": len(buckets),
        "seconds": seconds,
        "useful_tokens_per_s": {name: useful / s for name, s in seconds.items()},
    }
