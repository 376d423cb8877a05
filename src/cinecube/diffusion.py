"""Objectives: a probability path plus what the network predicts, and converters between them.

Two paths, both written with t in [0, 1] where t = 0 is data and t = 1 is noise:

    flow (rectified flow):  x_t = (1 - t) x0 + t eps            velocity v = eps - x0
    vp (DDPM, cosine):      x_s = alpha(s) x0 + sigma(s) eps     alpha = cos(pi s / 2), sigma = sin(pi s / 2)

Samplers integrate the flow ODE only. A vp model is used through the exact change of
variables z = x_s / (alpha + sigma), t = sigma / (alpha + sigma), which maps the vp path onto
the flow path, so every sampler works with every objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .config import DiffusionConfig

# ---------------------------------------------------------------------------------------
# Converters on the flow path (t broadcastable against x)
# ---------------------------------------------------------------------------------------


def flow_interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return (1 - t) * x0 + t * noise


def flow_velocity_from_x0(x_t: Tensor, x0: Tensor, t: Tensor, min_t: float = 0.0) -> Tensor:
    """v = (x_t - x0) / t; t is clamped from below because x0-prediction is ill-posed at t -> 0."""
    return (x_t - x0) / t.clamp(min=max(min_t, 1e-6))


def flow_x0_from_velocity(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    return x_t - t * v


def flow_noise_from_velocity(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    return x_t + (1 - t) * v


def flow_velocity_from_noise(x_t: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return (noise - x_t) / (1 - t).clamp(min=1e-6)


# ---------------------------------------------------------------------------------------
# The vp path and its mapping onto the flow path
# ---------------------------------------------------------------------------------------


def vp_alpha_sigma(s: Tensor) -> tuple[Tensor, Tensor]:
    return torch.cos(0.5 * math.pi * s), torch.sin(0.5 * math.pi * s)


def vp_time_from_flow_time(t: Tensor) -> Tensor:
    """sigma/alpha = t/(1-t)  =>  s = (2/pi) atan(t / (1 - t))."""
    return (2 / math.pi) * torch.atan2(t, 1 - t)


def vp_x0_noise(x_s: Tensor, output: Tensor, s: Tensor, prediction: str) -> tuple[Tensor, Tensor]:
    """A vp network output -> (x0, noise) estimates."""
    alpha, sigma = vp_alpha_sigma(s)
    if prediction == "noise":
        noise = output
        x0 = (x_s - sigma * noise) / alpha.clamp(min=1e-4)
    elif prediction == "v":  # v = alpha * eps - sigma * x0
        x0 = alpha * x_s - sigma * output
        noise = sigma * x_s + alpha * output
    elif prediction == "x0":
        x0 = output
        noise = (x_s - alpha * x0) / sigma.clamp(min=1e-4)
    else:
        raise ValueError(f"unknown vp prediction {prediction!r}; allowed: noise, v, x0")
    return x0, noise


# ---------------------------------------------------------------------------------------
# Timesteps
# ---------------------------------------------------------------------------------------


def shift_time(t: Tensor, shift: float | Tensor) -> Tensor:
    """The SD3/Flux time shift: shift > 1 moves t towards noise."""
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(num_tokens: int | Tensor, config: DiffusionConfig) -> float | Tensor:
    """Bigger and longer videos get more noise: shift = sqrt(tokens / base), in [1, shift_max]."""
    if isinstance(num_tokens, Tensor):
        return (num_tokens.float() / config.shift_base_tokens).sqrt().clamp(1.0, config.shift_max)
    return min(max(math.sqrt(num_tokens / config.shift_base_tokens), 1.0), config.shift_max)


def flow_timesteps(steps: int, shift: float = 1.0) -> Tensor:
    """The sampling grid: steps + 1 times from 1 (noise) to 0 (data), shifted."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1), shift)


# ---------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x in the path's own space, t per token) -> output


class Objective:
    """What a model is trained on, and how its output becomes a flow velocity for sampling."""

    def __init__(self, config: DiffusionConfig):
        allowed = {"flow": ("velocity", "x0"), "vp": ("noise", "v", "x0")}
        if config.path not in allowed:
            raise ValueError(f"unknown path {config.path!r}; allowed: {sorted(allowed)}")
        if config.prediction not in allowed[config.path]:
            raise ValueError(
                f"prediction {config.prediction!r} is not allowed for path "
                f"{config.path!r}; allowed: {allowed[config.path]}"
            )
        if config.loss_weighting not in ("velocity", "x0"):
            raise ValueError(f"unknown loss_weighting {config.loss_weighting!r}; allowed: 'velocity', 'x0'")
        self.config = config

    def sample_timesteps(self, num_tokens_per_video: Tensor, generator: torch.Generator) -> Tensor:
        """One training t per video: logit-normal (or uniform), then shifted by the token count. (S,)"""
        normal = torch.randn(num_tokens_per_video.shape, generator=generator)
        t = torch.sigmoid(self.config.logit_mean + self.config.logit_std * normal)
        uniform = torch.rand(num_tokens_per_video.shape, generator=generator)
        pick_uniform = torch.rand(num_tokens_per_video.shape, generator=generator) < self.config.uniform_fraction
        t = torch.where(pick_uniform, uniform, t)
        return shift_time(t, resolution_shift(num_tokens_per_video, self.config))

    def noisy(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The network's input at time t (in the path's own space)."""
        if self.config.path == "flow":
            return flow_interpolate(x0, noise, t)
        alpha, sigma = vp_alpha_sigma(t)
        return alpha * x0 + sigma * noise

    def loss(self, output: Tensor, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Per-element squared error (not reduced), so the caller can weight or mask tokens."""
        cfg = self.config
        if cfg.path == "flow":
            target = noise - x0  # the velocity target
            if cfg.prediction == "velocity":
                prediction = output
            else:  # clean video converted to velocity
                prediction = flow_velocity_from_x0(x_t, output, t, cfg.min_t_for_x0)
            error = (prediction - target) ** 2
            if cfg.loss_weighting == "x0":
                error = error * t.clamp(min=cfg.min_t_for_x0) ** 2
            return error
        alpha, sigma = vp_alpha_sigma(t)
        target = {"noise": noise, "v": alpha * noise - sigma * x0, "x0": x0}[cfg.prediction]
        return (output - target) ** 2

    def model_input(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Flow-path state z at flow time t -> (network input, network time) in the path's own terms."""
        if self.config.path == "flow":
            return z, t
        s = vp_time_from_flow_time(t)
        alpha, sigma = vp_alpha_sigma(s)
        return z * (alpha + sigma), s

    def velocity_from_output(self, output: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """The network's output for `model_input(z, t)` -> flow velocity at (z, t)."""
        cfg = self.config
        if cfg.path == "flow":
            if cfg.prediction == "velocity":
                return output
            # Exact conversion (no min_t clamp, which is for the training loss only): a clamp
            # here would leave part of the noise behind in the last steps.
            return flow_velocity_from_x0(z, output, t, 1e-6)
        s = vp_time_from_flow_time(t)
        alpha, sigma = vp_alpha_sigma(s)
        x0, _ = vp_x0_noise(z * (alpha + sigma), output, s, cfg.prediction)
        return flow_velocity_from_x0(z, x0, t, 1e-4)

    def velocity(self, model: ModelFn, z: Tensor, t: Tensor) -> Tensor:
        """Flow velocity at flow-path state z and flow time t (per token, broadcastable)."""
        return self.velocity_from_output(model(*self.model_input(z, t)), z, t)
