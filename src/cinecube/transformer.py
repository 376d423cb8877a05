"""The diffusion transformer, top to bottom in one file.

A pure function of its inputs; it knows nothing about noise schedules:

    prediction = model(tokens, positions, segment_ids, timesteps, text, text_mask)

    tokens       (N, P)     N packed spacetime-patch tokens of P = C*pt*ph*pw values
    positions    (N, 3)     (t, h, w) of each token inside its own video -> 3D rotary embedding
    segment_ids  (N,)       which video each token belongs to; sorted, contiguous, 0..S-1
    timesteps    (N,)       a diffusion time per token (clean conditioning frames use t = 0)
    text         (S, L, E)  text-encoder token embeddings, one row per video
    text_mask    (S, L)     True where a text token is real
    prediction   (N, P)

Blocks are adaLN-zero (DiT), modulated per token by the timestep embedding plus a pooled
text embedding of the token's video; self-attention is block-diagonal over videos
(packing, not padding); cross-attention goes to the video's own text tokens; queries and
keys are RMS-normalised (QK norm). All attention goes through `varlen_attention`, the one
place a GPU kernel (flash-attention varlen, flex attention) plugs in.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

# ---------------------------------------------------------------------------------------
# Attention over packed, variable-length segments
# ---------------------------------------------------------------------------------------


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, q_lengths: list[int], k_lengths: list[int]) -> Tensor:
    """Attention where query segment i attends only to key segment i.

    q (Nq, H, d), k and v (Nk, H, d); q_lengths and k_lengths split them into segments
    (the `cu_seqlens` of flash-attention's varlen interface). Returns (Nq, H, d).

    CPU path: segments with the same (query, key) lengths are stacked into one batched
    scaled_dot_product_attention call, so no FLOP is spent on masked-out pairs. Segments are
    cut with `split` and joined with `cat` (whose backward passes are a cat and a split, not a
    zero-filled scatter per segment); when all segments have the same shape (a bucket, or the
    guided copies of one video at sampling) the batch is a view and nothing is copied.
    """
    shapes = list(zip(q_lengths, k_lengths))
    if len(set(shapes)) == 1:  # every segment the same shape: one call on views
        b, (nq, nk) = len(shapes), shapes[0]
        return _attend(q, k, v, b, nq, nk)

    q_parts, k_parts, v_parts = q.split(q_lengths), k.split(k_lengths), v.split(k_lengths)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, shape in enumerate(shapes):
        groups[shape].append(index)
    outputs: list[Tensor] = [q] * len(shapes)
    for (nq, nk), members in groups.items():
        qs = torch.cat([q_parts[i] for i in members])  # (B*nq, H, d)
        ks = torch.cat([k_parts[i] for i in members])  # (B*nk, H, d)
        vs = torch.cat([v_parts[i] for i in members])
        o = _attend(qs, ks, vs, len(members), nq, nk)  # (B*nq, H, d)
        for part, i in zip(o.split(nq), members):
            outputs[i] = part
    return torch.cat(outputs)


def _attend(q: Tensor, k: Tensor, v: Tensor, b: int, nq: int, nk: int) -> Tensor:
    """Dense attention of b equal segments: q (b*nq, H, d), k and v (b*nk, H, d) -> (b*nq, H, d)."""
    heads, d = q.shape[1:]
    q = q.view(b, nq, heads, d).transpose(1, 2)  # (b, H, nq, d)
    k = k.view(b, nk, heads, d).transpose(1, 2)
    v = v.view(b, nk, heads, d).transpose(1, 2)
    if q.device.type == "cpu" and torch.is_grad_enabled():
        o = _attend_by_matmul(q, k, v)
    else:
        o = F.scaled_dot_product_attention(q, k, v)
    return o.transpose(1, 2).reshape(b * nq, heads, d)


def _attend_by_matmul(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v with plain batched matmuls, for CPU training: the CPU flash
    kernel's backward was ~3x its forward and slowest on the short segments of packed batches
    (cross-attention to 16 text tokens: 3.8 ms a call), while the scores here, (b, H, nq, nk),
    are small at the sequence lengths a CPU trains on."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (b, H, nq, nk)
    return scores.softmax(dim=-1).to(v.dtype) @ v  # (b, H, nq, d)


# ---------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 like DDPM step indices). (N,) -> (N, dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Rotary3D(nn.Module):
    """3D rotary position embedding: the head dimension is split between the t, h, w axes."""

    def __init__(
        self,
        head_dim: int,
        axes: tuple[float, float, float],
        theta: float,
        scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ):
        super().__init__()
        # Each axis gets an even number of dimensions; the remainder goes to the last axis.
        dims = [2 * int(head_dim * a / 2) for a in axes[:2]]
        dims.append(head_dim - sum(dims))
        self.dims = dims
        # Token i sits at i * s + (s - 1) / 2: with s = 1/2 (cubes refined 2 -> 1), fine tokens
        # 2i and 2i+1 sit at i -/+ 1/4, centred on the coarse token i they came from.
        self.scale, self.offset = tuple(scale), tuple((s - 1) / 2 for s in scale)
        for name, d in zip("thw", dims):
            freqs = theta ** (-torch.arange(0, d, 2).float() / d)  # (d/2,)
            self.register_buffer(f"freqs_{name}", freqs, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """positions (N, 3) -> unit complex rotations (N, 1, head_dim/2) for (N, H, head_dim)."""
        if self.scale != (1.0, 1.0, 1.0):
            positions = positions * positions.new_tensor(self.scale) + positions.new_tensor(self.offset)
        angles = torch.cat(
            [
                positions[:, 0:1] * self.freqs_t,
                positions[:, 1:2] * self.freqs_h,
                positions[:, 2:3] * self.freqs_w,
            ],
            dim=-1,
        )  # (N, head_dim/2)
        return torch.polar(torch.ones_like(angles), angles)[:, None]


def rms_norm(norm: nn.RMSNorm, x: Tensor) -> Tensor:
    """`norm(x)` with its weight in x's dtype: under bf16 autocast the fused kernel then runs,
    where a bf16 input with an fp32 weight falls back to five separate elementwise ops."""
    return F.rms_norm(x, norm.normalized_shape, norm.weight.to(x.dtype), norm.eps)


def apply_rotary(x: Tensor, rotations: Tensor) -> Tensor:
    """Rotate consecutive pairs (x1, x2) of x (N, H, d) by the unit complex numbers (N, 1, d/2).

    (x1 + i x2) * (cos a + i sin a) = (x1 cos a - x2 sin a) + i (x1 sin a + x2 cos a): one
    complex multiply instead of four real ones and a stack.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (N, H, d/2) complex
    return torch.view_as_real(pairs * rotations).flatten(-2).type_as(x)


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)  # fused projection: one matmul, not three
        self.q_norm = nn.RMSNorm(width // heads)
        self.k_norm = nn.RMSNorm(width // heads)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, rope: Tensor, lengths: list[int]) -> Tensor:
        n, width = x.shape
        q, k, v = self.qkv(x).view(n, 3, self.heads, width // self.heads).unbind(1)  # (N, H, d)
        q = apply_rotary(rms_norm(self.q_norm, q), rope)
        k = apply_rotary(rms_norm(self.k_norm, k), rope)
        o = varlen_attention(q, k, v, lengths, lengths)  # (N, H, d)
        return self.out(o.reshape(n, width))


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.q_norm = nn.RMSNorm(width // heads)
        self.k_norm = nn.RMSNorm(width // heads)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, text: Tensor, lengths: list[int], text_lengths: list[int]) -> Tensor:
        """x (N, D) packed video tokens; text (M, D) the packed real text tokens of all videos."""
        n, width = x.shape
        d = width // self.heads
        q = rms_norm(self.q_norm, self.q(x).view(n, self.heads, d))  # (N, H, d)
        k, v = self.kv(text).view(text.shape[0], 2, self.heads, d).unbind(1)  # (M, H, d)
        o = varlen_attention(q, rms_norm(self.k_norm, k), v, lengths, text_lengths)
        return self.out(o.reshape(n, width))


def modulation_per_token(modulation: nn.Module, cond: Tensor, cond_index: Tensor, parts: int) -> list[Tensor]:
    """adaLN shift / (1 + scale) / gate rows for every token: `parts` tensors of (N, D).

    The conditioning takes only a few distinct values (one per video and timestep), so the
    modulation MLP runs on those (U, D) rows; scales get their 1 + there, and each part is then
    looked up per token with `F.embedding`, whose CPU backward is several times faster than
    that of indexing or index_select (a scatter_add). Parts come in (shift, scale, gate) order;
    scales are returned as 1 + scale.
    """
    rows = modulation(cond).chunk(parts, dim=-1)  # parts x (U, D)
    rows = [1 + r if i % 3 == 1 else r for i, r in enumerate(rows)]
    return [F.embedding(cond_index, r) for r in rows]  # parts x (N, D)


class Block(nn.Module):
    """adaLN-zero transformer block with cross-attention to the text."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross = CrossAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        # shift, scale, gate for attention and for the MLP; zero-initialised so each block
        # starts as the identity (adaLN-zero).
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        cond_index: Tensor,
        rope: Tensor,
        text: Tensor,
        lengths: list[int],
        text_lengths: list[int],
    ) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation_per_token(self.modulation, cond, cond_index, 6)
        x = torch.addcmul(x, gate1, self.attn(torch.addcmul(shift1, self.norm1(x), scale1), rope, lengths))
        x = x + self.cross(self.norm_cross(x), text, lengths, text_lengths)
        x = torch.addcmul(x, gate2, self.mlp(torch.addcmul(shift2, self.norm2(x), scale2)))
        return x


class FinalLayer(nn.Module):
    def __init__(self, width: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, patch_dim)
        for layer in (self.modulation[1], self.linear):  # zero output at initialisation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, cond: Tensor, cond_index: Tensor) -> Tensor:
        shift, scale = modulation_per_token(self.modulation, cond, cond_index, 2)
        return self.linear(torch.addcmul(shift, self.norm(x), scale))


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class DiffusionTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        cfg = config.transformer
        width = cfg.width
        self.token_in = nn.Linear(config.patch_dim, width)
        self.time_embed = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.text_in = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, width))
        self.text_pool = nn.Sequential(nn.Linear(cfg.text_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.rope = Rotary3D(width // cfg.heads, cfg.rope_axes, cfg.rope_theta, cfg.rope_scale)
        self.blocks = nn.ModuleList(Block(width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(width, config.patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight.abs().sum() > 0:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.time_embed[0].weight, std=0.02)
        nn.init.normal_(self.time_embed[2].weight, std=0.02)

    def forward(
        self, tokens: Tensor, positions: Tensor, segment_ids: Tensor, timesteps: Tensor, text: Tensor, text_mask: Tensor
    ) -> Tensor:
        num_segments = text.shape[0]
        # Segment and text lengths as Python ints: the one host sync of the forward pass.
        lengths = torch.bincount(segment_ids, minlength=num_segments).tolist()
        text_lengths = text_mask.sum(dim=1).tolist()
        if len(lengths) != num_segments or min(lengths) == 0:
            raise ValueError(f"segment_ids must cover 0..{num_segments - 1} (one text row per video)")
        if min(text_lengths) == 0:
            raise ValueError("every video needs at least one text token (encode '' for unconditional)")

        # Per-token conditioning = timestep embedding + pooled text of the token's video.
        # Computed once per distinct (video, timestep) pair: (U, D), gathered by cond_index (N,).
        keys = torch.stack([segment_ids.to(timesteps.dtype), timesteps], dim=1)
        unique_keys, cond_index = torch.unique(keys, dim=0, return_inverse=True)
        mask = text_mask.to(text.dtype)[..., None]
        pooled = (text * mask).sum(1) / mask.sum(1)  # (S, E)
        cond = (
            self.time_embed(timestep_embedding(unique_keys[:, 1], 256))
            + self.text_pool(pooled)[unique_keys[:, 0].long()]
        )  # (U, D)

        text_tokens = self.text_in(text[text_mask])  # (M, D) real tokens only
        rope = self.rope(positions)
        x = self.token_in(tokens)  # (N, D)
        for block in self.blocks:
            x = block(x, cond, cond_index, rope, text_tokens, lengths, text_lengths)
        return self.final(x, cond, cond_index)  # (N, P)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------
# Growing a trained model deeper
# ---------------------------------------------------------------------------------------


def deepened_state_dict(source: dict[str, Tensor], source_depth: int, target_depth: int) -> dict[str, Tensor]:
    """The weights of a `target_depth`-block model that computes exactly what the
    `source_depth`-block model with weights `source` computes (depth growth).

    The source blocks keep their order; the new blocks are spread between them (6 -> 8:
    s0 s1 n s2 s3 n s4 s5), each a copy of the block before it (of block 0 when it comes
    first, which happens only when the depth more than doubles) with its adaLN modulation
    and its cross-attention output projection zeroed. Its gates are then 0, its scales 1
    and its shifts 0, and the unzeroed cross-attention adds 0, so the block passes its input
    through unchanged; training starts from the source model's function, with the copied
    projections as a better starting point than random ones. Everything outside the blocks
    is copied as it is.
    """
    if not 1 <= source_depth <= target_depth:
        raise ValueError(
            f"a model of {source_depth} blocks cannot be grown to {target_depth} blocks; "
            f"the new depth must be at least {source_depth}"
        )
    new_blocks = target_depth - source_depth
    # How many new blocks follow each source block: new block k goes after source block
    # floor((k+1) * S / (new+1)) - 1, where -1 means in front of all of them.
    new_after = Counter(((k + 1) * source_depth) // (new_blocks + 1) - 1 for k in range(new_blocks))
    order = [(0, True)] * new_after[-1]  # (source block it copies, whether it is new)
    for i in range(source_depth):
        order += [(i, False)] + [(i, True)] * new_after[i]
    grown = {name: tensor for name, tensor in source.items() if not name.startswith("blocks.")}
    for position, (copied, is_new) in enumerate(order):
        prefix = f"blocks.{copied}."
        for name, tensor in source.items():
            if not name.startswith(prefix):
                continue
            local = name[len(prefix) :]
            value = tensor.clone()
            if is_new and local.startswith(("modulation.", "cross.out.")):
                value.zero_()
            grown[f"blocks.{position}.{local}"] = value
    return grown


# ---------------------------------------------------------------------------------------
# Refining a trained model's cubes (e.g. 1x2x2 -> 1x1x1 latent cells per token)
# ---------------------------------------------------------------------------------------


def _refinement(source_patch: tuple[int, int, int], target_patch: tuple[int, int, int]) -> tuple[int, int, int]:
    """How many target cubes fit along each axis of a source cube; refuses what does not divide."""
    if any(q < 1 or p % q for p, q in zip(source_patch, target_patch)):
        raise ValueError(
            f"cubes of {'x'.join(map(str, source_patch))} cells can only be refined to "
            f"cubes that divide them along every axis, not {'x'.join(map(str, target_patch))}"
        )
    return tuple(p // q for p, q in zip(source_patch, target_patch))


def refined_model_config(target: ModelConfig, source: ModelConfig) -> ModelConfig:
    """`target` (a model config with the cubes of `source` or finer ones) made to see its videos
    as the source did: the source's rotary positions, scaled so a fine token sits inside the
    coarse token it came from, and the source's timestep-shift token base multiplied by the
    tokens per coarse cube, so a video gets the same noise schedule with its 4x (say) more
    tokens. With the same cubes, the source's values as they are."""
    ratio = _refinement(source.patch_size, target.patch_size)
    rope_scale = tuple(s / r for s, r in zip(source.transformer.rope_scale, ratio))
    base = source.diffusion.shift_base_tokens * math.prod(ratio)
    return dataclasses.replace(
        target,
        transformer=dataclasses.replace(target.transformer, rope_scale=rope_scale),
        diffusion=dataclasses.replace(target.diffusion, shift_base_tokens=base),
    )


def refined_state_dict(
    source: dict[str, Tensor], source_patch: tuple[int, int, int], target_patch: tuple[int, int, int], channels: int
) -> dict[str, Tensor]:
    """The weights of a model with finer cubes (`target_patch`) that starts from the trained
    coarse model `source`: everything but the token embedding and the output layer is copied.

    A fine token is embedded as its coarse cube would be if that cube were filled with the
    fine token's values (the source embedding summed over the sub-cubes), and it predicts the
    mean of the source's predictions for the sub-cubes of its coarse cube. With the positions of
    `refined_model_config` the fine model then starts close to the source's function on videos
    that are constant inside each coarse cube (not exactly: the sub-cubes' rotary positions sit
    a quarter token apart; tested) and learns from there what the finer grid can show.
    """
    rt, rh, rw = _refinement(source_patch, target_patch)
    qt, qh, qw = target_patch
    refined = dict(source)
    w_in = source["token_in.weight"]  # (D, C*pt*ph*pw)
    width = w_in.shape[0]
    w_in = w_in.reshape(width, channels, rt, qt, rh, qh, rw, qw)
    refined["token_in.weight"] = w_in.sum(dim=(2, 4, 6)).reshape(width, -1).contiguous()
    w_out = source["final.linear.weight"].reshape(channels, rt, qt, rh, qh, rw, qw, width)
    refined["final.linear.weight"] = w_out.mean(dim=(1, 3, 5)).reshape(-1, width).contiguous()
    b_out = source["final.linear.bias"].reshape(channels, rt, qt, rh, qh, rw, qw)
    refined["final.linear.bias"] = b_out.mean(dim=(1, 3, 5)).reshape(-1).contiguous()
    return refined
