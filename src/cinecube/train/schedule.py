"""The learning-rate schedule both training loops use: warmup, constant, optional cooldown."""

from __future__ import annotations

from typing import Protocol


class Schedule(Protocol):
    """What a training config says about its learning rate (TrainConfig, AutoencoderTrainConfig)."""

    lr: float
    warmup_steps: int
    steps: int
    cooldown_steps: int


def learning_rate(step: int, schedule: Schedule) -> float:
    """Linear warmup over `warmup_steps`, then constant (EMA weights do the averaging, and a run
    can be extended), and with `cooldown_steps` a linear decay to zero over the last that many
    of `steps` (warmup-stable-decay: a constant-rate run can be cooled down from any checkpoint)."""
    rate = schedule.lr * min(1.0, (step + 1) / max(1, schedule.warmup_steps))
    if schedule.cooldown_steps > 0:
        rate *= min(1.0, (schedule.steps - step) / schedule.cooldown_steps)
    return rate
