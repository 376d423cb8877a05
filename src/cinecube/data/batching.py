"""Token-budget batching: each training step is filled with videos of mixed sizes and durations
until a token budget is reached (sequence packing), instead of a fixed number of same-size
videos (bucketing) or padding everything to the largest.

The stream is a deterministic function of (seed, index): the state to resume it exactly is
one integer, the index of the next video to draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import CinecubeError


class CaptionedVideo(Protocol):
    video: np.ndarray  # (T, H, W, 3) uint8
    caption: str


class SizedWorld(Protocol):
    def sample_at(self, index: int, height: int, width: int, frames: int) -> CaptionedVideo: ...


@dataclass(frozen=True)
class SizeMix:
    """Which canvases and durations the stream draws from."""

    canvases: tuple[tuple[int, int], ...]  # (height, width)
    frame_counts: tuple[int, ...]


class TokenBudgetStream:
    """Draws videos by index and groups them into batches of at most `tokens_per_step` tokens.

    tokens_of(frames, height, width) -> the number of transformer tokens of such a video.
    A drawn canvas whose duration choices would all exceed `max_tokens_per_video` is skipped
    in favour of the durations that fit (shorter clips of large canvases, longer clips of
    small ones), so the mix covers both.
    """

    def __init__(
        self,
        world: SizedWorld,
        mix: SizeMix,
        tokens_of: Callable[[int, int, int], int],
        tokens_per_step: int,
        max_tokens_per_video: int,
        seed: int = 0,
        next_index: int = 0,
    ):
        self.world = world
        self.mix = mix
        self.tokens_of = tokens_of
        self.tokens_per_step = tokens_per_step
        self.max_tokens_per_video = min(max_tokens_per_video, tokens_per_step)
        self.seed = seed
        self.next_index = next_index
        self._choices = [
            [(f, h, w) for f in mix.frame_counts if tokens_of(f, h, w) <= self.max_tokens_per_video]
            for h, w in mix.canvases
        ]
        self._choices = [c for c in self._choices if c]
        if not self._choices:
            smallest = min(tokens_of(f, h, w) for h, w in mix.canvases for f in mix.frame_counts)
            raise CinecubeError(
                f"no video of the training mix fits in {self.max_tokens_per_video} tokens (the smallest is "
                f"{smallest}): raise --tokens-per-step (tokens_per_step and max_tokens_per_video)"
            )

    def size_of(self, index: int) -> tuple[int, int, int]:
        """The (frames, height, width) of video `index`: uniform canvas, then uniform duration."""
        rng = np.random.default_rng([self.seed, index, 7])
        sizes = self._choices[rng.integers(len(self._choices))]
        return sizes[rng.integers(len(sizes))]

    def next_plan(self) -> list[tuple[int, int]]:
        """The (video index, tokens) of the next batch, without drawing the videos: cheap, so
        every process of a distributed run plans the same global batch and draws its share."""
        plan, used = [], 0
        while True:
            frames, height, width = self.size_of(self.next_index)
            tokens = self.tokens_of(frames, height, width)
            if plan and used + tokens > self.tokens_per_step:
                return plan  # this video opens the next batch
            plan.append((self.next_index, tokens))
            used += tokens
            self.next_index += 1

    def load(self, index: int) -> CaptionedVideo:
        frames, height, width = self.size_of(index)
        return self.world.sample_at(index, height, width, frames)

    def next_batch(self) -> list[CaptionedVideo]:
        return [self.load(index) for index, _ in self.next_plan()]

    def state_dict(self) -> dict[str, int]:
        return {"next_index": self.next_index, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.next_index = int(state["next_index"])
        self.seed = int(state["seed"])
