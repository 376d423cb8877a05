"""The gate every cinecube output passes through, in this order:

    prompt policy      (before any compute: a denied prompt generates nothing)
    frame review       (faces and other reviewers: block, or blur and go on)
    invisible watermark (payload = model id + generation id + check code, in every frame)
    write              (to a hidden temporary file beside the target)
    C2PA manifest      (signed in place: c2pa.created, trainedAlgorithmicMedia, our claims,
                        a soft binding to the watermark payload)
    audit log          (one JSON line: time, prompt hash, every stage's decision, output hash)
    publish            (atomic rename onto the target name: the last step)

A stage that denies or raises stops the request: the temporary file is removed, nothing
appears under the target name (a file already there stays as it was), the audit log records
why, and the caller gets a `SafetyBlockedError` (or the stage's own error). Whether the
audit log can be written is checked before anything else (`check_settings`), and the
published record is written before the rename, so no output exists without its record.
`SafetySettings` can switch stages off for research (`--unsafe-skip-*` on the command line);
what was skipped is recorded in the audit log and the manifest's claims, and reported to the
user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CinecubeError
from ..outputs import clean_stale_temporaries, temporary_path

STAGES = ("prompt_policy", "frame_review", "watermark", "c2pa")


class SafetyBlockedError(CinecubeError):
    """A safety stage refused the request; nothing was written."""

    def __init__(self, stage: str, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.stage = stage
        self.detail = detail or {}


@dataclass(frozen=True)
class SafetySettings:
    """Which stages run and how. Every stage is on by default."""

    prompt_policy: bool = True
    frame_review: bool = True
    frame_action: str = "block"  # "block" or "blur" detected faces
    frame_review_every: int = 8  # review first, last and every k-th frame
    watermark: bool = True
    c2pa: bool = True
    audit: bool = True
    audit_path: str | None = None  # default: <config dir>/audit.jsonl
    signing_key: str | None = None  # an organisation's key (PKCS#8 PEM) ...
    signing_chain: str | None = None  # ... and its certificate chain; else per-installation

    def __post_init__(self) -> None:
        if self.frame_action not in ("block", "blur"):
            raise CinecubeError(f"frame action {self.frame_action!r} is not allowed; use 'block' or 'blur'")
        if self.frame_review_every < 1:
            raise CinecubeError(f"frame review interval {self.frame_review_every} must be at least 1")
        if (self.signing_key is None) != (self.signing_chain is None):
            raise CinecubeError("an organisation signing key needs both the key and the certificate chain")

    @property
    def skipped(self) -> list[str]:
        return [stage for stage in STAGES if not getattr(self, stage)]


@dataclass
class PublishResult:
    path: Path
    output_sha256: str
    watermark_payload: str | None  # hex, None when the watermark was skipped
    stages: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    request_id: str | None = None  # the audit record's (and the manifest's) id of this request


def check_settings(settings: SafetySettings) -> None:
    """Checks that need no frames, run before any work: the audit log can be written and an
    organisation's signing key and chain can be read."""
    if settings.audit:
        from .audit import AuditLog

        AuditLog(settings.audit_path).check_writable()
    if settings.c2pa and settings.signing_key is not None:
        _signing_identity(settings)


def _audit(settings: SafetySettings, record: dict[str, Any]) -> None:
    if not settings.audit:
        return
    from .audit import AuditLog

    AuditLog(settings.audit_path).append(record)


def _base_record(request_id: str, prompt: str, settings: SafetySettings) -> dict[str, Any]:
    from .provenance import prompt_sha256

    return {"request_id": request_id, "prompt_sha256": prompt_sha256(prompt), "skipped_stages": settings.skipped}


