"""What a job request may hold, and its rehearsal before it is queued.

A request names a mode and the options of the matching command (`generate`, with `image` to
animate a picture or `loop`; `extend`, `connect`, `edit`), with the same defaults and limits.
Before a job is queued, the request is rehearsed: the pipeline helper the worker will call
(`Pipeline.animate`, `extend`, `loop`, `connect`, `edit`, or the pipeline itself) runs on a
`Rehearsal`, a pipeline whose generation step only checks the request (sizes, frames,
conditions, sampler) and returns blank frames of the size it would make. So the server refuses
exactly what the worker would, with the pipeline's own messages, and learns the size of the
result, without the transformer's weights in the server process. Then the prompt policy runs,
as the command line runs it, before any job exists.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import CinecubeError, InvalidRequestError
from ..pipeline import (
    DEFAULT_FPS,
    MAX_FPS,
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_STEPS,
    GeneratedVideo,
    Pipeline,
    allowed_sizes_message,
    check_conditions,
    check_fps,
    check_request,
    default_model_dir,
)
from ..safety.guard import SafetySettings, check_prompt_allowed
from ..safety.watermark import MIN_SIDE as WATERMARK_MIN_SIDE
from ..sampling import SAMPLERS

MAX_PROMPT_CHARS = 2000  # before tokenizing; the model's token limit is checked too
MAX_REQUEST_SIDE = 4096  # a bound for the schema; the model's own sides are checked after
MAX_REQUEST_FRAMES = 1024


class JobRequest(BaseModel):
    """A generation job: the options of `cinecube generate` (and `extend`, `connect`, `edit`)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true is not 1, "3" is not 3

    prompt: str = Field(max_length=MAX_PROMPT_CHARS, description="what the video shows")
    mode: Literal["generate", "extend", "connect", "edit"] = Field(
        "generate",
        description="generate (text, or `image` to animate); extend `video`; connect `video` to "
        "`second_video`; edit `video`",
    )
    frames: int | None = Field(
        None,
        ge=1,
        le=MAX_REQUEST_FRAMES,
        description="frames to make: generate 16 by default; the new frames of extend and connect (8)",
    )
    height: int | None = Field(
        None, ge=1, le=MAX_REQUEST_SIDE, description="pixels; generate only (64, or nearest the image's size)"
    )
    width: int | None = Field(
        None, ge=1, le=MAX_REQUEST_SIDE, description="pixels; generate only (64, or nearest the image's size)"
    )
    steps: int = Field(25, ge=1, le=MAX_STEPS, description="sampling steps")
    guidance: float = Field(3.0, ge=0, le=MAX_GUIDANCE, description="classifier-free guidance scale (1 = off)")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    sampler: Literal["euler", "heun"] = "euler"
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description=f"frames per second ({DEFAULT_FPS:g}, or the input video's)"
    )
    loop: bool = Field(False, description="generate only: a seamless loop (the last frame flows into the first)")
    image: str | None = Field(None, description="generate only: the id of an uploaded image to animate")
    video: str | None = Field(None, description="extend, connect, edit: the id of an uploaded video (or image)")
    second_video: str | None = Field(None, description="connect: the id of the uploaded video it leads into")
    direction: Literal["forward", "backward"] = Field("forward", description="extend: new frames after or before")
    strength: float = Field(0.6, ge=0, le=1, description="edit: 0 keeps the video, 1 ignores it")
    format: Literal["mp4", "gif", "png"] = Field("mp4", description="the result's file type (png: one frame)")


# The fields each mode takes besides prompt, mode and the sampling options.
_SAMPLING = {"steps", "guidance", "seed", "sampler", "fps", "format"}
MODE_FIELDS = {
    "generate": {"frames", "height", "width", "loop", "image"},
    "extend": {"frames", "video", "direction"},
    "connect": {"frames", "video", "second_video"},
    "edit": {"video", "strength"},
}
REQUIRED_UPLOADS = {"extend": ("video",), "connect": ("video", "second_video"), "edit": ("video",)}


def limits_text(field: str, sizes: str) -> str:
    """How a request field's allowed values are described (the pipeline's own words)."""
    return {
        "prompt": f"describe the video in at most {MAX_PROMPT_CHARS} characters",
        "frames": sizes,
        "height": sizes,
        "width": sizes,
        "steps": f"use 1..{MAX_STEPS}",
        "guidance": f"use 0..{MAX_GUIDANCE:g} (1 = no guidance)",
        "seed": f"use 0..{MAX_SEED}",
        "fps": f"use a number above 0 and at most {MAX_FPS:g}",
        "strength": "use 0..1 (0 keeps the video, 1 ignores it)",
        "sampler": "use one of ['euler', 'heun']",
        "mode": "use one of generate, extend, connect, edit",
        "direction": "use forward or backward",
        "format": "use mp4, gif or png",
        "loop": "use true or false",
    }.get(field, "")


