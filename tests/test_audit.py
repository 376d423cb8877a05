"""Audit log: one whole JSON line per request, safe with concurrent writers."""

import datetime
import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from cinecube.errors import CinecubeError
from cinecube.safety.audit import AUDIT_FILE, AuditLog, AuditLogError, new_request_id, sha256_file

PROMPT_HASH = hashlib.sha256(b"a red cube").hexdigest()


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("CINECUBE_CONFIG_DIR", str(folder))
    return folder


def _record(**overrides):
    record = {
        "request_id": new_request_id(),
        "prompt_sha256": PROMPT_HASH,
        "stages": [{"stage": "prompt_policy", "decision": "allow"}, {"stage": "c2pa", "decision": "signed"}],
        "output_path": "/videos/out.mp4",
        "output_sha256": "cd" * 32,
    }
    record.update(overrides)
    return record


def test_append_and_read_back(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    published = log.append(_record())
    blocked = log.append(_record(stages={"prompt_policy": "deny"}, output_path=None, output_sha256=None))

    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert [json.loads(line) for line in lines] == [published, blocked] == list(log.read())
    assert list(published)[0] == "time"
    when = datetime.datetime.fromisoformat(published["time"].replace("Z", "+00:00"))
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 600
    assert blocked["output_path"] is None and blocked["output_sha256"] is None
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o600


def test_default_location_is_the_config_dir(config_dir):
    log = AuditLog()
    assert log.path == config_dir.resolve() / AUDIT_FILE
    assert list(log.read()) == []  # no file yet: no records
    log.append(_record())
    assert len(list(log.read())) == 1
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prompt": "a red cube"}, "prompt itself"),
        ({"prompt_sha256": "a red cube"}, "prompt_sha256"),
        ({"output_sha256": None}, "both output_path and output_sha256"),
        ({"stages": "allow"}, "stages"),
        ({"stages": [{"decision": "allow"}]}, "stages"),
        ({"request_id": ""}, "request_id"),
        ({"extra": float("nan")}, "JSON"),
    ],
)
def test_malformed_records_are_refused(tmp_path, change, message):
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(AuditLogError, match=message):
        log.append(_record(**change))
    with pytest.raises(CinecubeError, match="lacks output_sha256"):
        log.append({k: v for k, v in _record().items() if k != "output_sha256"})
    assert not (tmp_path / "audit.jsonl").exists()


def test_corrupt_line_is_reported(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append(_record())
    with open(path, "a") as f:
        f.write('{"request_id": "torn\n')
    with pytest.raises(AuditLogError, match="line 2"):
        list(log.read())


def test_sha256_file(tmp_path):
    path = tmp_path / "blob.bin"
    data = os.urandom(3_000_000)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(AuditLogError, match="missing.bin"):
        sha256_file(tmp_path / "missing.bin")


WRITER = textwrap.dedent("""
    import sys
    from cinecube.safety.audit import AuditLog

    path, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = AuditLog(path)
    padding = writer * 6000  # lines longer than a pipe buffer, so torn writes would show
    for i in range(count):
        log.append({"request_id": f"{writer}-{i}", "prompt_sha256": "ab" * 32,
                    "stages": {"test": padding}, "output_path": None, "output_sha256": None})
""")


def test_concurrent_writers_lose_and_interleave_nothing(tmp_path):
    path = tmp_path / "audit.jsonl"
    writers, count = "abcd", 40
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), w, str(count)], stderr=subprocess.PIPE)
        for w in writers
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()

    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == len(writers) * count
    seen = set()
    for line in lines:
        record = json.loads(line)
        writer = record["request_id"].split("-")[0]
        assert record["stages"]["test"] == writer * 6000  # no bytes from another writer inside
        seen.add(record["request_id"])
    assert seen == {f"{w}-{i}" for w in writers for i in range(count)}
    # Each writer's own records stay in the order it wrote them.
    for w in writers:
        mine = [r["request_id"] for r in AuditLog(path).read() if r["request_id"].startswith(f"{w}-")]
        assert mine == [f"{w}-{i}" for i in range(count)]


def test_short_write_leaves_no_half_line(tmp_path, monkeypatch):
    from cinecube.safety import audit

    log = AuditLog(tmp_path / "audit.jsonl")
    first = log.append(_record())
    real_write = os.write

    def disk_full(fd, data):
        return real_write(fd, data[: len(data) // 2])  # the disk filled up midway

    monkeypatch.setattr(audit.os, "write", disk_full)
    with pytest.raises(AuditLogError, match="bytes written"):
        log.append(_record())
    monkeypatch.undo()
    assert list(log.read()) == [first]