def check_prompt_allowed(
    prompt: str,
    settings: SafetySettings,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Stage 1, run before generating. Raises SafetyBlockedError (and logs it) on a denial."""
    if not settings.prompt_policy:
        return {"stage": "prompt_policy", "decision": "skipped"}
    from .prompts import check_prompt

    decision = check_prompt(prompt)
    stage = {
        "stage": "prompt_policy",
        "decision": "allow" if decision.allowed else "deny",
        "category": decision.category,
        "by": decision.stage,
    }
    if not decision.allowed:
        request_id = request_id or uuid.uuid4().hex
        _audit(
            settings,
            {
                **_base_record(request_id, prompt, settings),
                "stages": [stage],
                "outcome": "blocked",
                "output_path": None,
                "output_sha256": None,
            },
        )
        raise SafetyBlockedError(
            "prompt_policy",
            f"prompt refused by the content policy (category: {decision.category}): {decision.reason}",
            stage,
        )
    return stage


def _signing_identity(settings: SafetySettings):
    from .provenance import SigningIdentity

    if settings.signing_key is not None:
        return SigningIdentity.from_files(settings.signing_key, settings.signing_chain)
    return SigningIdentity.load_or_create()


# Spread-spectrum strengths tried in turn, as the PSNR of the embedding. 40 dB is the
# default; some small clips need more (docs/watermark-robustness-published.json records the
# PSNR the gate ended at; quantization mode, which most small real clips use, has one strength).
WATERMARK_PSNR_STEPS_DB = (40.0, 37.0, 34.0, 31.0)
# The re-encode a shared video is expected to survive (videos only; a still is not H.264).
SHARING_CRF = 23


def _sharing_distortions(frames: int, fps: float) -> dict[str, Any]:
    from .distortions import h264_round_trip, resize_half_and_back

    checks = {"resize_half": resize_half_and_back}
    if frames > 1:
        checks["h264_crf23"] = lambda video: h264_round_trip(video, SHARING_CRF, fps)
    return checks


def write_watermarked(frames: np.ndarray, payload, tmp: Path, fps: float, stage: dict[str, Any]) -> np.ndarray:
    """Embed ``payload``, write ``tmp`` and read it back, strengthening the mark until

    1. the file as written carries the payload (required: otherwise SafetyBlockedError), and
    2. so does each of the sharing distortions (H.264 CRF 23 for videos, a 0.5x resize and
       back) applied to that file (wanted: when no strength gets there, the weakest mark
       that meets 1 and most of 2 is kept, and the stage says which survived).

    Returns the frames written; ``stage`` (the audit record) gets the strength and checks."""
    from ..video_io import read_video, write_video
    from .watermark import MIN_SIDE, detect_watermark, embed_watermark

    if min(frames.shape[1:3]) < MIN_SIDE:
        stage.update(decision="failed", attempts=0)
        raise SafetyBlockedError(
            "watermark",
            f"{frames.shape[1]}x{frames.shape[2]} frames are below the "
            f"{MIN_SIDE}x{MIN_SIDE} pixels the invisible watermark needs",
            stage,
        )

    def carries(video: np.ndarray) -> bool:
        check = detect_watermark(video)
        return bool(check.detected and check.payload == payload)

    distortions = _sharing_distortions(len(frames), fps)
    best: tuple[int, np.ndarray, dict[str, Any]] | None = None  # (distortions survived, frames, record)
    for attempt, psnr_db in enumerate(WATERMARK_PSNR_STEPS_DB, start=1):
        marked = embed_watermark(frames, payload, psnr_db=psnr_db)
        write_video(tmp, marked, fps=fps)
        written = read_video(tmp)[0]
        if not carries(written):
            continue
        survives = {name: carries(distort(written)) for name, distort in distortions.items()}
        record = {"attempts": attempt, "psnr_db": _psnr(frames, marked), "survives": survives}
        if best is None or sum(survives.values()) > best[0]:
            best = (sum(survives.values()), marked, record)
        if all(survives.values()):
            break
    if best is None:
        stage.update(decision="failed", attempts=len(WATERMARK_PSNR_STEPS_DB))
        raise SafetyBlockedError(
            "watermark",
            f"the watermark did not survive writing {tmp.suffix} at "
            f"{frames.shape[1]}x{frames.shape[2]}x{frames.shape[0]} even at "
            f"{WATERMARK_PSNR_STEPS_DB[-1]:.0f} dB PSNR; write a .png or a larger video",
            stage,
        )
    _, marked, record = best
    if record["attempts"] != attempt:
        write_video(tmp, marked, fps=fps)  # an earlier strength survived more
    stage.update(record, attempts=attempt)
    return marked


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(10 * float(np.log10(255.0**2 / mse)), 2) if mse > 0 else None


def publish(
    frames: np.ndarray,
    path: str | os.PathLike,
    *,
    prompt: str,
    seed: int,
    fps: float,
    model_name: str,
    checkpoint_sha256: str,
    generation: dict[str, Any],
    settings: SafetySettings = SafetySettings(),
    prompt_stage: dict[str, Any] | None = None,
    request_id: str | None = None,
    published_as: str | os.PathLike | None = None,
    inputs: Sequence[tuple[str | os.PathLike, str]] = (),
) -> PublishResult:
    """Run frames (T, H, W, 3) uint8 through review, watermark, write, sign; log; publish.

    `generation` holds the request's settings for the manifest (steps, guidance, sampler).
    `prompt_stage` is the prompt policy's decision if the caller checked it before generating;
    otherwise the policy runs here. `published_as` is where the file will end up when the
    caller writes into a staged folder it publishes later (the audit records that path).
    `inputs` ((path, relationship) of the files the frames were made from) go into the manifest
    as ingredients and into the audit record.
    """
    from ..video_io import write_video

    request_id = request_id or uuid.uuid4().hex
    target = Path(path)
    stages = [prompt_stage or check_prompt_allowed(prompt, settings, request_id)]
    record = _base_record(request_id, prompt, settings)
    if inputs:
        record["inputs"] = [{"path": str(Path(p).resolve()), "relationship": r} for p, r in inputs]
    clean_stale_temporaries(target.parent)
    tmp = temporary_path(target)
    published = False
    try:
        check_settings(settings)  # the command line has checked these before any work; the API here
        if settings.frame_review:
            from .frames import review_frames

            review = review_frames(frames, every_k=settings.frame_review_every, action=settings.frame_action)
            stage = {
                "stage": "frame_review",
                "decision": review.action_taken if review.allowed else "deny",
                "findings": [
                    {"frame": f.frame_index, "reviewer": f.reviewer, "label": f.label} for f in review.findings
                ],
            }
            stages.append(stage)
            if not review.allowed:
                labels = sorted({f.label for f in review.findings})
                raise SafetyBlockedError(
                    "frame_review",
                    f"output blocked by frame review "
                    f"({', '.join(labels)} found in {len(review.findings)} place(s)); "
                    "use --frame-action blur to blur faces instead",
                    stage,
                )
            frames = review.frames
        else:
            stages.append({"stage": "frame_review", "decision": "skipped"})

        payload_hex = None
        if settings.watermark:
            from .watermark import payload_for

            payload = payload_for(checkpoint_sha256, secrets.randbits(24))
            payload_hex = payload.as_hex()  # "mmmm-gggggg", as `cinecube verify` prints it
            stage = {"stage": "watermark", "decision": "embedded", "payload": payload_hex}
            stages.append(stage)
            frames = write_watermarked(frames, payload, tmp, fps, stage)
        else:
            stages.append({"stage": "watermark", "decision": "skipped"})
            write_video(tmp, frames, fps=fps)
        if settings.c2pa:
            from .provenance import generation_claims, sign_media

            claims = generation_claims(
                model=model_name,
                checkpoint_sha256=checkpoint_sha256,
                prompt=prompt,
                seed=seed,
                height=int(frames.shape[1]),
                width=int(frames.shape[2]),
                frames=int(frames.shape[0]),
                fps=fps,
                request_id=request_id,
                skipped_stages=settings.skipped,
                **generation,
            )
            # The soft binding holds the same payload as whole bytes of hex ("mmmmgggggg").
            soft_binding = payload_hex.replace("-", "") if payload_hex else None
            from .provenance import Ingredient

            ingredients = [Ingredient(path, relationship) for path, relationship in inputs]
            sign_media(
                tmp, claims, soft_binding, _signing_identity(settings), title=target.name, ingredients=ingredients
            )
            stages.append({"stage": "c2pa", "decision": "signed"})
        else:
            stages.append({"stage": "c2pa", "decision": "skipped"})

        from .audit import sha256_file

        digest = sha256_file(tmp)
        # The record first, then the rename: an output never exists without its record.
        _audit(
            settings,
            {
                **record,
                "stages": stages,
                "outcome": "published",
                "output_path": str(Path(published_as or target).resolve()),
                "output_sha256": digest,
            },
        )
        published = True
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failed = getattr(exc, "stage", None) or ("publish" if published else stages[-1]["stage"])
        # When the log itself failed it cannot record this either; the caller gets the first error.
        with contextlib.suppress(CinecubeError):
            _audit(
                settings,
                {
                    **record,
                    "stages": stages,
                    "outcome": "blocked" if isinstance(exc, SafetyBlockedError) else "error",
                    "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                    "failed_stage": failed,
                    "output_path": None,
                    "output_sha256": None,
                },
            )
        raise
    return PublishResult(target, digest, payload_hex, stages, settings.skipped, request_id)
