"""Arguments the commands share: outputs, `--force`, and number types that refuse nonsense.

Every argument that names something a command writes is added with `add_output`, which
marks it: tests/test_reliability.py finds every output of every command through the mark and
checks each command against the rules of cinecube/outputs.py, so a new command that writes
cannot skip them. A number type (`positive_int`, `finite_float`, `seed` ...) turns a bad
value into argparse's one-line error naming the argument, before any work.
"""

from __future__ import annotations

import argparse
import math

# 0 .. 2**63 - 1: what torch.Generator.manual_seed and numpy's generators both take.
MAX_SEED = 2**63 - 1


def add_output(parser: argparse.ArgumentParser, *flags: str, kind: str, **kwargs) -> argparse.Action:
    """An argument naming an output; `kind` is "file" or "folder" (what the command writes there)."""
    if kind not in ("file", "folder"):
        raise ValueError(f"output kind {kind!r}: use 'file' or 'folder'")
    action = parser.add_argument(*flags, **kwargs)
    action.output_kind = kind  # found by tests/test_reliability.py
    return action


def add_force(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} if it exists (a folder only when it holds nothing but what cinecube wrote there)",
    )


def _number(text: str, kind: type, what: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "an integer of 0 or more")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number")


def positive_float(text: str) -> float:
    value = _number(text, float, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive number")
    return value


def seed(text: str) -> int:
    value = _number(text, int, "an integer seed")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is outside the seeds allowed, 0..{MAX_SEED}")
    return value


def device(text: str) -> str:
    """A torch device this machine has: cpu, cuda, cuda:N (checked when the argument is parsed)."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device; use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: cinecube runs on cpu or cuda")
    return text
