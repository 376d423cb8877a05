"""The device a run trains on, and whether bf16 autocast pays on it."""

from __future__ import annotations

import functools
import math
import time

import torch

from ..errors import CinecubeError


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast only where bf16 matmuls beat fp32.

    On GPUs that is wherever bf16 exists. On CPUs it depends on more than the instruction-set
    flags (some CPUs with bf16 dot products but no matrix units run bf16 matmuls slower than
    fp32; see docs/training.md), so it is measured, once per process (~0.1 s).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bf16_matmul_speedup() >= 1.25


@functools.lru_cache(maxsize=1)
def bf16_matmul_speedup(size: int = 768) -> float:
    """How many times faster a (size x size) @ (size x size) matmul runs in bf16 than in fp32 on
    this CPU (best of 4 each, interleaved); 0 where bf16 matmuls are not available."""
    try:
        a32, b32 = torch.randn(size, size), torch.randn(size, size)
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        best = {torch.float32: math.inf, torch.bfloat16: math.inf}
        for _ in range(4):
            for dtype, (a, b) in ((torch.float32, (a32, b32)), (torch.bfloat16, (a16, b16))):
                started = time.perf_counter()
                torch.mm(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    except RuntimeError:
        return 0.0
    return best[torch.float32] / best[torch.bfloat16]


def device_for(name: str | None) -> torch.device:
    """The torch device a run trains on (default: cuda if present); one line for a bad name."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise CinecubeError(f"device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CinecubeError(f"device {name!r}: this machine has no CUDA device; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise CinecubeError(f"device {name!r}: cinecube trains on cpu or cuda")
    return dev
