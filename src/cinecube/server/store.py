"""The data folder of a server: one SQLite database (WAL mode) and the files it points to.

    DATA/cinecube.db        jobs, API keys, uploads, workers
    DATA/server.lock        held by the one server using the folder
    DATA/uploads/ID.EXT     uploaded images and videos
    DATA/jobs/ID/           a job's inputs (linked from its uploads) and its result
    DATA/tmp/               files being received (verify), removed when done

Every path is made here from an id the server generated, never from what a client sent, so
no request reaches outside the folder.

A job goes queued -> running -> succeeded | failed | cancelled (or queued -> cancelled).
Workers claim queued jobs in the order they were created; each claim gets a fresh token, and
a worker's every later write names it (`WHERE claim = ?`), so a worker that lost its job (the
server restarted and queued it again, or it was cancelled) can never finish it: no job is
finished twice. The rules of a restart are in `Store.recover`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CinecubeError

SCHEMA_VERSION = 1
DB_FILE = "cinecube.db"
LOCK_FILE = "server.lock"

# Who owns what is made while no API key exists (a single-user server on loopback).
LOCAL_OWNER = "local"
DEFAULT_MAX_QUEUED = 20  # queued + running jobs of one key
DEFAULT_PER_MINUTE = 600  # requests of one key per minute
TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")

_ID = re.compile(r"^[0-9a-f]{32}$")
_KEY = re.compile(r"^cc_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,               -- the public part of the key: cc_<id>_<secret>
    name TEXT NOT NULL UNIQUE,
    key_sha256 TEXT NOT NULL,          -- SHA-256 of the whole key; the key itself is never stored
    created_at REAL NOT NULL,
    revoked_at REAL,
    max_queued INTEGER NOT NULL,
    per_minute INTEGER NOT NULL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,                -- image | video
    media_type TEXT NOT NULL,
    suffix TEXT NOT NULL,
    name TEXT NOT NULL,                -- the client's file name, shown only, never a path
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    frames INTEGER NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    fps REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads (owner, created_at);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- the queue's order
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,                    -- JSON: the checked request
    inputs TEXT NOT NULL,                    -- JSON: [{file, relationship, upload_id, name}]
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    stage TEXT NOT NULL,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,     -- how many times a worker claimed it
    history TEXT NOT NULL DEFAULT '[]',      -- JSON: [{time, event, detail}] (retries, cancels)
    cancel_requested_at REAL,
    worker TEXT,                             -- "<slot>:<pid>" of the worker running it
    claim TEXT,                              -- the token of the current claim
    error TEXT,
    error_stage TEXT,
    result TEXT,                             -- JSON: file, bytes, sha256, frames, height, width, fps
    watermark_payload TEXT,
    audit_request_id TEXT,
    provenance TEXT                          -- JSON: the gate's stages and what was skipped
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS workers (
    slot TEXT PRIMARY KEY,
    pid INTEGER,
    state TEXT NOT NULL,                     -- starting | loading | idle | busy | failed | stopped
    job TEXT,
    detail TEXT,
    updated_at REAL NOT NULL
);
"""


class StoreError(CinecubeError):
    """A data folder that cannot be used (locked by another server, unreadable, newer schema)."""


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/cinecube/server, else ~/.local/share/cinecube/server."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cinecube" / "server"


def new_id() -> str:
    """A random 128-bit id (32 hex digits): job and upload ids cannot be guessed."""
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return bool(_ID.match(value))


def now() -> float:
    return time.time()


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRow:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    max_queued: int
    per_minute: int
    last_used_at: float | None

    @property
    def owner(self) -> str:
        return f"key:{self.id}"


LOCAL_KEY = KeyRow("local", LOCAL_OWNER, 0.0, None, DEFAULT_MAX_QUEUED, DEFAULT_PER_MINUTE, None)


