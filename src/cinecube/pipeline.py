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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .autoencoder import Autoencoder, load_model_autoencoder, tensor_to_frames
from .conditioning import (
    Condition,
    ConditionLatent,
    EditFrom,
    Keyframes,
    encode_clip,
    extras_for,
    fit_frames,
    layout_length,
)
from .config import ModelConfig
from .diffusion import Objective, flow_timesteps, resolution_shift
from .errors import InvalidRequestError, VideoIOError
from .model_folder import WEIGHTS_FILE, load_model_folder, load_weights_into
from .outputs import check_output_file
from .patches import pack, token_grid, unpack
from .prompting import expand as expand_prompt
from .safety.guard import PublishResult, SafetySettings, check_prompt_allowed, publish
from .safety.watermark import MIN_SIDE as WATERMARK_MIN_SIDE
from .sampling import SAMPLERS, StepFn, classifier_free_guidance
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

    def save(
        self,
        path: str | os.PathLike,
        *,
        published_as: str | os.PathLike | None = None,
        inputs: Sequence[tuple[str | os.PathLike, str]] = (),
    ) -> Path:
        """Review, watermark, write, sign and log; returns the path. Raises if a stage refuses.

        A file already at `path` is replaced, once every stage has passed (the command line
        asks for --force first); on any failure it stays as it was. `published_as`: where the
        caller will move the file (from a staged folder), for the audit record. `inputs`: the
        files the video was made from, as (path, relationship: "parentOf" for the video it
        extends or edits, "componentOf" for an image or clip placed in it), recorded in its
        C2PA manifest as ingredients."""
        check_output_path(path, self.frames.shape[0], force=True)
        check_fps(self.fps)
        generation = {k: self.info[k] for k in ("steps", "guidance", "sampler", "mode", "strength") if k in self.info}
        expansion = self.info.get("expansion") or {}
        if expansion.get("expanded", self.prompt) != self.prompt:
            # What the model was given, by its hash (a manifest never holds a prompt's text).
            generation["prompt_expanded_by"] = expansion["by"]
            generation["expanded_prompt_sha256"] = hashlib.sha256(expansion["expanded"].encode()).hexdigest()
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
            inputs=inputs,
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
        conditions: Sequence[Condition] = (),
        steps: int = 25,
        guidance: float = 3.0,
        seed: int = 0,
        sampler: str = "euler",
        progress: bool = True,
        on_step: StepFn | None = None,
        expand: str | Callable[[str], str] | None = "builtin",
    ) -> GeneratedVideo:
        """Generate a video from a prompt, optionally conditioned on frames (`Keyframes`: an image
        to animate, a clip to continue, the ends of a transition) or started from a video
        (`EditFrom`: SDEdit). The helpers `animate`, `extend`, `loop`, `connect` and `edit` build
        the conditions and put the given frames back, untouched, into what they return.
        `on_step(done, total)` is called after every sampling step (progress for a server).

        `expand` rewrites the prompt into the caption style the model was trained on before it
        is encoded (cinecube/prompting: "builtin", "none", "cmd:<shell command>", a function); the
        policy checks the prompt as written and as expanded, and `info["expansion"]` says what
        was given to the model."""
        frames, height, width, steps, guidance, seed = self.validate(
            prompt, frames, height, width, steps, guidance, seed
        )
        if sampler not in SAMPLERS:
            raise InvalidRequestError(f"sampler {sampler!r} is not allowed; use one of {sorted(SAMPLERS)}")
        keyframes, edit = check_conditions(conditions, frames, height, width)
        prompt_stage = check_prompt_allowed(prompt, self.safety)  # before any compute
        expansion = expand_prompt(
            prompt, expand, max_tokens=self.config.text_max_tokens, token_count=self.text_encoder.token_count
        )
        if expansion.changed:
            check_prompt_allowed(expansion.expanded, self.safety)
        keyframes, edit = self._review_inputs(keyframes, edit)  # the given frames too, before any compute
        info = {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
            "expansion": expansion.to_dict(),
        }
        if edit is not None and edit.strength == 0:  # the input, as it is
            return GeneratedVideo(edit.frames, prompt, seed, info=info, safety=self.safety, prompt_stage=prompt_stage)
        device = next(self.model.parameters()).device
        tf = self.autoencoder.config.temporal_factor
        encoded = [
            ConditionLatent(encode_clip(self.autoencoder, k.frames[: layout_length(len(k.frames), tf)], device), k.at)
            for k in keyframes
        ]
        start = None
        if edit is not None:
            # Repeat the last frame up to the causal layout that covers the request.
            covering = self.autoencoder.frames_covering(frames)
            padded = np.concatenate([edit.frames, edit.frames[-1:].repeat(covering - frames, axis=0)])
            start = (encode_clip(self.autoencoder, padded, device), float(edit.strength))
        video = generate_video(
            self.model,
            self.autoencoder,
            self.text_encoder,
            expansion.expanded,
            frames,
            height,
            width,
            steps=steps,
            guidance=guidance,
            seed=seed,
            sampler=sampler,
            progress=progress,
            conditions=encoded,
            start=start,
            on_step=on_step,
        )
        return GeneratedVideo(
            tensor_to_frames(video), prompt, seed, info=info, safety=self.safety, prompt_stage=prompt_stage
        )

    def _review_inputs(
        self, keyframes: list[Keyframes], edit: EditFrom | None
    ) -> tuple[list[Keyframes], EditFrom | None]:
        """Frame review of the frames a request is given (faces are refused, or blurred with the
        blur action), before any compute: what goes in would come out."""
        if not self.safety.frame_review:
            return keyframes, edit
        from .safety.frames import review_frames
        from .safety.guard import SafetyBlockedError

        def reviewed(frames: np.ndarray) -> np.ndarray:
            review = review_frames(frames, every_k=self.safety.frame_review_every, action=self.safety.frame_action)
            if not review.allowed:
                labels = sorted({f.label for f in review.findings})
                raise SafetyBlockedError(
                    "frame_review",
                    f"an input is refused by frame review ({', '.join(labels)} found); "
                    "use --frame-action blur to blur faces instead",
                )
            return review.frames

        keyframes = [Keyframes(reviewed(k.frames), k.at) for k in keyframes]
        edit = EditFrom(reviewed(edit.frames), edit.strength) if edit is not None else None
        return keyframes, edit

    # --------------------------------------------------------------------------- helpers

    def fit_image(self, image: np.ndarray, height: int | None = None, width: int | None = None) -> np.ndarray:
        """An image (H, W, 3) or frames (T, H, W, 3), scaled and centre-cropped to (height, width),
        or without them to the allowed size nearest its own aspect ratio and area."""
        frames = image[None] if image.ndim == 3 else image
        if height is None or width is None:
            h, w = frames.shape[1:3]
            height, width = self.nearest_allowed_size(h, w)
        return fit_frames(frames, height, width)

    def nearest_allowed_size(self, height: int, width: int) -> tuple[int, int]:
        """The allowed (height, width) nearest a picture's own: its aspect ratio, its area, on the grid."""
        _, h, w = self.nearest_allowed(1, height, width)
        return h, w

    def animate(self, prompt: str, image: np.ndarray, frames: int = 16, **options) -> GeneratedVideo:
        """Animate an image (H, W, 3) at the request's size: it is the first frame."""
        image = _as_frames(image, "image")[:1]
        height, width = image.shape[1:3]
        video = self(prompt, frames, height, width, conditions=[Keyframes(image, 0)], **options)
        video.frames = np.concatenate([image, video.frames[1:]])
        video.info["mode"] = "animate"
        return video

    def extend(
        self, prompt: str, video: np.ndarray, frames: int = 8, direction: str = "forward", **options
    ) -> GeneratedVideo:
        """`frames` new frames after (forward) or before (backward) a video; the result holds the
        video's frames as they were, then (or preceded by) the new ones. The model sees the
        video's last (first) frames, as many as fit beside the new ones in `max_frames`."""
        video = _as_frames(video, "video")
        if direction not in ("forward", "backward"):
            raise InvalidRequestError(f"direction {direction!r} is not allowed; use forward or backward")
        frames = _integer("frames", frames)
        room = self.config.max_frames - frames
        if frames < 1 or room < 1:
            raise InvalidRequestError(
                f"frames {frames} is not allowed; extend adds 1..{self.config.max_frames - 1} frames at a time"
            )
        context = layout_length(min(len(video), room), self.autoencoder.config.temporal_factor)
        height, width = video.shape[1:3]
        if direction == "forward":
            made = self(prompt, context + frames, height, width, conditions=[Keyframes(video[-context:], 0)], **options)
            made.frames = np.concatenate([video, made.frames[context:]])
        else:
            made = self(
                prompt, frames + context, height, width, conditions=[Keyframes(video[:context], frames)], **options
            )
            made.frames = np.concatenate([made.frames[:frames], video])
        made.info.update(mode=f"extend {direction}", context_frames=context)
        return made

    def loop(self, prompt: str, frames: int = 16, image: np.ndarray | None = None, **options) -> GeneratedVideo:
        """A video whose last frame flows into its first: it starts and would end on the same frame
        (the image, or one generated from the prompt first), which is shown once."""
        height, width = options.pop("height", 64), options.pop("width", 64)
        if image is None:
            first = self(prompt, 1, height, width, **options).frames
        else:
            first = _as_frames(image, "image")[:1]
            height, width = first.shape[1:3]
        frames = _integer("frames", frames)
        if not 2 <= frames <= self.config.max_frames - 1:
            raise InvalidRequestError(f"frames {frames} is not allowed for a loop; use 2..{self.config.max_frames - 1}")
        ends = [Keyframes(first, 0), Keyframes(first, frames)]
        made = self(prompt, frames + 1, height, width, conditions=ends, **options)
        made.frames = np.concatenate([first, made.frames[1:frames]])
        made.info["mode"] = "loop"
        return made

    def connect(self, prompt: str, a: np.ndarray, b: np.ndarray, frames: int = 8, **options) -> GeneratedVideo:
        """A transition of `frames` frames from where `a` ends to where `b` starts; the result is
        a, the transition, b (images count as one-frame videos)."""
        a, b = _as_frames(a, "first video"), _as_frames(b, "second video")
        if a.shape[1:3] != b.shape[1:3]:
            raise InvalidRequestError(
                f"the two videos differ in size ({a.shape[2]}x{a.shape[1]} and {b.shape[2]}x{b.shape[1]})"
            )
        frames = _integer("frames", frames)
        if not 1 <= frames <= self.config.max_frames - 2:
            raise InvalidRequestError(
                f"frames {frames} is not allowed for a transition; use 1..{self.config.max_frames - 2}"
            )
        height, width = a.shape[1:3]
        ends = [Keyframes(a[-1:], 0), Keyframes(b[:1], frames + 1)]
        made = self(prompt, frames + 2, height, width, conditions=ends, **options)
        made.frames = np.concatenate([a, made.frames[1 : frames + 1], b])
        made.info["mode"] = "connect"
        return made

    def edit(self, prompt: str, video: np.ndarray, strength: float = 0.6, **options) -> GeneratedVideo:
        """SDEdit a video by a prompt: 0 returns it, 1 ignores it; 0.5-0.7 changes what the prompt
        says and keeps the motion and layout."""
        video = _as_frames(video, "video")
        height, width = video.shape[1:3]
        made = self(prompt, len(video), height, width, conditions=[EditFrom(video, strength)], **options)
        made.info.update(mode="edit", strength=float(strength))
        return made


