"""Spacetime patches: cut latent videos into cubes and pack many videos into one sequence.

A latent video (C, T, H, W) is cut into cubes of (pt, ph, pw) cells. Each cube becomes one
token of C*pt*ph*pw values, with its (t, h, w) grid position. Videos of different sizes and
durations are concatenated into one token sequence; `segment_ids` say which video each token
belongs to, so attention can stay inside each video (block-diagonal) without padding.

Durations that are not a multiple of pt (an image is one frame) are padded by repeating the
last frame; `unpack` drops the padding again, so pack/unpack is exact.

A video can bring extra tokens: the frames it is conditioned on (an image to animate, the clip
to extend), each encoded on its own and appended to its video's segment, at time positions
shifted to where they belong in it (see cinecube/conditioning.py). They share the video's
attention and are dropped by `unpack`.
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
    extras:      how many extra (conditioning) tokens follow each video's own tokens
    """

    tokens: Tensor
    positions: Tensor
    segment_ids: Tensor
    grids: list[Grid]
    frames: list[int]
    patch: Patch
    channels: int
    extras: list[int] | None = None

    @property
    def num_segments(self) -> int:
        return len(self.grids)

    @property
    def video_lengths(self) -> list[int]:
        """Each video's own tokens (what is generated and unpacked)."""
        return [gt * gh * gw for gt, gh, gw in self.grids]

    @property
    def lengths(self) -> list[int]:
        """Each segment's tokens: the video's own, then its extra tokens."""
        return [n + e for n, e in zip(self.video_lengths, self.extras or [0] * self.num_segments)]

    @property
    def is_extra(self) -> Tensor:
        """(N,) bool: True on the extra (conditioning) tokens."""
        flags = [
            torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(e, dtype=torch.bool)])
            for n, e in zip(self.video_lengths, self.extras or [0] * self.num_segments)
        ]
        return torch.cat(flags).to(self.tokens.device)

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(
            self.tokens.to(device),
            self.positions.to(device),
            self.segment_ids.to(device),
            self.grids,
            self.frames,
            self.patch,
            self.channels,
            self.extras,
        )


# An extra clip: its (C, T, H, W) latent, and the time (in tokens of the video it belongs to)
# at which its first latent frame sits.
Extra = tuple[Tensor, float]


def pack(latents: list[Tensor], patch: Patch, extras: list[list[Extra]] | None = None) -> PackedBatch:
    """Concatenate the tokens of several (C, T, H, W) latents of any sizes into one sequence.

    `extras[i]` are clips appended to video i's segment (conditioning frames), each with the
    time offset of its first token in video i's token grid (fractional offsets are allowed:
    positions are rotary angles, not indices)."""
    if not latents:
        raise ValueError("pack needs at least one video")
    if extras is not None and len(extras) != len(latents):
        raise ValueError(f"{len(extras)} lists of extras for {len(latents)} videos")
    channels = latents[0].shape[0]
    tokens, positions, segment_ids, grids, frames, counts = [], [], [], [], [], []
    for index, latent in enumerate(latents):
        if latent.shape[0] != channels:
            raise ValueError(f"video {index} has {latent.shape[0]} channels, expected {channels}")
        seq, grid = patchify(latent, patch)
        parts, places = [seq], [grid_positions(grid).to(latent.device)]
        for extra, offset in extras[index] if extras is not None else []:
            extra_seq, extra_grid = patchify(extra, patch)
            if extra_grid[1:] != grid[1:]:
                raise ValueError(f"an extra clip of video {index} has a {extra_grid[1:]} grid, the video {grid[1:]}")
            place = grid_positions(extra_grid).to(latent.device)
            place[:, 0] += offset
            parts.append(extra_seq)
            places.append(place)
        seq = torch.cat(parts)
        tokens.append(seq)
        positions.append(torch.cat(places))
        segment_ids.append(torch.full((seq.shape[0],), index, dtype=torch.long, device=latent.device))
        grids.append(grid)
        frames.append(latent.shape[1])
        counts.append(seq.shape[0] - grid[0] * grid[1] * grid[2])
    return PackedBatch(
        torch.cat(tokens), torch.cat(positions), torch.cat(segment_ids), grids, frames, patch, channels, counts
    )


def unpack(tokens: Tensor, batch: PackedBatch) -> list[Tensor]:
    """Split a packed (N, D) sequence back into each video's (C, T, H, W) latent (extras dropped)."""
    videos = []
    for seq, n, grid, frames in zip(tokens.split(batch.lengths), batch.video_lengths, batch.grids, batch.frames):
        videos.append(unpatchify(seq[:n], grid, batch.patch, batch.channels, frames))
    return videos
