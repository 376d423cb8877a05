"""Training-step throughput and model-FLOPs utilisation: cinecube's transformer against
diffusers' CogVideoXTransformer3DModel at the same width, depth, heads and latent tokens.

Both models see B videos of (F, 16, H, W) latents cut into 1x2x2 patches (64 values per
token, F*H*W/4 tokens per video) and one prompt per video. CogVideoX concatenates a fixed
number of text slots (`max_text_seq_length`, padded) to every video's sequence and runs full
joint attention over both; cinecube runs the video tokens alone, with cross-attention to the
prompt's real text tokens. Both are measured with the same prompt length, which is set by
`real_text_tokens`; `text_slots` is CogVideoX's fixed text length and cinecube's
`text_max_tokens`.

One training step = forward, MSE loss, backward, AdamW step. FLOPs are those of forward and
backward, counted by torch.utils.flop_counter in the same way for both models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cinecube.config import AutoencoderConfig, ModelConfig, TransformerConfig
from cinecube.transformer import DiffusionTransformer

from .common import best_times_interleaved, count_flops


@dataclass(frozen=True)
class TrainingSize:
    width: int = 384
    depth: int = 6
    heads: int = 6
    videos: int = 4
    frames: int = 4  # latent frames per video
    height: int = 16  # latent cells
    width_cells: int = 16
    latent_channels: int = 16
    text_slots: int = 64  # CogVideoX's padded text length; cinecube's text_max_tokens
    real_text_tokens: int = 16  # the prompt's real tokens (cinecube attends to these only)
    text_dim: int = 384

    @property
    def tokens_per_video(self) -> int:
        return self.frames * (self.height // 2) * (self.width_cells // 2)


def cinecube_config(size: TrainingSize) -> ModelConfig:
    return ModelConfig(
        transformer=TransformerConfig(width=size.width, depth=size.depth, heads=size.heads, text_dim=size.text_dim),
        autoencoder=AutoencoderConfig(kind="causal3d", latent_channels=size.latent_channels),
        patch_size=(1, 2, 2),
        text_max_tokens=size.text_slots,
    )


def _training_step(model, optimizer, loss_fn):
    """(step: forward + backward + optimizer, flops: forward + backward only, model)."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    def flops():
        model.zero_grad(set_to_none=True)
        loss_fn().backward()

    return step, flops, model


def cinecube_step(size: TrainingSize, bf16: bool = False, compile: bool = False, seed: int = 0):
    """(step function, flops function, model) of one cinecube training step at `size`."""
    torch.manual_seed(seed)
    config = cinecube_config(size)
    model = DiffusionTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    n = size.tokens_per_video
    grid = torch.stack(
        torch.meshgrid(
            torch.arange(size.frames),
            torch.arange(size.height // 2),
            torch.arange(size.width_cells // 2),
            indexing="ij",
        ),
        -1,
    )
    positions = grid.reshape(-1, 3).float().repeat(size.videos, 1)  # (B*n, 3)
    segment_ids = torch.arange(size.videos).repeat_interleave(n)  # (B*n,)
    tokens = torch.randn(size.videos * n, config.patch_dim)  # (B*n, 64)
    target = torch.randn_like(tokens)
    timesteps = torch.rand(size.videos).repeat_interleave(n)  # per token
    text = torch.randn(size.videos, size.real_text_tokens, size.text_dim)  # real tokens only
    text_mask = torch.ones(size.videos, size.real_text_tokens, dtype=torch.bool)
    forward = torch.compile(model) if compile else model

    def loss_fn():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(tokens, positions, segment_ids, timesteps, text, text_mask)
        return F.mse_loss(out.float(), target)

    return _training_step(model, optimizer, loss_fn)


def diffusers_step(size: TrainingSize, text_tokens: int, bf16: bool = False, seed: int = 0):
    """(step function, flops function, model) of one CogVideoX training step at `size`.

    text_tokens: the text length CogVideoX runs with (its max_text_seq_length).
    """
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    torch.manual_seed(seed)
    head_dim = size.width // size.heads
    model = CogVideoXTransformer3DModel(
        num_attention_heads=size.heads,
        attention_head_dim=head_dim,
        in_channels=size.latent_channels,
        out_channels=size.latent_channels,
        time_embed_dim=size.width,
        text_embed_dim=size.text_dim,
        num_layers=size.depth,
        sample_width=size.width_cells,
        sample_height=size.height,
        sample_frames=(size.frames - 1) * 4 + 1,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=text_tokens,
        use_rotary_positional_embeddings=True,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    gh, gw = size.height // 2, size.width_cells // 2
    # 3D rotary embedding over the video tokens, as the CogVideoX-5B pipeline builds it.
    rotary = get_3d_rotary_pos_embed(head_dim, ((0, 0), (gh, gw)), (gh, gw), size.frames)
    latents = torch.randn(size.videos, size.frames, size.latent_channels, size.height, size.width_cells)
    target = torch.randn_like(latents)
    text = torch.randn(size.videos, text_tokens, size.text_dim)
    timestep = torch.randint(0, 1000, (size.videos,))

    def loss_fn():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(latents, text, timestep, image_rotary_emb=rotary, return_dict=False)[0]
        return F.mse_loss(out.float(), target)

    return _training_step(model, optimizer, loss_fn)


def run(quick: bool, repeats: int | None = None) -> dict:
    """Cinecube (fp32, and bf16 autocast where supported) against CogVideoX (fp32) at one size.

    All steps and the 2048^3 matmuls of the peak are timed round-robin, so every figure and
    the peak they are divided by see the same machine load.
    """
    from .common import bf16_cpu_supported, matmul_calls

    size = (
        TrainingSize(
            width=64,
            depth=2,
            heads=2,
            videos=2,
            frames=2,
            height=8,
            width_cells=8,
            text_slots=16,
            real_text_tokens=8,
            text_dim=32,
        )
        if quick
        else TrainingSize()
    )
    repeats = repeats or (2 if quick else 5)
    tokens = size.videos * size.tokens_per_video
    builders = {
        "cinecube_fp32": lambda: cinecube_step(size),
        "diffusers_fp32": lambda: diffusers_step(size, size.text_slots),
        "diffusers_fp32_equal_text": lambda: diffusers_step(size, size.real_text_tokens),
    }
    if bf16_cpu_supported():
        builders["cinecube_bf16"] = lambda: cinecube_step(size, bf16=True)
        # The reference under the same autocast, so a bf16 win is not credited to cinecube alone.
        builders["diffusers_bf16"] = lambda: diffusers_step(size, size.text_slots, bf16=True)
    built = {name: builder() for name, builder in builders.items()}
    peak_size = 256 if quick else 2048
    peak_calls = {f"matmul_{k}": fn for k, fn in matmul_calls(peak_size).items()}
    seconds = best_times_interleaved({name: b[0] for name, b in built.items()} | peak_calls, repeats, warmup=2)
    results = {
        "size": size.__dict__ | {"tokens_per_video": size.tokens_per_video, "tokens_per_step": tokens},
        "matmul_peak_flop_per_s": {k.split("_", 1)[1]: 2 * peak_size**3 / seconds[k] for k in peak_calls},
    }
    for name, (_step, flops_fn, model) in built.items():
        flops = count_flops(flops_fn)
        results[name] = {
            "seconds_per_step": seconds[name],
            "flops_per_step": flops,
            "flop_per_s": flops / seconds[name],
            "tokens_per_s": tokens / seconds[name],
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    return results
