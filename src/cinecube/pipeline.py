"""Prompt -> video.

    pipe = Pipeline.from_pretrained()                 # the bundled default model
    video = pipe("a red circle moving right on a black background", frames=16, height=64, width=64)
    video.save("out.mp4")

The pipeline validates the request, encodes the prompt, samples noise on the token grid of the
wanted size, integrates the flow ODE with classifier-free guidance, unpacks the tokens and
decodes the latents into frames.

Safety is part of the pipeline, not an option bolted on: the prompt policy runs before any
compute, and `GeneratedVideo.save` sends the frames through `cinecube.safety.guard.publish`
(frame review, invisible watermark, atomic write, signed C2PA manifest, audit log). Stages
can be switched off for research with `SafetySettings`; what was skipped is recorded.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import operator
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .autoencoder import Autoencoder, load_model_autoencoder, tensor_to_frames
from .config import ModelConfig
from .diffusion import Objective, flow_timesteps, resolution_shift
from .errors import InvalidRequestError, VideoIOError
from .model_folder import WEIGHTS_FILE, load_model_folder, load_weights_into
from .outputs import check_output_file
from .patches import PackedBatch, grid_positions, token_grid, unpack
from .safety.guard import PublishResult, SafetySettings, check_prompt_allowed, publish
from .safety.watermark import MIN_SIDE as WATERMARK_MIN_SIDE
from .sampling import SAMPLERS, classifier_free_guidance
from .text import TextEncoder, get_text_encoder
from .transformer import DiffusionTransformer

OUTPUT_SUFFIXES = (".mp4", ".gif", ".png")
DEFAULT_FPS = 8.0
MAX_FPS = 240.0
MAX_STEPS = 1000
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed and numpy's generators both take


def default_model_dir() -> Path:
    """The bundled default model shipped inside the package."""
    return Path(str(resources.files("cinecube") / "weights" / "default"))


def default_autoencoder_dir() -> Path:
    """The bundled video autoencoder: the one the bundled model works in (for `reconstruct`,
    `eval autoencoder`, latent caches)."""
    return default_model_dir() / "autoencoder"


@dataclass
class GeneratedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8
    prompt: str
    seed: int
    fps: float = DEFAULT_FPS
    info: dict = field(default_factory=dict)
    safety: SafetySettings = field(default_factory=SafetySettings)
    prompt_stage: dict | None = None  # the prompt policy's decision, taken before generating
    published: PublishResult | None = None

    def save(self, path: str | os.PathLike, *, published_as: str | os.PathLike | None = None) -> Path:
        """Review, watermark, write, sign and log; returns the path. Raises if a stage refuses.

        A file already at `path` is replaced, once every stage has passed (the command line
        asks for --force first); on any failure it stays as it was. `published_as`: where the
        caller will move the file (from a staged folder), for the audit record."""
        check_output_path(path, self.frames.shape[0], force=True)
        check_fps(self.fps)
        generation = {k: self.info[k] for k in ("steps", "guidance", "sampler") if k in self.info}
        self.published = publish(
            self.frames,
            path,
            prompt=self.prompt,
            seed=self.seed,
            fps=self.fps,
            model_name=self.info.get("model", "cinecube"),
            checkpoint_sha256=self.info.get("weights_sha256") or "0" * 64,
            generation=generation,
            settings=self.safety,
            prompt_stage=self.prompt_stage,
            published_as=published_as,
        )
        return self.published.path


def check_output_path(path: str | os.PathLike, frames: int, *, force: bool = False, argument: str = "output") -> Path:
    """Refuse an output path before any work is done: suffix, frame count, folder, writability,
    and an existing file unless `force`."""
    target = check_output_file(path, argument, suffixes=OUTPUT_SUFFIXES, force=force)
    if target.suffix.lower() == ".png" and frames != 1:
        raise VideoIOError(f"{argument} '{target}': a .png holds one frame, the request has {frames}; use .mp4 or .gif")
    return target


def check_fps(fps: float, argument: str = "fps") -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InvalidRequestError(f"{argument} {fps} is not allowed; use a number above 0 and at most {MAX_FPS:g}")
    return float(fps)


def _integer(name: str, value: object) -> int:
    """`value` as a Python int: numpy integers and other exact integers pass, floats and bools do not."""
    if isinstance(value, bool):
        raise InvalidRequestError(f"{name} {value!r} is not an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidRequestError(f"{name} {value!r} is not an integer") from None


def check_request(
    prompt: str, frames: int, height: int, width: int, *, steps: int, guidance: float, seed: int
) -> tuple[int, int, int, int, float, int]:
    """The checks a request needs no model for, so a bad one fails before a model loads.

    Returns (frames, height, width, steps, guidance, seed) as plain Python numbers (numpy
    integers are accepted). The sizes the model allows are checked by `Pipeline.validate`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError(
            "prompt is empty: describe the video you want, e.g. 'a red circle moving right on a black background'"
        )
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError("prompt is not valid UTF-8 text") from None
    frames, height, width = (_integer(n, v) for n, v in (("frames", frames), ("height", height), ("width", width)))
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if value < 1:
            raise InvalidRequestError(f"{name} {value} is not allowed; it must be at least 1")
    steps = _integer("steps", steps)
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidRequestError(f"steps {steps} is not allowed; use 1..{MAX_STEPS}")
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not 0.0 <= guidance <= MAX_GUIDANCE:
        raise InvalidRequestError(f"guidance {guidance} is not allowed; use 0..{MAX_GUIDANCE:g} (1 = no guidance)")
    seed = _integer("seed", seed)
    if not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"seed {seed} is not allowed; use 0..{MAX_SEED}")
    return frames, height, width, steps, float(guidance), seed


