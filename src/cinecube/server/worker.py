"""A worker process: `python -m cinecube.server.worker --data-dir D --slot w1 --parent PID ...`.

It loads the model once, then claims the oldest queued job, runs it through the pipeline (the
same helpers as the command line), publishes the result through the output gate with its
inputs as manifest ingredients, and records the result, the watermark payload and the audit
request id in the job's row. A worker that dies takes no server with it: the server notices
and fails its job with the reason (cinecube/server/pool.py).

The worker dies with the server that started it (the kernel's parent-death signal), so a
server killed with SIGKILL leaves no worker running on; and each of its writes names its
claim, so even one that lived on could never finish a job the restarted server queued again.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command line (cinecube/cli.py)

POLL_SECONDS = 0.2
PROGRESS_EVERY_S = 0.1  # at most this often a progress write (the last step is always written)


class Stop(Exception):
    """The job must stop: cancelled by its owner, or no longer this worker's."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why  # "cancel" | "lost"


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the server process ends (Linux), then check it is still there."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it ended before the signal was asked for
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cinecube.server.worker")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--slot", required=True)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--safety", default="{}", help="SafetySettings as JSON")
    args = p.parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the server stopping: go now

    from ..errors import CinecubeError
    from ..safety.guard import SafetySettings
    from .store import Store

    store = Store(args.data_dir, create=False)
    me = f"{args.slot}:{os.getpid()}"
    store.set_worker(args.slot, os.getpid(), "loading")
    try:
        import torch

        from ..pipeline import Pipeline

        if args.threads:
            torch.set_num_threads(args.threads)
        safety = SafetySettings(**json.loads(args.safety))
        pipe = Pipeline.from_pretrained(args.model, device=args.device, safety=safety)
    except CinecubeError as error:
        store.set_worker(args.slot, os.getpid(), "failed", detail=f"the model could not be loaded: {error}")
        return 3
    store.set_worker(args.slot, os.getpid(), "idle")
    while True:
        if os.getppid() != args.parent:
            return 0
        job = store.claim_next(me)
        if job is None:
            time.sleep(POLL_SECONDS)
            continue
        store.set_worker(args.slot, os.getpid(), "busy", job=job["id"])
        run_job(store, pipe, job)
        store.set_worker(args.slot, os.getpid(), "idle")


def run_job(store, pipe, job: dict[str, Any]) -> str | None:
    """Run one claimed job to its end; returns the status recorded (None: the claim was lost)."""
    from ..errors import CinecubeError
    from ..safety.guard import SafetyBlockedError

    job_id, claim = job["id"], job["claim"]
    last_write = [0.0]
    # A loop without an image samples twice (its first frame, then the rest): progress counts both.
    expected = 2 if job["mode"] == "generate" and job["params"].get("loop") and not job["inputs"] else 1
    passes = [0, -1]  # sampling passes seen, last step count

    def report(stage: str, done: int | None = None, total: int | None = None) -> None:
        answer = store.report(job_id, claim, stage=stage, done=done, total=total)
        if answer != "ok":
            raise Stop(answer)

    def on_step(done: int, total: int) -> None:
        if done <= passes[1]:  # a second sampling pass (a loop without an image: its first frame, then the rest)
            passes[0] += 1
        passes[1] = done
        t = time.monotonic()
        if done < total and t - last_write[0] < PROGRESS_EVERY_S:  # the last step of a pass is always written
            return
        last_write[0] = t
        n = max(expected, passes[0] + 1)
        stage = "sampling" if n == 1 else f"sampling (pass {passes[0] + 1} of {n})"
        report(stage, passes[0] * total + done, n * total)

    result_path: Path | None = None
    try:
        report("reading inputs" if job["inputs"] else "preparing")
        video = make(pipe, store, job, on_step)
        report("publishing")  # frame review, watermark, write, C2PA, audit log
        video.fps = float(job["params"]["fps"])
        folder = store.job_dir(job_id)
        result_path = folder / f"result.{job['params']['format']}"
        inputs = [(store.path(i["file"]), i["relationship"]) for i in job["inputs"]]
        video.save(result_path, inputs=inputs)
        published = video.published
        t, h, w = video.frames.shape[:3]
        result = {
            "file": f"jobs/{job_id}/{result_path.name}",
            "bytes": result_path.stat().st_size,
            "sha256": published.output_sha256,
            "frames": int(t),
            "height": int(h),
            "width": int(w),
            "fps": video.fps,
        }
        provenance = {"stages": published.stages, "skipped": published.skipped, "mode": video.info.get("mode")}
        status = store.finish(
            job_id,
            claim,
            "succeeded",
            result=result,
            watermark_payload=published.watermark_payload,
            audit_request_id=request_id_of(published, pipe.safety),
            provenance=provenance,
        )
        if status != "succeeded":  # cancelled meanwhile, or no longer ours: the file goes
            result_path.unlink(missing_ok=True)
        return status
    except Stop as stop:
        if result_path is not None:
            result_path.unlink(missing_ok=True)
        if stop.why == "cancel":
            return store.finish(job_id, claim, "cancelled", event="cancelled while running")
        return None
    except SafetyBlockedError as error:
        return store.finish(job_id, claim, "failed", error=str(error), error_stage=error.stage)
    except CinecubeError as error:
        return store.finish(job_id, claim, "failed", error=str(error), error_stage="request")
    except Exception as error:  # a defect: the job fails with it, the worker goes on
        traceback.print_exc()
        message = f"internal error: {type(error).__name__}: {str(error)[:300]}"
        return store.finish(job_id, claim, "failed", error=message, error_stage="internal")


def make(pipe, store, job: dict[str, Any], on_step):
    """The video a job asks for, made by the pipeline helper the command line uses."""
    from ..video_io import read_video

    params, mode = job["params"], job["mode"]
    options = {
        "steps": params["steps"],
        "guidance": params["guidance"],
        "seed": params["seed"],
        "sampler": params["sampler"],
        "progress": False,
        "on_step": on_step,
    }
    inputs = [read_video(store.path(i["file"]))[0] for i in job["inputs"]]
    prompt = job["prompt"]
    if mode == "generate":
        height, width, frames = params["height"], params["width"], params["frames"]
        if inputs:
            fitted = pipe.fit_image(inputs[0][:1], height, width)
            if params["loop"]:
                return pipe.loop(prompt, frames, image=fitted, **options)
            return pipe.animate(prompt, fitted[0], frames, **options)
        if params["loop"]:
            return pipe.loop(prompt, frames, height=height, width=width, **options)
        return pipe(prompt, frames, height, width, **options)
    if mode == "extend":
        return pipe.extend(prompt, inputs[0], params["frames"], params["direction"], **options)
    if mode == "connect":
        return pipe.connect(prompt, inputs[0], inputs[1], params["frames"], **options)
    if mode == "edit":
        return pipe.edit(prompt, inputs[0], params["strength"], **options)
    raise ValueError(f"unknown mode {mode!r}")


def request_id_of(published, safety) -> str | None:
    """The request id the gate gave the output: its audit record's, and its manifest's."""
    return published.request_id


if __name__ == "__main__":
    sys.exit(main())