def _as_frames(value: np.ndarray, name: str) -> np.ndarray:
    """An image (H, W, 3) or frames (T, H, W, 3) of uint8 as frames; one line otherwise."""
    array = np.asarray(value)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1 or array.dtype != np.uint8:
        raise InvalidRequestError(
            f"{name} must be uint8 frames (T, H, W, 3) or an image (H, W, 3), got {array.dtype} {tuple(array.shape)}"
        )
    return array


def check_conditions(
    conditions: Sequence[Condition], frames: int, height: int, width: int
) -> tuple[list[Keyframes], EditFrom | None]:
    """Refuse conditions that do not fit the request, in one line each."""
    keyframes, edits = [], []
    for condition in conditions:
        if isinstance(condition, Keyframes):
            clip = _as_frames(condition.frames, "keyframes")
            at = _integer("keyframes at", condition.at)
            if clip.shape[1:3] != (height, width):
                raise InvalidRequestError(
                    f"keyframes are {clip.shape[2]}x{clip.shape[1]}; the video is {width}x{height} (fit them first)"
                )
            if at < 0 or at + len(clip) > frames:
                raise InvalidRequestError(
                    f"keyframes of {len(clip)} frame(s) at frame {at} do not fit in a video of {frames} frames"
                )
            keyframes.append(Keyframes(clip, at))
        elif isinstance(condition, EditFrom):
            clip = _as_frames(condition.frames, "the video to edit")
            strength = condition.strength
            if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0 <= strength <= 1:
                raise InvalidRequestError(
                    f"strength {strength} is not allowed; use 0..1 (0 keeps the video, 1 ignores it)"
                )
            if clip.shape[:3] != (frames, height, width):
                raise InvalidRequestError(
                    f"the video to edit is {len(clip)}x{clip.shape[2]}x{clip.shape[1]}; the request "
                    f"{frames}x{width}x{height}"
                )
            edits.append(EditFrom(clip, float(strength)))
        else:
            raise InvalidRequestError(f"a condition must be Keyframes or EditFrom, got {type(condition).__name__}")
    if len(edits) > 1:
        raise InvalidRequestError("a request can start from one video (EditFrom), not several")
    return keyframes, edits[0] if edits else None


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
    conditions: Sequence[ConditionLatent] = (),
    start: tuple[Tensor, float] | None = None,
    on_step: StepFn | None = None,
) -> Tensor:
    """Sample one video; returns (3, frames, height, width) in [-1, 1]. No validation here.

    `conditions` are clips encoded on their own, given to the model as clean extra tokens at
    their frames (cinecube/conditioning.py). `start` = (latent (C, T', H', W'), strength) makes
    it SDEdit: sampling starts from that latent noised to t = strength instead of from noise."""
    cfg = model.config
    device = next(model.parameters()).device
    objective = Objective(cfg.diffusion)
    s = autoencoder.config.spatial_factor
    # A causal autoencoder decodes 1 + tf*k frames: make the fewest that cover the request.
    latent_frames = autoencoder.latent_frames_covering(frames)
    shape = (cfg.latent_channels, latent_frames, height // s, width // s)
    packed = pack([torch.zeros(shape, device=device)], cfg.patch_size, extras=[extras_for(list(conditions), cfg)])
    n, total = packed.video_lengths[0], packed.lengths[0]  # the video's own tokens; with its conditions
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, cfg.patch_dim, generator=generator).to(device)  # (N, P) iid, like training
    is_condition = packed.is_extra  # (total,)
    timesteps = flow_timesteps(steps, resolution_shift(n, cfg.diffusion))
    if start is not None:
        # SDEdit (Meng et al. 2022): the video's own latent, noised along the flow path to t = strength,
        # then denoised from there over the same schedule scaled to [0, strength].
        start_latent, strength = start
        clean = pack([start_latent.to(device)], cfg.patch_size).tokens
        noise = (1 - strength) * clean + strength * noise
        timesteps = timesteps * strength
    state = torch.cat([noise, packed.tokens[n:]])  # (total, P): noisy video tokens, then clean conditions

    guided = guidance != 1.0
    prompts = [prompt, ""] if guided else [prompt]
    text, text_mask = text_encoder.encode(prompts)
    text, text_mask = text.to(device), text_mask.to(device)
    copies = len(prompts)
    positions = packed.positions.to(device).repeat(copies, 1)
    segment_ids = torch.arange(copies, device=device).repeat_interleave(total)

    def velocity(z: Tensor, t: Tensor) -> Tensor:
        # One batched forward pass for all prompts: the same tokens go in once per prompt
        # (conditional, unconditional; both see the conditions); each copy's output is
        # converted to velocity.
        x_in, t_in = objective.model_input(z, t)
        out = model(
            x_in.repeat(copies, 1), positions, segment_ids, t_in.repeat(copies, 1)[:, 0], text, text_mask
        )  # (copies * total, P)
        v = objective.velocity_from_output(out[:total], z, t)
        if guided:
            v_uncond = objective.velocity_from_output(out[total:], z, t)
            v = classifier_free_guidance(v, v_uncond, guidance)
        return v

    cond = {"cond_mask": is_condition, "cond_value": state} if conditions else {}
    tokens = SAMPLERS[sampler](velocity, state, timesteps, progress=progress, on_step=on_step, **cond)
    latent = unpack(tokens, packed)[0]
    return autoencoder.decode(latent)[:, :frames]