def allowed_sizes_message(config: ModelConfig, min_side: int = 1) -> str:
    """The sizes a model allows, in one line; `min_side`: the smallest side the output gate takes."""
    (gh, gw) = config.token_pixels
    low_h, low_w = (-(-max(min_side, g) // g) * g for g in (gh, gw))
    sides = (
        f"height and width: multiples of {gh} from {low_h}"
        if (gh, low_h) == (gw, low_w)
        else f"height: multiples of {gh} from {low_h}, width: multiples of {gw} from {low_w},"
    )
    return f"{sides} to {config.max_side}; frames: 1..{config.max_frames}; at most {config.max_tokens} tokens per video"


class Pipeline:
    def __init__(
        self,
        model: DiffusionTransformer,
        autoencoder: Autoencoder,
        text_encoder: TextEncoder,
        name: str = "cinecube",
        weights_sha256: str = "",
        safety: SafetySettings | None = None,
    ):
        self.model = model.eval()
        self.autoencoder = autoencoder.eval()
        self.text_encoder = text_encoder
        self.config: ModelConfig = model.config
        self.name = name
        self.weights_sha256 = weights_sha256
        self.safety = safety or SafetySettings()

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, device: str = "cpu", safety: SafetySettings | None = None
    ) -> Pipeline:
        """Load a checkpoint folder or run folder; the bundled default when path is None."""
        stored = load_model_folder(path if path is not None else default_model_dir())
        model = DiffusionTransformer(stored.model_config)
        load_weights_into(model, stored.weights, str(stored.path))
        # The identity for pixel models; a latent-space model's folder carries its autoencoder/.
        autoencoder = load_model_autoencoder(stored.path, stored.model_config)
        digest = hashlib.sha256((stored.path / WEIGHTS_FILE).read_bytes()).hexdigest()
        text = get_text_encoder(stored.model_config.text_max_tokens)
        name = "default" if path is None else stored.path.name
        return cls(model.to(device), autoencoder.to(device), text, name=name, weights_sha256=digest, safety=safety)

    # --------------------------------------------------------------------------- validation

    def validate(
        self, prompt: str, frames: int, height: int, width: int, steps: int, guidance: float, seed: int = 0
    ) -> tuple[int, int, int, int, float, int]:
        """Every check of a request: `check_request`'s, then the prompt's length and the sizes this
        model allows. Returns the checked values as `check_request` does."""
        frames, height, width, steps, guidance, seed = check_request(
            prompt, frames, height, width, steps=steps, guidance=guidance, seed=seed
        )
        cfg = self.config
        n_tokens = self.text_encoder.token_count(prompt)
        if n_tokens > cfg.text_max_tokens:
            raise InvalidRequestError(f"prompt is {n_tokens} tokens long; the maximum is {cfg.text_max_tokens}")
        min_side = WATERMARK_MIN_SIDE if self.safety.watermark else 1
        allowed = allowed_sizes_message(cfg, min_side)
        for (name, value), grid in zip((("height", height), ("width", width)), cfg.token_pixels):
            if value < grid or value > cfg.max_side or value % grid:
                raise InvalidRequestError(f"{name} {value} is not allowed; {allowed}")
        if frames > cfg.max_frames:
            raise InvalidRequestError(f"frames {frames} is not allowed; {allowed}")
        if min(height, width) < min_side:
            raise InvalidRequestError(
                f"{height}x{width} is below the {WATERMARK_MIN_SIDE}x{WATERMARK_MIN_SIDE} "
                f"pixels the invisible watermark needs; {allowed}"
            )
        tokens = self.num_tokens(frames, height, width)
        if tokens > cfg.max_tokens:
            raise InvalidRequestError(f"{frames}x{height}x{width} is {tokens} tokens; {allowed}")
        return frames, height, width, steps, guidance, seed

    def nearest_allowed(self, frames: int, height: int, width: int, grid: int | None = None) -> tuple[int, int, int]:
        """The allowed (frames, height, width) nearest to a request: sides rounded to the grid
        (the pixels a token covers, `ModelConfig.token_pixels`, or a multiple of both; at least
        one grid step, and the watermark's minimum when it is on), frames within 1..max_frames.
        For callers that must ask for a size that is not allowed (e.g. evaluating on fixed canvases)."""
        cfg = self.config
        if grid is not None and any(grid % cell for cell in cfg.token_pixels):
            raise ValueError(
                f"grid {grid} px is not a multiple of the model's cell of "
                f"{'x'.join(map(str, sorted(set(cfg.token_pixels))))} px"
            )

        def side(value: int, step: int) -> int:
            smallest = step * math.ceil(WATERMARK_MIN_SIDE / step) if self.safety.watermark else step
            largest = cfg.max_side // step * step
            return min(largest, max(smallest, math.floor(value / step + 0.5) * step))  # halves round up

        grid_h, grid_w = (grid, grid) if grid is not None else cfg.token_pixels
        return min(cfg.max_frames, max(1, frames)), side(height, grid_h), side(width, grid_w)

    def num_tokens(self, frames: int, height: int, width: int) -> int:
        """Tokens of a generated video: a causal autoencoder's layout covering `frames`."""
        return tokens_for_size(self.config, self.autoencoder, self.autoencoder.frames_covering(frames), height, width)

    # --------------------------------------------------------------------------- generation

    def __call__(
        self,
        prompt: str,
        frames: int = 16,
        height: int = 64,
        width: int = 64,
        *,
        steps: int = 25,
        guidance: float = 3.0,
        seed: int = 0,
        sampler: str = "euler",
        progress: bool = True,
    ) -> GeneratedVideo:
        frames, height, width, steps, guidance, seed = self.validate(
            prompt, frames, height, width, steps, guidance, seed
        )
        if sampler not in SAMPLERS:
            raise InvalidRequestError(f"sampler {sampler!r} is not allowed; use one of {sorted(SAMPLERS)}")
        prompt_stage = check_prompt_allowed(prompt, self.safety)  # before any compute
        video = generate_video(
            self.model,
            self.autoencoder,
            self.text_encoder,
            prompt,
            frames,
            height,
            width,
            steps=steps,
            guidance=guidance,
            seed=seed,
            sampler=sampler,
            progress=progress,
        )
        info = {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
        }
        return GeneratedVideo(
            tensor_to_frames(video), prompt, seed, info=info, safety=self.safety, prompt_stage=prompt_stage
        )


def tokens_for_size(config: ModelConfig, autoencoder: Autoencoder, frames: int, height: int, width: int) -> int:
    """How many transformer tokens a video of this pixel size becomes."""
    s = autoencoder.config.spatial_factor
    gt, gh, gw = token_grid((autoencoder.latent_frames(frames), height // s, width // s), config.patch_size)
    return gt * gh * gw


@torch.no_grad()
def generate_video(
    model: DiffusionTransformer,
    autoencoder: Autoencoder,
    text_encoder: TextEncoder,
    prompt: str,
    frames: int,
    height: int,
    width: int,
    *,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
    sampler: str = "euler",
    progress: bool = False,
) -> Tensor:
    """Sample one video; returns (3, frames, height, width) in [-1, 1]. No validation here."""
    cfg = model.config
    device = next(model.parameters()).device
    objective = Objective(cfg.diffusion)
    s = autoencoder.config.spatial_factor
    # A causal autoencoder decodes 1 + tf*k frames: make the fewest that cover the request.
    latent_frames = autoencoder.latent_frames_covering(frames)
    grid = token_grid((latent_frames, height // s, width // s), cfg.patch_size)
    n = grid[0] * grid[1] * grid[2]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, cfg.patch_dim, generator=generator).to(device)  # (N, P) iid, like training

    guided = guidance != 1.0
    prompts = [prompt, ""] if guided else [prompt]
    text, text_mask = text_encoder.encode(prompts)
    text, text_mask = text.to(device), text_mask.to(device)
    copies = len(prompts)
    positions = grid_positions(grid).to(device).repeat(copies, 1)
    segment_ids = torch.arange(copies, device=device).repeat_interleave(n)

    def velocity(z: Tensor, t: Tensor) -> Tensor:
        # One batched forward pass for all prompts: the same noisy tokens go in once per
        # prompt (conditional, unconditional); each copy's output is converted to velocity.
        x_in, t_in = objective.model_input(z, t)
        out = model(
            x_in.repeat(copies, 1), positions, segment_ids, t_in.repeat(copies, 1)[:, 0], text, text_mask
        )  # (copies * N, P)
        v = objective.velocity_from_output(out[:n], z, t)
        if guided:
            v_uncond = objective.velocity_from_output(out[n:], z, t)
            v = classifier_free_guidance(v, v_uncond, guidance)
        return v

    timesteps = flow_timesteps(steps, resolution_shift(n, cfg.diffusion))
    tokens = SAMPLERS[sampler](velocity, noise, timesteps, progress=progress)
    batch = PackedBatch(
        tokens, positions[:n], segment_ids[:n], [grid], [latent_frames], cfg.patch_size, cfg.latent_channels
    )
    latent = unpack(tokens, batch)[0]
    return autoencoder.decode(latent)[:, :frames]
