"""Never lose a job: a server killed with SIGKILL and started again, and the rules behind it.

The end-to-end test runs `cinecube serve` as a user would; the others check the rules of
`Store.recover` and the claim tokens directly, without processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cinecube.cli import main
from cinecube.server.store import Store


def alive(pid: int) -> bool:
    """Running (a zombie left for a container's init to reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class Serve:
    """`cinecube serve` in a subprocess on a free port; its output collected."""

    def __init__(self, data: Path, model: Path):
        command = [sys.executable, "-m", "cinecube.cli", "serve", "--port", "0", "--data-dir", str(data)]
        command += ["--model", str(model), "--threads", "1"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while not any(line.startswith("cinecube serve: http://") for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.05)
        self.url = next(line for line in self.lines if line.startswith("cinecube serve: ")).split()[2]

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)


def wait_for(predicate, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_server_killed_while_a_job_runs_loses_no_job_and_finishes_none_twice(tiny_run, tmp_path, capsys):
    from cinecube.commands.verify import verify_file
    from cinecube.safety.audit import AuditLog

    data = tmp_path / "data"
    assert main(["keys", "create", "restart", "--data-dir", str(data)]) == 0
    key = capsys.readouterr().out.strip()
    headers = {"Authorization": f"Bearer {key}"}
    first = Serve(data, tiny_run)
    try:
        client = httpx.Client(base_url=first.url, headers=headers, timeout=60)
        body = {"prompt": "a red circle moving right", "frames": 4, "height": 32, "width": 32}
        ids = [client.post("/v1/jobs", json={**body, "steps": steps}).json()["id"] for steps in (40, 2, 2)]
        store = Store(data, create=False)

        def running_with_progress():
            job = store.get_job(None, ids[0])
            assert job["status"] in ("queued", "running"), job
            return job["status"] == "running" and job["progress_done"] >= 1

        wait_for(running_with_progress, "the first job to run")
        (worker,) = [w for w in store.workers() if w["state"] == "busy"]
        os.kill(worker["pid"], signal.SIGSTOP)  # held mid-job: the kill lands while it runs
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
        wait_for(lambda: not alive(worker["pid"]), "the worker to die with its server", timeout=30)
    finally:
        if first.process.poll() is None:
            first.process.kill()

    # What the killed server left: one job running, two queued.
    left = [store.get_job(None, i) for i in ids]
    assert [j["status"] for j in left] == ["running", "queued", "queued"]
    assert not list((data / "jobs" / ids[0]).glob("result*"))

    second = Serve(data, tiny_run)
    try:
        client = httpx.Client(base_url=second.url, headers=headers, timeout=60)
        assert "1 running job(s) queued again" in second.output()

        def all_finished():
            jobs = [client.get(f"/v1/jobs/{i}").json() for i in ids]
            return jobs if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) else None

        jobs = wait_for(all_finished, "the three jobs to end")
        second.process.send_signal(signal.SIGTERM)  # a clean stop
        assert second.process.wait(60) == 0, second.output()
        assert "stopped" in second.output()
    finally:
        if second.process.poll() is None:
            second.process.kill()

    assert [j["status"] for j in jobs] == ["succeeded"] * 3, [j["error"] for j in jobs]
    retried, *others = jobs
    assert retried["attempts"] == 2 and [o["attempts"] for o in others] == [1, 1]
    (event,) = retried["history"]
    assert event["event"] == "retried" and "server stopped while attempt 1 ran" in event["detail"]
    started = [j["started_at"] for j in jobs]
    assert started == sorted(started), "the retried job keeps its place; the queue runs in order"
    audit = list(AuditLog().read())
    for job in jobs:
        folder = data / "jobs" / job["id"]
        assert [p.name for p in folder.iterdir() if p.name.startswith("result")] == ["result.mp4"]
        published = [r for r in audit if r.get("outcome") == "published" and Path(r["output_path"]).parent == folder]
        assert len(published) == 1, f"job {job['id']} was published {len(published)} times"
        assert published[0]["request_id"] == job["provenance"]["audit_request_id"]
        report = verify_file(folder / "result.mp4")
        assert report["verified"] and report["watermark"]["payload"] == job["provenance"]["watermark_payload"]
    rows = [dict(r) for r in store.read().execute("SELECT id FROM jobs")]
    assert sorted(r["id"] for r in rows) == sorted(ids), "no job lost, none made twice"


# ---------------------------------------------------------------------------------------------
# The rules, without processes
# ---------------------------------------------------------------------------------------------


def _job(store: Store, prompt: str = "a red circle") -> str:
    job = store.create_job("key:test", mode="generate", prompt=prompt, params={"steps": 2}, uploads=[], max_queued=100)
    return job["id"]


def test_a_job_interrupted_twice_fails_with_a_reason_and_queued_ones_keep_their_order(tmp_path):
    store = Store(tmp_path)
    a, b, c = _job(store, "a"), _job(store, "b"), _job(store, "c")
    assert store.claim_next("w1:1")["id"] == a
    assert store.recover() == {"retried": [a], "failed": [], "cancelled": []}
    assert [store.claim_next("w1:2")["id"] for _ in range(2)] == [a, b], "the retried job first, then in order"
    done = store.recover()
    assert done == {"retried": [b], "failed": [a], "cancelled": []}
    failed = store.get_job(None, a)
    assert failed["status"] == "failed" and failed["error_stage"] == "restart"
    assert "on each of its 2 attempts" in failed["error"]
    assert [h["event"] for h in failed["history"]] == ["retried", "failed"]
    assert [store.claim_next("w1:3")["id"] for _ in range(2)] == [b, c]
    assert store.claim_next("w1:3") is None


def test_a_worker_that_lost_its_claim_can_neither_report_nor_finish(tmp_path):
    store = Store(tmp_path)
    job_id = _job(store)
    stale = store.claim_next("w1:1")
    store.recover()  # a restart queued it again
    fresh = store.claim_next("w1:2")
    assert stale["claim"] != fresh["claim"]
    assert store.report(job_id, stale["claim"], stage="sampling", done=1, total=2) == "lost"
    assert store.finish(job_id, stale["claim"], "succeeded", result={"file": "x"}) is None
    assert store.report(job_id, fresh["claim"], stage="sampling", done=1, total=2) == "ok"
    assert store.finish(job_id, fresh["claim"], "succeeded", result={"file": "y"}) == "succeeded"
    assert store.finish(job_id, fresh["claim"], "succeeded", result={"file": "z"}) is None, "never finished twice"
    assert store.get_job(None, job_id)["result"] == {"file": "y"}


def test_cancelling_a_running_job_is_honoured_by_its_worker_and_by_a_restart(tmp_path):
    store = Store(tmp_path)
    first, second = _job(store, "a"), _job(store, "b")
    claim = store.claim_next("w1:1")["claim"]
    assert store.cancel_job("key:test", first)["cancel_requested_at"] is not None
    assert store.report(first, claim, stage="sampling", done=1, total=2) == "cancel"
    assert store.finish(first, claim, "succeeded", result={"file": "x"}) == "cancelled"
    assert store.get_job(None, first)["result"] is None
    store.claim_next("w1:1")
    store.cancel_job("key:test", second)
    assert store.recover()["cancelled"] == [second]


def test_a_job_of_a_worker_that_died_fails_and_deleted_jobs_leave_no_files(tmp_path):
    store = Store(tmp_path)
    job_id = _job(store)
    store.claim_next("w1:7")
    assert store.worker_gone("w1:8", "another worker") == []
    assert store.worker_gone("w1:7", "it died") == [job_id]
    job = store.get_job(None, job_id)
    assert (job["status"], job["error"], job["error_stage"]) == ("failed", "it died", "worker")
    orphan = tmp_path / "jobs" / ("a" * 32)
    orphan.mkdir()
    (orphan / "result.mp4").write_bytes(b"x")
    store.recover()
    assert not orphan.exists() and (tmp_path / "jobs" / job_id).is_dir()
    assert store.delete_job("key:test", job_id) is None
    assert not (tmp_path / "jobs" / job_id).exists()


def test_a_data_folder_of_a_newer_schema_or_a_file_is_refused(tmp_path):
    from cinecube.server.store import StoreError

    store = Store(tmp_path / "d")
    with store.write() as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(StoreError, match="newer cinecube"):
        Store(tmp_path / "d")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store(tmp_path / "f")
    assert json.loads(json.dumps(store.counts())) == {
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
