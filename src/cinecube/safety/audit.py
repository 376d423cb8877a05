"""Append-only audit log: one JSON line per generation request, allowed or blocked.

Each line records when (ISO-8601 UTC), which request, the SHA-256 of the prompt (never the
prompt itself), what every safety and provenance stage decided, and the output file with its
SHA-256 (both null when the request was blocked)::

    {"time": "2026-11-25T04:10:00.123456Z", "request_id": "3f2a...", "prompt_sha256": "9c1e...",
     "stages": [{"stage": "prompt_policy", "decision": "allow"}, ...,
                {"stage": "c2pa", "decision": "signed"}],
     "output_path": "/home/me/out.mp4", "output_sha256": "b5d4..."}

Several processes (a server's workers, parallel CLI runs) may append to the same file: each
line is written by a single ``write`` on an ``O_APPEND`` descriptor while holding an
exclusive ``flock``, then fsynced, so lines are never interleaved, torn or lost.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cinecube.errors import CinecubeError
from cinecube.safety.provenance import ensure_config_dir

AUDIT_FILE = "audit.jsonl"
REQUIRED_FIELDS = ("request_id", "prompt_sha256", "stages", "output_path", "output_sha256")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class AuditLogError(CinecubeError):
    """An audit record that is malformed, or a log that cannot be written or read."""


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise AuditLogError(f"cannot hash '{os.fspath(path)}': {exc.strerror or exc}") from exc


def new_request_id() -> str:
    """A random request id (32 hex digits)."""
    return uuid.uuid4().hex


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with microseconds, e.g. 2026-11-25T04:10:00.123456Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_record(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise AuditLogError(f"audit record must be a dict, got {type(record).__name__}")
    if "prompt" in record:
        raise AuditLogError("audit record must not contain the prompt itself; record prompt_sha256 instead")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise AuditLogError(f"audit record lacks {', '.join(missing)} (required: {', '.join(REQUIRED_FIELDS)})")
    if not (isinstance(record["request_id"], str) and record["request_id"]):
        raise AuditLogError("audit record's request_id must be a non-empty string")
    if not (isinstance(record["prompt_sha256"], str) and _SHA256_RE.match(record["prompt_sha256"])):
        raise AuditLogError("audit record's prompt_sha256 must be 64 lowercase hex digits")
    stages = record["stages"]
    # Either {"stage name": decision, ...} or [{"stage": name, "decision": ..., ...}, ...] in order.
    if not (
        isinstance(stages, dict)
        or (isinstance(stages, list) and all(isinstance(s, dict) and "stage" in s and "decision" in s for s in stages))
    ):
        raise AuditLogError(
            "audit record's stages must map each stage to its decision: "
            "{name: decision} or [{'stage': name, 'decision': ...}, ...]"
        )
    out_path, out_hash = record["output_path"], record["output_sha256"]
    if (out_path is None) != (out_hash is None):
        raise AuditLogError("audit record needs both output_path and output_sha256, or neither (blocked)")
    if out_hash is not None and not (isinstance(out_hash, str) and _SHA256_RE.match(out_hash)):
        raise AuditLogError("audit record's output_sha256 must be 64 lowercase hex digits or null")
    if out_path is not None:
        record = {**record, "output_path": os.fspath(out_path)}
    # The time comes first in the line, for people reading the file with grep and less.
    rest = {k: v for k, v in record.items() if k != "time"}
    return {"time": record.get("time") or utc_now_iso(), **rest}


class AuditLog:
    """An append-only JSON-lines file; the default is ``<config dir>/audit.jsonl``."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            path = ensure_config_dir() / AUDIT_FILE
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def check_writable(self) -> None:
        """Raise AuditLogError (one line) now if records cannot be appended, so a request fails
        before any work instead of after its output is made. Creates no file."""
        if self.path.is_dir():
            raise AuditLogError(f"audit log '{self.path}' is a folder; give a file")
        if self.path.exists():
            if not os.access(self.path, os.W_OK):
                raise AuditLogError(f"cannot append to audit log '{self.path}': it is not writable")
            return
        folder = self.path.parent
        if not folder.is_dir():
            raise AuditLogError(f"cannot open audit log '{self.path}': folder '{folder}' does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise AuditLogError(f"cannot open audit log '{self.path}': folder '{folder}' is not writable")

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Validate and append one record as one line; returns the record as written.

        ``time`` is added (now, UTC) unless the record has one. Safe with concurrent writers
        in other processes: exclusive lock, one whole-line write, fsync, unlock.
        """
        record = _check_record(record)
        try:
            line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(", ", ": "))
        except (TypeError, ValueError) as exc:
            raise AuditLogError(f"audit record must be plain JSON values: {exc}") from exc
        data = (line + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditLogError(f"cannot open audit log '{self.path}': {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                end = os.fstat(fd).st_size  # under the lock: nobody else appends meanwhile
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(f"only {written} of {len(data)} bytes written")
                except OSError:
                    with contextlib.suppress(OSError):  # disk full midway: no half line left
                        os.ftruncate(fd, end)
                    raise
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            problem = getattr(exc, "strerror", None) or exc
            raise AuditLogError(f"cannot append to audit log '{self.path}': {problem}") from exc
        finally:
            os.close(fd)
        return record

    def read(self) -> Iterator[dict[str, Any]]:
        """The records in order. A missing log has none; a line that is not JSON is an error."""
        try:
            with open(self.path, "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # no half-written line from a writer
                try:
                    data = f.read()
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditLogError(f"cannot read audit log '{self.path}': {exc.strerror or exc}") from exc
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise AuditLogError(f"audit log '{self.path}' line {number} is not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise AuditLogError(f"audit log '{self.path}' line {number} is not a JSON object")
            yield record
