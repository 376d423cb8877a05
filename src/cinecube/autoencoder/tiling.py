"""Spatial tiling: run a function over overlapping tiles of a video and blend the results.

An approximation, for frames too large for memory in one piece: each tile sees zero padding
and its own GroupNorm statistics at its borders, so tiles overlap and are blended linearly
(see tests/test_autoencoder.py for the tolerance measured on the tiny network).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` overlapping by at least `overlap`, covering `size`."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]  # the last tile is moved back to end at the border


def _ramp(n: int, width: int, rising: bool, falling: bool) -> Tensor:
    """Blend weights along one axis of a tile: 1 inside, a linear ramp over `width` cells at
    each side that overlaps a neighbour, never 0 (so the weight sum is never 0)."""
    w = torch.ones(n)
    r = min(width, n)
    if r > 0:
        up = torch.arange(1, r + 1, dtype=torch.float32) / (r + 1)
        if rising:
            w[:r] = torch.minimum(w[:r], up)
        if falling:
            w[n - r :] = torch.minimum(w[n - r :], up.flip(0))
    return w


def tiled(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, up: int, down: int) -> Tensor:
    """Apply `fn` to overlapping spatial tiles of x (B, C, T, H, W) and blend the results.

    fn maps a (B, C, T, h, w) tile to (B, C', T', h*up/down, w*up/down). Each result is
    weighted by linear ramps across the overlaps it shares with its neighbours, and the
    weighted sum is divided by the summed weights, so seams fade out over the overlap.
    """
    height, width = x.shape[-2:]
    out_h, out_w = height * up // down, width * up // down
    ramp = overlap * up // down
    out = weight = None
    for r in _tile_starts(height, tile, overlap):
        for c in _tile_starts(width, tile, overlap):
            y = fn(x[..., r : r + tile, c : c + tile])  # (B, C', T', th, tw)
            if out is None:
                out = y.new_zeros(*y.shape[:3], out_h, out_w)
                weight = y.new_zeros(out_h, out_w)
            th, tw = y.shape[-2:]
            w = (
                _ramp(th, ramp, r > 0, r + tile < height)[:, None] * _ramp(tw, ramp, c > 0, c + tile < width)[None, :]
            ).to(y)  # (th, tw)
            r0, c0 = r * up // down, c * up // down
            out[..., r0 : r0 + th, c0 : c0 + tw] += y * w
            weight[r0 : r0 + th, c0 : c0 + tw] += w
    return out / weight
