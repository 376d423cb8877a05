"""The worker processes of a server: started, watched, replaced.

A thread of the server process starts each worker (`python -m cinecube.server.worker`) and
checks them twice a second. A worker that ended on its own (a crash, the kernel's OOM killer,
someone's `kill`) fails the job it held with the reason, and a new worker takes its place
(after a pause that grows while workers keep dying young); a worker that could not load the
model is not restarted, and /healthz says why. A running job whose cancellation was asked but
not honoured within a grace period (a step that takes very long) has its worker stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..safety.guard import SafetySettings
from .store import Store

CHECK_SECONDS = 0.5
CANCEL_GRACE_S = 15.0
YOUNG_S = 60.0  # a worker that dies younger than this makes the next start wait longer
MAX_BACKOFF_S = 60.0


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass
class _Slot:
    name: str
    process: subprocess.Popen | None = None
    started: float = 0.0
    next_start: float = 0.0
    young_deaths: int = 0
    failed: str | None = None  # why it is not restarted
    history: list[str] = field(default_factory=list)


class WorkerPool:
    def __init__(
        self,
        store: Store,
        count: int,
        *,
        model: str | None,
        safety: SafetySettings,
        device: str = "cpu",
        threads: int = 0,
        log: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.model = model
        self.safety = safety
        self.device = device
        self.threads = threads
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.slots = [_Slot(f"w{i + 1}") for i in range(count)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # The thread that starts the workers must live as long as they do: the kernel's
    # parent-death signal follows the thread that started a process, not the process.
    def start(self) -> None:
        if self._thread is None and self.slots:
            self._thread = threading.Thread(target=self._run, name="cinecube-workers", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker (a job running is interrupted: the next start retries it)."""
        self._stopping = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            self._thread = None

    def status(self) -> list[dict]:
        out = []
        for slot in self.slots:
            process = slot.process
            out.append(
                {
                    "slot": slot.name,
                    "pid": process.pid if process is not None and process.poll() is None else None,
                    "running": process is not None and process.poll() is None,
                    "failed": slot.failed,
                }
            )
        return out

    @property
    def failed(self) -> list[str]:
        return [f"{s.name}: {s.failed}" for s in self.slots if s.failed]

    # ------------------------------------------------------------------------------------

    def _command(self, slot: _Slot) -> list[str]:
        command = [sys.executable, "-m", "cinecube.server.worker", "--data-dir", str(self.store.root)]
        command += ["--slot", slot.name, "--parent", str(os.getpid()), "--device", self.device]
        command += ["--safety", json.dumps(dataclasses.asdict(self.safety))]
        if self.model is not None:
            command += ["--model", str(self.model)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        return command

    def _spawn(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(self._command(slot), start_new_session=True)  # Ctrl-C reaches the server only
        slot.started = time.monotonic()
        self.store.set_worker(slot.name, slot.process.pid, "starting")

    def _run(self) -> None:
        try:
            for slot in self.slots:
                self._spawn(slot)
            while not self._stop.wait(CHECK_SECONDS):
                self._check()
        finally:
            self._terminate_all()

    def _check(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.poll() is not None:
                self._ended(slot, process)
            if slot.process is None and slot.failed is None and now >= slot.next_start and not self._stopping:
                self._spawn(slot)
        stuck = set(self.store.stuck_cancellations(CANCEL_GRACE_S))
        for slot in self.slots:
            process = slot.process
            if process is not None and process.poll() is None and f"{slot.name}:{process.pid}" in stuck:
                self.log(f"worker {slot.name} did not stop a cancelled job within {CANCEL_GRACE_S:g} s; stopping it")
                process.kill()

    def _ended(self, slot: _Slot, process: subprocess.Popen) -> None:
        code = process.returncode
        slot.process = None
        tag = f"{slot.name}:{process.pid}"
        record = next((w for w in self.store.workers() if w["slot"] == slot.name), None)
        if record is not None and record["state"] == "failed" and record["pid"] == process.pid:
            slot.failed = record["detail"] or describe_exit(code)
            self.log(f"worker {slot.name}: {slot.failed}; it is not restarted")
            return
        reason = (
            f"the worker process running this job stopped ({describe_exit(code)}); "
            "the job was not retried, and the queue went on"
        )
        ended = self.store.worker_gone(tag, reason)
        young = time.monotonic() - slot.started < YOUNG_S
        slot.young_deaths = slot.young_deaths + 1 if young else 0
        wait = min(MAX_BACKOFF_S, 2.0 ** (slot.young_deaths - 1)) if young else 0.0
        slot.next_start = time.monotonic() + wait
        jobs = f" while running job {', '.join(ended)}" if ended else ""
        self.log(f"worker {slot.name} ({describe_exit(code)}){jobs}; starting another in {wait:g} s")
        self.store.set_worker(slot.name, None, "stopped", detail=describe_exit(code))

    def _terminate_all(self) -> None:
        live = [s.process for s in self.slots if s.process is not None and s.process.poll() is None]
        for process in live:
            process.terminate()
        deadline = time.monotonic() + 5.0
        for process in live:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for slot in self.slots:
            slot.process = None
            self.store.set_worker(slot.name, None, "stopped")
