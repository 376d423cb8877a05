"""The building blocks of the causal 3D autoencoder, each causal in time.

Every convolution pads time on the past side only and every norm works on one frame at a
time, so no output depends on a later frame. Layers that look back in time keep what the next
chunk of the same video needs in a `CausalCache`, which makes chunked processing equal to one
pass. The block folds (`fold_blocks`, `space_to_depth`) reshape pixels into channels and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# What each causal convolution keeps between the chunks of one video: the input frames its
# next output window still needs. An empty cache means "this is the start of the video".
CausalCache = dict[nn.Module, Tensor]


class CausalConv3d(nn.Conv3d):
    """A 3D convolution that never looks at later frames.

    Space is zero-padded on both sides as usual. Time is padded on the past side only, with
    kernel_t - 1 frames: at the start of a video, copies of frame 0 (so frame 0 is computed
    from itself alone and an image encodes like the first frame of a video); in later chunks,
    the frames this layer kept from the previous chunk in `cache`, which makes chunked
    processing equal to one pass over the whole video.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=(0, kernel[1] // 2, kernel[2] // 2))

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:  # (B, C, T, H, W)
        kt, st = self.kernel_size[0], self.stride[0]
        if kt > 1:
            if cache is not None and self in cache:
                past = cache[self]
            else:
                past = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)
            x = torch.cat([past, x], dim=2)  # (B, C, kt-1+T, H, W)
            if cache is not None:
                # The next chunk's first window starts right after the last window used here;
                # with chunks aligned to the strides that leaves kt - st frames.
                windows = (x.shape[2] - kt) // st + 1
                cache[self] = x[:, :, windows * st :]
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own.

    Statistics over (T, H, W) would let frame 0 depend on later frames: neither causal nor
    chunkable. Per frame, normalisation is both.
    """

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, C, H, W)
        return y.view(b, t, c, h, w).transpose(1, 2)


class ResidualBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))), projecting x with a 1x1x1 conv if the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = FrameGroupNorm(groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:  # (B, C, T, H, W)
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W with a strided conv; with `temporal`, also halve time, frame 0 kept alone.

    The temporal conv has kernel 3, stride 2 and two frames of causal padding: output 0 sees
    frame 0 only, output i >= 1 sees frames 2i-2, 2i-1, 2i. So 1 + 2k frames become 1 + k.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2))
        self.temporal = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None
        if self.temporal is not None:
            # Start as the mean of the window, a plain temporal resampling that training refines.
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.bias.zero_()
                for c in range(channels):
                    self.temporal.weight[c, c, :, 0, 0] = 1.0 / 3.0

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        x = self.spatial(x)  # (B, C, T, H/2, W/2)
        if self.temporal is not None:
            x = self.temporal(x, cache)  # (B, C, 1 + (T-1)/2, H/2, W/2)
        return x


class Upsample(nn.Module):
    """Double H and W (nearest + conv); with `temporal`, also double time, frame 0 kept alone.

    The temporal conv (causal, kernel 3) makes two frames' worth of channels from each
    frame; they are interleaved into 2T frames and the very first one is dropped, so 1 + k
    frames become 1 + 2k, mirroring `Downsample`.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3))
        if self.temporal is not None:
            # Start as "repeat the current frame twice" (nearest upsampling in time).
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.bias.zero_()
                for c in range(channels):
                    self.temporal.weight[c, c, -1, 0, 0] = 1.0
                    self.temporal.weight[channels + c, c, -1, 0, 0] = 1.0

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:  # (B, C, T, H, W)
        if self.temporal is not None:
            video_start = cache is None or self.temporal not in cache
            y = self.temporal(x, cache)  # (B, 2C, T, H, W)
            b, c2, t, h, w = y.shape
            y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5)  # (B, C, T, 2, H, W)
            x = y.reshape(b, c2 // 2, 2 * t, h, w)  # (B, C, 2T, H, W)
            if video_start:
                x = x[:, :, 1:]  # (B, C, 2T-1, H, W)
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")  # (B, C, T', 2H, 2W)
        return self.spatial(x)


def is_video_start(module: nn.Module, cache: CausalCache | None) -> bool:
    """Whether this call sees the start of a video (no cache, or `module` not yet in it); marks it seen."""
    if cache is None:
        return True
    if module in cache:
        return False
    cache[module] = torch.empty(0)
    return True


def fold_blocks(video: Tensor, tf: int, s: int, video_start: bool) -> Tensor:
    """(B, 3, T, H, W) -> (B, 3*tf*s*s, T', H/s, W/s): each latent cell's pixels as one vector.

    At the start of a video frame 0 stands for a whole block on its own (tf copies of it), as
    in the causal layout; later frames come in whole groups of tf.
    """
    if video_start:
        video = torch.cat([video[:, :, :1].expand(-1, -1, tf - 1, -1, -1), video], dim=2)
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tf, tf, h // s, s, w // s, s)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, 3, tf, s, s, T', H/s, W/s)
    return x.reshape(b, c * tf * s * s, t // tf, h // s, w // s)


def unfold_blocks(blocks: Tensor, tf: int, s: int, video_start: bool) -> Tensor:
    """(B, 3*tf*s*s, T', h, w) -> (B, 3, T, h*s, w*s), the inverse of fold_blocks (frame 0 is
    the last frame of the first block)."""
    b, n, t, h, w = blocks.shape
    c = n // (tf * s * s)
    x = blocks.reshape(b, c, tf, s, s, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, 3, T', tf, h, s, w, s)
    video = x.reshape(b, c, t * tf, h * s, w * s)
    return video[:, :, tf - 1 :] if video_start else video


def space_to_depth(x: Tensor, p: int) -> Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p): each p x p pixel block becomes channels."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)  # (B, C, p, p, T, H/p, W/p)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: Tensor, p: int) -> Tensor:
    """(B, C*p*p, T, h, w) -> (B, C, T, h*p, w*p), the inverse of space_to_depth."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.view(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)  # (B, C, T, h, p, w, p)
    return x.reshape(b, c, t, h * p, w * p)