class RequestProblem(CinecubeError):
    """A request that cannot run, naming its field (HTTP 422), or refused by a safety stage
    (HTTP 400, with the stage and, for the prompt policy, the category)."""

    def __init__(self, message: str, field: str | None, *, status: int = 422, stage: str | None = None, category=None):
        super().__init__(message)
        self.field = field
        self.status = status
        self.stage = stage
        self.category = category


_FIELD_WORDS = ("prompt", "frames", "height", "width", "steps", "guidance", "seed", "sampler", "fps", "strength")


def field_of(message: str, mode: str) -> str | None:
    """The request field a pipeline message is about."""
    first = message.split(" ", 1)[0]
    if first in _FIELD_WORDS:
        return first
    if first == "direction":
        return "direction"
    if re.match(r"^\d+x\d+x\d+ is \d+ tokens", message):
        return "frames"
    if re.match(r"^\d+x\d+ is below", message):
        return "height" if mode == "generate" else "video"
    if message.startswith("the two videos differ"):
        return "second_video"
    if message.startswith(("keyframes", "the video to edit", "video ", "image ")):
        return "image" if mode == "generate" else "video"
    return None


@dataclass
class Plan:
    """A checked request: what the worker runs, and the size of what it makes."""

    mode: str
    prompt: str
    params: dict[str, Any]
    uploads: list[tuple[dict[str, Any], str]]  # (upload, relationship in the manifest)
    output: tuple[int, int, int]  # frames, height, width


class _ConfigOnly(torch.nn.Module):
    """Stands for the transformer in a rehearsal: validation reads only its config."""

    def __init__(self, config):
        super().__init__()
        self.config = config


class Rehearsal(Pipeline):
    """A pipeline that checks a request as `Pipeline.__call__` does and makes blank frames."""

    def __call__(
        self,
        prompt: str,
        frames: int = 16,
        height: int = 64,
        width: int = 64,
        *,
        conditions=(),
        steps: int = 25,
        guidance: float = 3.0,
        seed: int = 0,
        sampler: str = "euler",
        progress: bool = True,
        on_step=None,
        **other,  # options that change nothing checked here
    ) -> GeneratedVideo:
        frames, height, width, steps, guidance, seed = self.validate(
            prompt, frames, height, width, steps, guidance, seed
        )
        if sampler not in SAMPLERS:
            raise InvalidRequestError(f"sampler {sampler!r} is not allowed; use one of {sorted(SAMPLERS)}")
        check_conditions(conditions, frames, height, width)
        return GeneratedVideo(np.zeros((frames, height, width, 3), np.uint8), prompt, seed, info={})