class Store:
    """The database and files of one data folder. Safe to use from many threads (a connection
    per thread) and many processes (SQLite's locks; WAL lets readers run beside the writer)."""

    def __init__(self, data_dir: str | os.PathLike, *, create: bool = True):
        self.root = Path(data_dir).absolute()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"--data-dir '{data_dir}' is a file; give a folder")
        if not self.root.exists():
            if not create:
                raise StoreError(f"--data-dir '{data_dir}' does not exist (start `cinecube serve` there first)")
            try:
                self.root.mkdir(parents=True)
            except OSError as exc:
                raise StoreError(f"--data-dir '{data_dir}' cannot be created: {exc.strerror or exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"--data-dir '{data_dir}' is not writable")
        for sub in ("uploads", "jobs", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        self.db_path = self.root / DB_FILE
        self._local = threading.local()
        self._lock_fd: int | None = None
        self._connection().executescript(SCHEMA)  # each statement is idempotent
        with self.write() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"data folder '{self.root}' was written by a newer cinecube (schema {row[0]}); upgrade cinecube"
                )

    # ----------------------------------------------------------------------------- plumbing

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")  # a job acknowledged is a job on disk
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"'{self.db_path}' is not a usable database: {exc}") from exc
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def read(self) -> sqlite3.Connection:
        return self._connection()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: one writer at a time, readers go on)."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def path(self, relative: str) -> Path:
        """A file of the folder from its stored relative name, refused if it would leave the folder."""
        full = (self.root / relative).resolve()
        if self.root.resolve() not in full.parents:
            raise StoreError(f"'{relative}' is outside the data folder")
        return full

    def job_dir(self, job_id: str) -> Path:
        if not is_id(job_id):
            raise StoreError(f"'{job_id}' is not a job id")
        return self.root / "jobs" / job_id

    # ----------------------------------------------------------------------------- the server lock

    def acquire_server_lock(self) -> None:
        """Hold the folder for this process: a second server on the same folder is refused.
        The kernel releases the lock when the process ends, however it ends."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"data folder '{self.root}' is in use by another cinecube serve (pid {holder}); "
                "stop it or give another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release_server_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----------------------------------------------------------------------------- keys

    def create_key(self, name: str, *, max_queued: int, per_minute: int) -> str:
        """A new key; returns it (shown once: only its SHA-256 is stored)."""
        if not _NAME.match(name):
            raise StoreError(
                f"key name {name!r} is not allowed; use 1-64 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        for what, value in (("--max-queued", max_queued), ("--per-minute", per_minute)):
            if not 1 <= value <= 1_000_000:
                raise StoreError(f"{what} {value} is not allowed; use 1..1000000")
        key_id = secrets.token_hex(6)
        key = f"cc_{key_id}_{secrets.token_urlsafe(32)}"
        with self.write() as db:
            if db.execute("SELECT 1 FROM keys WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a key named '{name}' exists already; revoke it or choose another name")
            db.execute(
                "INSERT INTO keys (id, name, key_sha256, created_at, max_queued, per_minute) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, key_sha256(key), now(), max_queued, per_minute),
            )
        return key

    def revoke_key(self, name: str) -> KeyRow:
        with self.write() as db:
            row = db.execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise StoreError(f"no key is named '{name}' (see `cinecube keys list`)")
            if row["revoked_at"] is None:
                db.execute("UPDATE keys SET revoked_at = ? WHERE id = ?", (now(), row["id"]))
        return self._key_row(self.read().execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone())

    def list_keys(self) -> list[tuple[KeyRow, dict[str, int]]]:
        """Every key (revoked ones too) with the number of its jobs by status."""
        db = self.read()
        out = []
        for row in db.execute("SELECT * FROM keys ORDER BY created_at"):
            key = self._key_row(row)
            counts = dict(
                db.execute("SELECT status, COUNT(*) FROM jobs WHERE owner = ? GROUP BY status", (key.owner,)).fetchall()
            )
            out.append((key, counts))
        return out

    def keys_configured(self) -> bool:
        """Whether any key was ever created (revoked ones count: revoking the last key must not
        open the server to everyone)."""
        return self.read().execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None

    def authenticate(self, presented: str) -> KeyRow | None:
        """The live key `presented` is, or None. The stored hash is compared in constant time."""
        match = _KEY.match(presented)
        row = self.read().execute("SELECT * FROM keys WHERE id = ?", (match["id"],)).fetchone() if match else None
        stored = row["key_sha256"] if row is not None else "0" * 64
        equal = hmac.compare_digest(key_sha256(presented), stored)
        if row is None or not equal or row["revoked_at"] is not None:
            return None
        return self._key_row(row)

    def touch_key(self, key: KeyRow) -> None:
        with self.write() as db:
            db.execute("UPDATE keys SET last_used_at = ? WHERE id = ?", (now(), key.id))

    @staticmethod
    def _key_row(row: sqlite3.Row) -> KeyRow:
        return KeyRow(
            row["id"],
            row["name"],
            row["created_at"],
            row["revoked_at"],
            row["max_queued"],
            row["per_minute"],
            row["last_used_at"],
        )

    # ----------------------------------------------------------------------------- uploads

    def add_upload(self, owner: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "owner": owner, "created_at": now()}
        columns = ", ".join(record)
        with self.write() as db:
            db.execute(
                f"INSERT INTO uploads ({columns}) VALUES ({', '.join('?' * len(record))})", tuple(record.values())
            )
        return record

    def upload_file(self, upload: dict[str, Any]) -> Path:
        return self.root / "uploads" / f"{upload['id']}{upload['suffix']}"

    def get_upload(self, owner: str, upload_id: str) -> dict[str, Any] | None:
        if not is_id(upload_id):
            return None
        row = self.read().execute("SELECT * FROM uploads WHERE id = ? AND owner = ?", (upload_id, owner)).fetchone()
        return dict(row) if row else None

    def list_uploads(self, owner: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.read().execute(
            "SELECT * FROM uploads WHERE owner = ? ORDER BY created_at DESC LIMIT ?", (owner, limit)
        )
        return [dict(r) for r in rows]

    def delete_upload(self, owner: str, upload_id: str) -> bool:
        upload = self.get_upload(owner, upload_id)
        if upload is None:
            return False
        with self.write() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        self.upload_file(upload).unlink(missing_ok=True)  # a job keeps its own link to it
        return True

    # ----------------------------------------------------------------------------- jobs (server side)

    def create_job(
        self,
        owner: str,
        *,
        mode: str,
        prompt: str,
        params: dict[str, Any],
        uploads: list[tuple[dict[str, Any], str]],
        max_queued: int,
    ) -> dict[str, Any] | None:
        """Queue a job; None when the owner has `max_queued` jobs queued or running already.

        The uploads it uses are hard-linked into its folder first, so the job keeps its inputs
        when an upload is deleted, and deleting the job removes only its own links."""
        job_id = new_id()
        folder = self.job_dir(job_id)
        folder.mkdir()
        inputs = []
        try:
            for index, (upload, relationship) in enumerate(uploads):
                name = f"input-{index}{upload['suffix']}"
                source = self.upload_file(upload)
                try:
                    os.link(source, folder / name)
                except OSError:
                    shutil.copyfile(source, folder / name)
                inputs.append(
                    {
                        "file": f"jobs/{job_id}/{name}",
                        "relationship": relationship,
                        "upload_id": upload["id"],
                        "name": upload["name"],
                    }
                )
            t = now()
            with self.write() as db:
                active = db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')", (owner,)
                ).fetchone()[0]
                if active >= max_queued:
                    shutil.rmtree(folder, ignore_errors=True)
                    return None
                db.execute(
                    "INSERT INTO jobs (id, owner, status, mode, prompt, params, inputs, created_at, updated_at, stage)"
                    " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, 'queued')",
                    (job_id, owner, mode, prompt, json.dumps(params), json.dumps(inputs), t, t),
                )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.get_job(owner, job_id)

    def active_jobs(self, owner: str) -> int:
        return (
            self.read()
            .execute("SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')", (owner,))
            .fetchone()[0]
        )

    def get_job(self, owner: str | None, job_id: str) -> dict[str, Any] | None:
        """A job of `owner` (None: anyone's), or None: another owner's job is as absent as a
        job that never existed."""
        if not is_id(job_id):
            return None
        if owner is None:
            row = self.read().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        else:
            row = self.read().execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        return _job(row) if row else None

    def queue_position(self, job: dict[str, Any]) -> int | None:
        """1 for the next job a worker takes; None unless queued."""
        if job["status"] != "queued":
            return None
        return (
            self.read()
            .execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND seq <= ?", (job["seq"],))
            .fetchone()[0]
        )

    def list_jobs(
        self, owner: str, *, limit: int, before: int | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The owner's jobs, newest first, `limit` at a time; returns them and the cursor of the next page."""
        query = "SELECT * FROM jobs WHERE owner = ?"
        args: list[Any] = [owner]
        if before is not None:
            query += " AND seq < ?"
            args.append(before)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        rows = self.read().execute(query + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        jobs = [_job(r) for r in rows[:limit]]
        return jobs, (jobs[-1]["seq"] if len(rows) > limit else None)

    def cancel_job(self, owner: str, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job now; ask the worker running a running one to stop. Returns the
        job as it is after (finished jobs are left as they are), or None when there is none."""
        t = now()
        with self.write() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
            if row is None:
                return None
            if row["status"] == "queued":
                db.execute(
                    "UPDATE jobs SET status = 'cancelled', stage = 'cancelled', finished_at = ?, updated_at = ?,"
                    " history = ? WHERE id = ?",
                    (t, t, _add_history(row, "cancelled", "cancelled while queued"), job_id),
                )
            elif row["status"] == "running" and row["cancel_requested_at"] is None:
                db.execute(
                    "UPDATE jobs SET cancel_requested_at = ?, stage = 'cancelling', updated_at = ? WHERE id = ?",
                    (t, t, job_id),
                )
        return self.get_job(owner, job_id)

    def delete_job(self, owner: str, job_id: str) -> str | None:
        """Delete a finished job and its files. Returns None when deleted, else the job's status
        (or 'missing')."""
        with self.write() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
            if row is None:
                return "missing"
            if row["status"] not in TERMINAL:
                return row["status"]
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return None

    def counts(self) -> dict[str, int]:
        rows = self.read().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: 0 for status in ("queued", "running", *TERMINAL)} | dict(rows)

    # ----------------------------------------------------------------------------- jobs (worker side)

    def claim_next(self, worker: str) -> dict[str, Any] | None:
        """The oldest queued job, now running on `worker` under a fresh claim token."""
        claim = secrets.token_hex(8)
        t = now()
        with self.write() as db:
            row = db.execute("SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', stage = 'starting', worker = ?, claim = ?, started_at = ?,"
                " updated_at = ?, attempts = attempts + 1, progress_done = 0, progress_total = 0 WHERE seq = ?",
                (worker, claim, t, t, row["seq"]),
            )
            job = db.execute("SELECT * FROM jobs WHERE seq = ?", (row["seq"],)).fetchone()
        return _job(job)

    def report(self, job_id: str, claim: str, *, stage: str, done: int | None = None, total: int | None = None) -> str:
        """Record a running job's progress. Returns 'ok', 'cancel' (stop: the owner cancelled it)
        or 'lost' (the claim is no longer this worker's: stop without writing anything)."""
        with self.write() as db:
            row = db.execute("SELECT claim, status, cancel_requested_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["claim"] != claim or row["status"] != "running":
                return "lost"
            if row["cancel_requested_at"] is not None:
                return "cancel"
            sets, args = ["stage = ?", "updated_at = ?"], [stage, now()]
            if done is not None:
                sets += ["progress_done = ?", "progress_total = ?"]
                args += [done, total]
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
        return "ok"

    def finish(
        self,
        job_id: str,
        claim: str,
        status: str,
        *,
        error: str | None = None,
        error_stage: str | None = None,
        result: dict[str, Any] | None = None,
        watermark_payload: str | None = None,
        audit_request_id: str | None = None,
        provenance: dict[str, Any] | None = None,
        event: str | None = None,
    ) -> str | None:
        """End a running job under `claim`. A job whose owner asked to cancel it ends cancelled
        whatever the worker says. Returns the status written, or None when the claim was lost
        (the caller then removes what it made)."""
        t = now()
        with self.write() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["claim"] != claim or row["status"] != "running":
                return None
            if row["cancel_requested_at"] is not None:
                status, result, error, error_stage = "cancelled", None, None, None
                event = "cancelled while running"
            history = _add_history(row, status, event) if event else row["history"]
            db.execute(
                "UPDATE jobs SET status = ?, stage = ?, finished_at = ?, updated_at = ?, error = ?, error_stage = ?,"
                " result = ?, watermark_payload = ?, audit_request_id = ?, provenance = ?, history = ?,"
                " progress_done = CASE WHEN ? = 'succeeded' THEN progress_total ELSE progress_done END"
                " WHERE id = ?",
                (
                    status,
                    status,
                    t,
                    t,
                    error,
                    error_stage,
                    json.dumps(result) if result else None,
                    watermark_payload if status == "succeeded" else None,
                    audit_request_id if status == "succeeded" else None,
                    json.dumps(provenance) if provenance and status == "succeeded" else None,
                    history,
                    status,
                    job_id,
                ),
            )
        return status

    # ----------------------------------------------------------------------------- workers and restarts

    def set_worker(self, slot: str, pid: int | None, state: str, *, job: str | None = None, detail: str = "") -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO workers (slot, pid, state, job, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (slot) DO UPDATE SET pid = excluded.pid, state = excluded.state, job = excluded.job,"
                " detail = excluded.detail, updated_at = excluded.updated_at",
                (slot, pid, state, job, detail, now()),
            )

    def workers(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.read().execute("SELECT * FROM workers ORDER BY slot")]

    def worker_gone(self, worker: str, reason: str) -> list[str]:
        """A worker process ended while it held jobs: they fail with `reason` (or end cancelled,
        if that was asked). Returns their ids."""
        t = now()
        ended = []
        with self.write() as db:
            for row in db.execute("SELECT * FROM jobs WHERE status = 'running' AND worker = ?", (worker,)).fetchall():
                if row["cancel_requested_at"] is not None:
                    status, error, stage, event = "cancelled", None, None, "cancelled: its worker was stopped"
                else:
                    status, error, stage, event = "failed", reason, "worker", None
                db.execute(
                    "UPDATE jobs SET status = ?, stage = ?, error = ?, error_stage = ?, finished_at = ?,"
                    " updated_at = ?, history = ? WHERE id = ?",
                    (
                        status,
                        status,
                        error,
                        stage,
                        t,
                        t,
                        _add_history(row, status, event) if event else row["history"],
                        row["id"],
                    ),
                )
                ended.append(row["id"])
        return ended

    def stuck_cancellations(self, grace_s: float) -> list[str]:
        """Workers of running jobs whose cancellation was asked more than `grace_s` ago."""
        rows = self.read().execute(
            "SELECT worker FROM jobs WHERE status = 'running' AND cancel_requested_at < ?", (now() - grace_s,)
        )
        return [r["worker"] for r in rows if r["worker"]]

    def recover(self) -> dict[str, list[str]]:
        """What a (re)starting server does with the jobs a stopped one left running, before
        any worker starts (it holds the folder's lock, so no worker of its own is running):

        - cancelled on request while running: cancelled;
        - interrupted on their first attempt: queued again, keeping their place (they are older
          than every job queued after them), the retry recorded in their history;
        - interrupted on their second attempt: failed, with the reason.

        Queued jobs stay queued, in order. Files of jobs that no longer exist are removed."""
        t = now()
        done: dict[str, list[str]] = {"retried": [], "failed": [], "cancelled": []}
        with self.write() as db:
            for row in db.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY seq").fetchall():
                if row["cancel_requested_at"] is not None:
                    status, sets, event = "cancelled", {"finished_at": t}, "cancelled: the server stopped while it ran"
                elif row["attempts"] < 2:
                    status, sets = "queued", {"started_at": None, "progress_done": 0, "progress_total": 0}
                    event = (
                        f"retried: the server stopped while attempt {row['attempts']} ran; queued again in its place"
                    )
                else:
                    status = "failed"
                    sets = {
                        "finished_at": t,
                        "error": f"the server stopped while this job ran, on each of its {row['attempts']} attempts;"
                        " it is not retried again",
                        "error_stage": "restart",
                    }
                    event = "failed: interrupted again by a server restart"
                sets |= {"status": status, "stage": status, "updated_at": t, "worker": None, "claim": None}
                sets["history"] = _add_history(row, "retried" if status == "queued" else status, event)
                assignments = ", ".join(f"{k} = ?" for k in sets)
                db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*sets.values(), row["id"]))
                done["retried" if status == "queued" else status].append(row["id"])
            db.execute("UPDATE workers SET state = 'stopped', job = NULL, pid = NULL")
        self._remove_orphan_files()
        return done

    def _remove_orphan_files(self) -> None:
        """Job folders without a job (a delete interrupted between the row and the files),
        temporaries, and upload files without an upload."""
        from ..outputs import clean_stale_temporaries

        db = self.read()
        jobs = {r[0] for r in db.execute("SELECT id FROM jobs")}
        for folder in (self.root / "jobs").iterdir():
            if folder.name not in jobs:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                clean_stale_temporaries(folder)
        uploads = {f"{r[0]}{r[1]}" for r in db.execute("SELECT id, suffix FROM uploads")}
        for file in (self.root / "uploads").iterdir():
            if file.name not in uploads:
                file.unlink(missing_ok=True)
        for entry in (self.root / "tmp").iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _add_history(row: sqlite3.Row, event: str, detail: str) -> str:
    history = json.loads(row["history"] or "[]")
    history.append({"time": iso(now()), "event": event, "detail": detail})
    return json.dumps(history)


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for name in ("params", "inputs", "history", "result", "provenance"):
        job[name] = json.loads(job[name]) if job[name] else None
    return job
