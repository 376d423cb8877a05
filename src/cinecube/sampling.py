"""Samplers: small, stateless functions that integrate the flow ODE dz/dt = v(z, t) from t=1 to 0.

A sampler takes a velocity function, the starting noise and the timestep grid; it keeps no
hidden state between calls. Conditioning frames (an image to animate, frames to extend) are
a mask: masked tokens stay at their clean value with t = 0 while the rest is denoised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (z (N, P), t (N, 1)) -> v (N, P)
StepFn = Callable[[int, int], None]  # (steps done, steps in all): progress for a caller (a server)


def _token_times(t: float | Tensor, z: Tensor, cond_mask: Tensor | None) -> Tensor:
    """A (N, 1) time per token: t for generated tokens, 0 for clean conditioning tokens."""
    times = torch.full((z.shape[0], 1), float(t), dtype=z.dtype, device=z.device)
    if cond_mask is not None:
        times = times.masked_fill(cond_mask[:, None], 0.0)
    return times


def _keep_conditioning(z: Tensor, cond_mask: Tensor | None, cond_value: Tensor | None) -> Tensor:
    if cond_mask is None:
        return z
    return torch.where(cond_mask[:, None], cond_value, z)


def euler(
    velocity: VelocityFn,
    noise: Tensor,
    timesteps: Tensor,
    *,
    cond_mask: Tensor | None = None,
    cond_value: Tensor | None = None,
    progress: bool = False,
    on_step: StepFn | None = None,
) -> Tensor:
    """Euler's method on the flow ODE (the sampler of rectified flow / Flux).

    noise (N, P) at t = timesteps[0] = 1; timesteps decreasing to 0; returns z at t = 0.
    """
    z = _keep_conditioning(noise, cond_mask, cond_value)
    for i in tqdm(range(len(timesteps) - 1), desc="sampling", disable=not progress, leave=False):
        t, t_next = timesteps[i], timesteps[i + 1]
        v = velocity(z, _token_times(t, z, cond_mask))
        z = _keep_conditioning(z + (t_next - t) * v, cond_mask, cond_value)
        if on_step is not None:
            on_step(i + 1, len(timesteps) - 1)
    return z


def heun(
    velocity: VelocityFn,
    noise: Tensor,
    timesteps: Tensor,
    *,
    cond_mask: Tensor | None = None,
    cond_value: Tensor | None = None,
    progress: bool = False,
    on_step: StepFn | None = None,
) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn).

    Each step averages the slope at both ends; the last step, which reaches t = 0 where the
    slope is not needed, is plain Euler. Two model calls per step but the last.
    """
    z = _keep_conditioning(noise, cond_mask, cond_value)
    for i in tqdm(range(len(timesteps) - 1), desc="sampling", disable=not progress, leave=False):
        t, t_next = timesteps[i], timesteps[i + 1]
        v = velocity(z, _token_times(t, z, cond_mask))
        z_euler = _keep_conditioning(z + (t_next - t) * v, cond_mask, cond_value)
        if float(t_next) == 0.0:
            z = z_euler
        else:
            v_next = velocity(z_euler, _token_times(t_next, z, cond_mask))
            z = _keep_conditioning(z + (t_next - t) * 0.5 * (v + v_next), cond_mask, cond_value)
        if on_step is not None:
            on_step(i + 1, len(timesteps) - 1)
    return z


SAMPLERS: dict[str, Callable[..., Tensor]] = {"euler": euler, "heun": heun}


def classifier_free_guidance(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Ho & Salimans 2022: move from the unconditional prediction past the conditional one."""
    return unconditional + scale * (conditional - unconditional)