class Planner:
    """Checks requests against one model (its config, text tokenizer and autoencoder; never its
    transformer weights) and the safety settings the workers use."""

    def __init__(self, model: str | None, safety: SafetySettings):
        from ..autoencoder import load_model_autoencoder
        from ..model_folder import load_model_folder
        from ..text import get_text_encoder

        stored = load_model_folder(model if model is not None else default_model_dir())  # checks the folder whole
        self.model_path = stored.path
        self.model_name = "default" if model is None else Path(stored.path).name
        autoencoder = load_model_autoencoder(stored.path, stored.model_config)
        text = get_text_encoder(stored.model_config.text_max_tokens)
        self.pipe = Rehearsal(_ConfigOnly(stored.model_config), autoencoder, text, name=self.model_name, safety=safety)
        self.safety = safety
        self.config = stored.model_config
        self.min_side = WATERMARK_MIN_SIDE if safety.watermark else 1
        self.sizes = allowed_sizes_message(self.config, self.min_side)
        # The tokenizer and the prompt policy's encoder are not safe to share between threads.
        self._lock = threading.Lock()
        check_prompt_allowed("a red circle", SafetySettings(audit=False, prompt_policy=safety.prompt_policy))

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        grid_h, grid_w = cfg.token_pixels
        return {
            "name": self.model_name,
            "grid": {"height": grid_h, "width": grid_w},
            "min_side": max(grid_h, grid_w, self.min_side),
            "max_side": cfg.max_side,
            "max_frames": cfg.max_frames,
            "max_tokens": cfg.max_tokens,
            "max_prompt_tokens": cfg.text_max_tokens,
            "allowed_sizes": self.sizes,
            "defaults": {"frames": 16, "height": 64, "width": 64, "steps": 25, "guidance": 3.0, "fps": DEFAULT_FPS},
            "limits": {
                "steps": [1, MAX_STEPS],
                "guidance": [0, MAX_GUIDANCE],
                "seed": [0, MAX_SEED],
                "fps": [0, MAX_FPS],
                "prompt_chars": MAX_PROMPT_CHARS,
            },
            "safety": {"skipped": self.safety.skipped, "frame_action": self.safety.frame_action},
        }

    def plan(self, request: JobRequest, uploads: dict[str, dict[str, Any]]) -> Plan:
        """Check a request; `uploads` are the owner's uploads it names (by field). Raises
        RequestProblem naming the field."""
        mode = request.mode
        given = request.model_fields_set
        allowed = MODE_FIELDS[mode] | _SAMPLING | {"prompt", "mode"}
        for name in sorted(given - allowed):
            if getattr(request, name) != JobRequest.model_fields[name].default:
                users = [m for m, fields in MODE_FIELDS.items() if name in fields]
                raise RequestProblem(f"{name} is not used by mode {mode}; it is for mode {', '.join(users)}", name)
        for name in REQUIRED_UPLOADS.get(mode, ()):
            if getattr(request, name) is None:
                raise RequestProblem(f"{name} is required by mode {mode}: the id of an upload (POST /v1/uploads)", name)
        if (request.height is None) != (request.width is None):
            raise RequestProblem("give height and width together (or neither)", "width")
        fps = request.fps
        try:
            check_request(request.prompt, 1, 64, 64, steps=request.steps, guidance=request.guidance, seed=request.seed)
            if fps is not None:
                check_fps(fps)
        except InvalidRequestError as error:
            raise RequestProblem(str(error), field_of(str(error), mode)) from None
        options = {"steps": request.steps, "guidance": request.guidance, "seed": request.seed}
        options["sampler"] = request.sampler
        params: dict[str, Any] = {**options, "format": request.format}
        used: list[tuple[dict[str, Any], str]] = []
        with self._lock:
            try:
                video, params_extra = self._rehearse(request, uploads, options, used)
            except InvalidRequestError as error:
                raise RequestProblem(str(error), field_of(str(error), mode)) from None
            params |= params_extra
            frames, height, width = video.frames.shape[:3]
            if request.format == "png" and frames != 1:
                raise RequestProblem(
                    f"format png holds one frame, the request makes {frames}; use mp4 or gif", "format"
                )
            if fps is None:
                fps = float(used[0][0]["fps"]) if mode != "generate" and used else DEFAULT_FPS
                fps = min(MAX_FPS, fps)
            params["fps"] = fps
            # The prompt policy last, as in the pipeline: a denied prompt is logged, no job is made.
            from ..safety.guard import SafetyBlockedError

            try:
                check_prompt_allowed(request.prompt, self.safety)
            except SafetyBlockedError as error:
                raise RequestProblem(
                    str(error), "prompt", status=400, stage=error.stage, category=error.detail.get("category")
                ) from None
        return Plan(mode, request.prompt, params, used, (frames, height, width))

    def _rehearse(self, request: JobRequest, uploads, options, used) -> tuple[GeneratedVideo, dict[str, Any]]:
        pipe, prompt = self.pipe, request.prompt

        def blank(field: str, relationship: str) -> np.ndarray:
            upload = uploads[field]
            used.append((upload, relationship))
            shape = (upload["frames"], upload["height"], upload["width"], 3)
            return np.broadcast_to(np.zeros((), np.uint8), shape)

        if request.mode == "generate":
            frames = request.frames if request.frames is not None else 16
            if request.image is not None:
                image = blank("image", "componentOf")[:1]
                height, width = request.height, request.width
                if height is None:
                    height, width = pipe.nearest_allowed_size(image.shape[1], image.shape[2])
                fitted = np.zeros((1, height, width, 3), np.uint8)
                if request.loop:
                    video = pipe.loop(prompt, frames, image=fitted, **options)
                else:
                    video = pipe.animate(prompt, fitted[0], frames, **options)
            else:
                height, width = request.height or 64, request.width or 64
                if request.loop:
                    video = pipe.loop(prompt, frames, height=height, width=width, **options)
                else:
                    video = pipe(prompt, frames, height, width, **options)
            return video, {"frames": frames, "height": height, "width": width, "loop": request.loop}
        if request.mode == "extend":
            frames = request.frames if request.frames is not None else 8
            video = pipe.extend(prompt, blank("video", "parentOf"), frames, request.direction, **options)
            return video, {"frames": frames, "direction": request.direction}
        if request.mode == "connect":
            frames = request.frames if request.frames is not None else 8
            first, second = blank("video", "componentOf"), blank("second_video", "componentOf")
            return pipe.connect(prompt, first, second, frames, **options), {"frames": frames}
        video = pipe.edit(prompt, blank("video", "parentOf"), request.strength, **options)
        return video, {"strength": request.strength}
