"""One rule for non-finite losses and gradients, shared by every training loop."""

from __future__ import annotations

import math
import sys

from tqdm.auto import tqdm

from ..errors import CinecubeError


class NonFiniteLossError(CinecubeError):
    """Training produced non-finite losses or gradients several steps in a row."""


class NonFiniteGuard:
    """Skips a step whose loss or gradient norm is not finite; stops a run that keeps making them.

    A skipped step leaves the weights, the optimizer and the EMA untouched, and still counts
    as a step: its batch and its step-seeded noise are spent and the run moves on. So which
    steps are skipped is a function of the data and the step, and a resumed run skips the same
    ones. `limit` skipped steps in a row raise NonFiniteLossError: the run is diverging.
    """

    def __init__(self, limit: int = 5):
        self.limit = limit
        self.in_a_row = 0

    def check(self, step: int, what: str, value: float) -> bool:
        """True when `value` (the step's `what`, e.g. "loss") is finite; else report and count it."""
        if math.isfinite(value):
            return True
        self.in_a_row += 1
        tqdm.write(f"step {step}: non-finite {what} ({value}); step skipped, weights untouched", file=sys.stderr)
        if self.in_a_row >= self.limit:
            raise NonFiniteLossError(
                f"{self.in_a_row} non-finite losses or gradients in a row at step {step}; "
                "lower the learning rate or check the data"
            )
        return False

    def stepped(self) -> None:
        """The step was taken: the count of skipped steps in a row starts again."""
        self.in_a_row = 0
