"""Spacetime patches: cut latent videos into cubes and pack many videos into one sequence.

A latent video (C, T, H, W) is cut into cubes of (pt, ph, pw) cells. Each cube becomes one
token of C*pt*ph*pw values, with its (t, h, w) grid position. Videos of different sizes and
durations are concatenated into one token sequence; `segment_ids` say which video each token
belongs to, so attention can stay inside each video (block-diagonal) without padding.

Durations that are not a multiple of pt (an image is one frame) are padded by repeating the
last frame; `unpack` drops the padding again, so pack/unpack is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Patch = tuple[int, int, int]
Grid = tuple[int, int, int]


def token_grid(latent_shape: tuple[int, int, int], patch: Patch) -> Grid:
    """(T, H, W) latent cells -> (T', H', W') tokens. H and W must be multiples of the patch."""
    t, h, w = latent_shape
    pt, ph, pw = patch
    if h % ph or w % pw:
        raise ValueError(f"latent size {h}x{w} is not a multiple of the patch {ph}x{pw}")
    return (-(-t // pt), h // ph, w // pw)


def patchify(latent: Tensor, patch: Patch) -> tuple[Tensor, Grid]:
    """(C, T, H, W) -> tokens (T'*H'*W', C*pt*ph*pw) in (t, h, w) raster order, and the grid."""
    c, t, h, w = latent.shape
    pt, ph, pw = patch
    grid = token_grid((t, h, w), patch)
    if t % pt:  # repeat the last frame up to a whole temporal patch
        pad = latent[:, -1:].expand(c, pt - t % pt, h, w)
        latent = torch.cat([latent, pad], dim=1)
    gt, gh, gw = grid
    x = latent.reshape(c, gt, pt, gh, ph, gw, pw)
    x = x.permute(1, 3, 5, 0, 2, 4, 6)  # (T', H', W', C, pt, ph, pw)
    return x.reshape(gt * gh * gw, c * pt * ph * pw), grid


def unpatchify(tokens: Tensor, grid: Grid, patch: Patch, channels: int, frames: int) -> Tensor:
    """Inverse of `patchify`: tokens (T'*H'*W', C*pt*ph*pw) -> (C, frames, H, W)."""
    gt, gh, gw = grid
    pt, ph, pw = patch
    x = tokens.reshape(gt, gh, gw, channels, pt, ph, pw)
    x = x.permute(3, 0, 4, 1, 5, 2, 6)  # (C, T', pt, H', ph, W', pw)
    x = x.reshape(channels, gt * pt, gh * ph, gw * pw)
    return x[:, :frames]


def grid_positions(grid: Grid) -> Tensor:
    """(T'*H'*W', 3) float positions (t, h, w) of each token, in raster order."""
    gt, gh, gw = grid
    t, h, w = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.stack([t, h, w], dim=-1).reshape(-1, 3).float()


@dataclass
class PackedBatch:
    """Several videos as one token sequence.

    tokens:      (N, C*pt*ph*pw)
    positions:   (N, 3) float, the (t, h, w) of each token within its own video
    segment_ids: (N,) long, which video each token belongs to (0..S-1, contiguous, sorted)
    grids:       the token grid (T', H', W') of each video
    frames:      the latent frame count of each video before temporal padding
    """

    tokens: Tensor
    positions: Tensor
    segment_ids: Tensor
    grids: list[Grid]
    frames: list[int]
    patch: Patch
    channels: int

    @property
    def num_segments(self) -> int:
        return len(self.grids)

    @property
    def lengths(self) -> list[int]:
        return [gt * gh * gw for gt, gh, gw in self.grids]

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(
            self.tokens.to(device),
            self.positions.to(device),
            self.segment_ids.to(device),
            self.grids,
            self.frames,
            self.patch,
            self.channels,
        )


def pack(latents: list[Tensor], patch: Patch) -> PackedBatch:
    """Concatenate the tokens of several (C, T, H, W) latents of any sizes into one sequence."""
    if not latents:
        raise ValueError("pack needs at least one video")
    channels = latents[0].shape[0]
    tokens, positions, segment_ids, grids, frames = [], [], [], [], []
    for index, latent in enumerate(latents):
        if latent.shape[0] != channels:
            raise ValueError(f"video {index} has {latent.shape[0]} channels, expected {channels}")
        seq, grid = patchify(latent, patch)
        tokens.append(seq)
        positions.append(grid_positions(grid).to(latent.device))
        segment_ids.append(torch.full((seq.shape[0],), index, dtype=torch.long, device=latent.device))
        grids.append(grid)
        frames.append(latent.shape[1])
    return PackedBatch(torch.cat(tokens), torch.cat(positions), torch.cat(segment_ids), grids, frames, patch, channels)


def unpack(tokens: Tensor, batch: PackedBatch) -> list[Tensor]:
    """Split a packed (N, D) sequence back into each video's (C, T, H, W) latent."""
    videos = []
    for seq, grid, frames in zip(tokens.split(batch.lengths), batch.grids, batch.frames):
        videos.append(unpatchify(seq, grid, batch.patch, batch.channels, frames))
    return videos
