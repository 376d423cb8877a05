"""Shared measurement helpers: timing, FLOP counting, matmul peak, peak memory.

Every figure the benchmarks report is a ratio of two things measured in the same process
(or the same `run.py` invocation), never an absolute time alone.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall-clock seconds of `repeats` calls of fn after `warmup` untimed calls.

    The best (not the mean) is the figure least disturbed by other processes on the machine.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def best_times_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Best seconds of each fn, timed round-robin (a, b, c, a, b, c, ...).

    On a shared machine the load changes over time; interleaving gives every candidate the
    same chances, so their ratio is fair even when the absolute times are disturbed.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _register_cpu_attention_flops() -> None:
    """torch.utils.flop_counter knows the CUDA attention kernels but not the CPU flash kernel
    that scaled_dot_product_attention runs here, and would count its FLOPs as zero. Count them
    with the same formulas (2 matmuls forward, 4 backward)."""
    aten = torch.ops.aten
    registry = torch.utils.flop_counter.flop_registry
    forward_op = aten._scaled_dot_product_flash_attention_for_cpu
    backward_op = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward_op in registry:
        return

    @torch.utils.flop_counter.register_flop_formula(forward_op)
    def forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return torch.utils.flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    @torch.utils.flop_counter.register_flop_formula(backward_op)
    def backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return torch.utils.flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn, counted by torch.utils.flop_counter (matmuls, convs, attention)."""
    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_calls(size: int = 2048) -> dict[str, Callable[[], object]]:
    """One size^3 matmul in fp32 and in bf16 (2 * size^3 FLOPs each)."""
    calls = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        calls[name] = lambda a=a, b=b: torch.mm(a, b)
    return calls


def matmul_peak(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The machine's measured matmul peak: best FLOP/s of a size^3 matmul in fp32 and bf16."""
    seconds = best_times_interleaved(matmul_calls(size), repeats, warmup=2)
    return {name: 2 * size**3 / s for name, s in seconds.items()}


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark (getrusage ru_maxrss, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's resident set now, from /proc/self/statm, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def bf16_cpu_supported() -> bool:
    """bf16 autocast is worth trying only where the CPU has native bf16 dot products."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
