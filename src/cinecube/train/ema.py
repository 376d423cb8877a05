"""The exponential moving average of a model's weights, which is what a run ships."""

from __future__ import annotations

import torch


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """ema <- d * ema + (1 - d) * model, parameter by parameter (buffers are not averaged)."""
    # Warm the decay up so early EMA weights are not dominated by the random initialisation.
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - d)
