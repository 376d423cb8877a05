"""The HTTP server: every endpoint, each bad input, isolation between keys, workers that die,
fuzzing from the OpenAPI description, and the page in a real browser.

One server (a tiny model, one worker process, uvicorn on a free loopback port) serves most
tests here; a second, without workers, serves the fuzzing and the queue limit. No timing is
asserted anywhere: the tests wait for what they expect, with generous deadlines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from cinecube.cli import main
from cinecube.server.app import Server, create_app
from cinecube.server.store import Store
from cinecube.video_io import write_video

SMALL = {"frames": 4, "height": 32, "width": 32, "steps": 2}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


class Live:
    """A running server: its URL, its Server object and a client per key."""

    def __init__(self, url: str, server: Server, keys: dict[str, str]):
        self.url, self.server, self.keys = url, server, keys
        self.clients = {
            name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            for name, key in keys.items()
        }
        self.anonymous = httpx.Client(base_url=url, timeout=60)

    def __getitem__(self, name: str) -> httpx.Client:
        return self.clients[name]


def serve_in_thread(app):
    """uvicorn on 127.0.0.1 and a free port, in a thread; returns (url, stop)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as `cinecube serve` makes it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(60)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="module")
def live(tiny_run, tmp_path_factory):
    data = tmp_path_factory.mktemp("serve-data")
    server = Server(data, model=str(tiny_run), workers=1, threads=1, max_upload_mb=1)
    keys = {
        name: server.store.create_key(name, max_queued=50, per_minute=100_000) for name in ("alice", "bob", "carol")
    }
    keys["slow"] = server.store.create_key("slow", max_queued=5, per_minute=3)
    url, stop = serve_in_thread(create_app(server))
    live = Live(url, server, keys)
    try:
        yield live
    finally:
        stop()
        server.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A small real video (32x32, 5 frames) and a picture to upload."""
    from cinecube.data.shapes import ShapesWorld

    folder = tmp_path_factory.mktemp("inputs")
    video = ShapesWorld(seed=0).sample_at(0, 32, 32, 5).video
    write_video(folder / "clip.mp4", video, fps=8)
    write_video(folder / "still.png", video[:1], fps=8)
    return folder


def create(client: httpx.Client, **body) -> dict:
    response = client.post("/v1/jobs", json={"prompt": "a red circle moving right", **SMALL, **body})
    assert response.status_code == 201, response.text
    return response.json()


def wait(client: httpx.Client, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout=300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}: {job}"
        time.sleep(0.05)


def upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post("/v1/uploads", files={"file": (name or path.name, f)})


def events(client: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    """Every event of a job's stream, until the server ends it."""
    out = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, data = None, ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line == "" and kind:
                out.append((kind, json.loads(data)))
                kind, data = None, ""
    return out


def worker_pid(live: Live) -> int:
    deadline = time.monotonic() + 120
    while True:
        pids = [w["pid"] for w in live.server.pool.status() if w["running"]]
        if pids:
            return pids[0]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def assert_error(response: httpx.Response, status: int, field: str | None = None, *needles: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "field", "stage", "category"}, body
    assert body["field"] == field, body
    for needle in needles:
        assert needle in body["message"], body
    return body


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def test_keys_are_shown_once_stored_hashed_listed_and_revoked(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["keys", "create", "team-a", "--data-dir", str(data), "--max-queued", "3", "--per-minute", "7"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("cc_") and len(key) > 40
    raw = b"".join(p.read_bytes() for p in data.iterdir() if p.name.startswith("cinecube.db"))
    assert key.encode() not in raw and key[16:].encode() not in raw, "the key itself must never be stored"
    store = Store(data)
    assert store.authenticate(key).name == "team-a"
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("cc_000000000000_" + "x" * 43) is None and store.authenticate("nonsense") is None

    assert main(["keys", "create", "team-a", "--data-dir", str(data)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "create", "../etc", "--data-dir", str(data)]) == 2
    assert main(["keys", "list", "--data-dir", str(data), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "team-a" and listed["max_queued"] == 3 and listed["per_minute"] == 7
    assert listed["revoked_at"] is None and key not in json.dumps(listed)
    assert main(["keys", "revoke", "team-a", "--data-dir", str(data)]) == 0
    assert store.authenticate(key) is None
    assert main(["keys", "revoke", "nobody", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no key is named 'nobody'" in err
    assert main(["keys", "list", "--data-dir", str(tmp_path / "missing")]) == 2


def test_every_v1_endpoint_needs_a_key_and_healthz_does_not(live):
    assert live.anonymous.get("/healthz").json()["status"] in ("ok", "degraded")
    paths = live.anonymous.get("/openapi.json").json()["paths"]
    some_id = "0" * 32
    checked = 0
    for path, operations in paths.items():
        for method in operations:
            url = path.replace("{job_id}", some_id).replace("{upload_id}", some_id)
            response = live.anonymous.request(method.upper(), url)
            if path == "/healthz":
                assert response.status_code == 200
                continue
            assert_error(response, 401, None, "API key")
            assert response.headers["www-authenticate"] == "Bearer"
            bad = live.anonymous.request(method.upper(), url, headers={"Authorization": "Bearer cc_nope"})
            assert_error(bad, 401, None, "unknown or revoked")
            checked += 1
    assert checked >= 13
    assert live.anonymous.get("/").status_code == 200  # the page itself needs no key


def test_a_server_without_keys_is_open_until_the_first_key(tiny_run, tmp_path):
    from fastapi.testclient import TestClient

    server = Server(tmp_path, model=str(tiny_run), workers=0)
    try:
        client = TestClient(create_app(server))
        assert client.get("/v1/me").json()["keys_required"] is False
        assert client.post("/v1/jobs", json={"prompt": "a red circle", **SMALL}).status_code == 201
        key = server.store.create_key("first", max_queued=5, per_minute=100)
        assert client.get("/v1/jobs").status_code == 401
        mine = client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).json()
        assert mine["jobs"] == [], "the open server's jobs are not the new key's"
        server.store.revoke_key("first")
        assert client.get("/v1/jobs").status_code == 401, "revoking the last key must not open the server"
    finally:
        server.close()


def test_serve_warns_off_loopback_without_keys_and_refuses_bad_arguments_in_one_line(
    tiny_run, tmp_path, capsys, monkeypatch
):
    import cinecube.commands.serve as serve

    ran = []
    monkeypatch.setattr(serve, "_run_uvicorn", lambda app, sock, log, on_stop: ran.append(sock.getsockname()))
    data = tmp_path / "data"
    common = ["--port", "0", "--data-dir", str(data), "--model", str(tiny_run)]
    assert main(["serve", "--host", "0.0.0.0", *common]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: listening on 0.0.0.0 without API keys" in err and "no API keys" in out
    assert main(["serve", *common]) == 0
    assert "WARNING" not in capsys.readouterr().err, "loopback without keys: no warning"
    Store(data).create_key("k", max_queued=1, per_minute=1)
    assert main(["serve", "--host", "0.0.0.0", *common]) == 0
    out, err = capsys.readouterr()
    assert "WARNING" not in err and "API keys required (1 active)" in out
    assert len(ran) == 3 and ran[0][0] == "0.0.0.0" and ran[1][0] == "127.0.0.1"

    (tmp_path / "file").write_text("x")
    for bad, needle in [
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--workers", "0"], "--workers"),
        (["--host", "not a host"], "--host"),
        (["--model", str(tmp_path / "typo")], "does not exist"),
        (["--data-dir", str(tmp_path / "file")], "is a file"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
    ]:
        argv = ["serve", "--port", "0", "--data-dir", str(tmp_path / "d2"), "--model", str(tiny_run), *bad]
        assert main(argv) == 2, bad
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, (bad, err)
    assert len(ran) == 3, "nothing was served for a refused command"
    assert not (tmp_path / "d2").exists(), "nor a data folder made"


def test_a_second_server_on_the_same_folder_is_refused(live):
    with pytest.raises(Exception, match="in use by another cinecube serve"):
        Server(live.server.store.root, workers=0)


# ---------------------------------------------------------------------------------------------
# A job from request to verified file
# ---------------------------------------------------------------------------------------------


def test_a_job_runs_streams_its_progress_and_publishes_a_verified_file(live, tmp_path):
    from cinecube.commands.verify import verify_file
    from cinecube.safety.audit import AuditLog

    alice = live["alice"]
    job = create(alice, steps=6, seed=3)
    assert job["status"] in ("queued", "running") and job["request"]["steps"] == 6
    assert job["queue_position"] in (1, None) and job["progress"]["done"] == 0
    seen = events(alice, job["id"])
    assert seen and all(kind == "job" for kind, _ in seen)
    statuses = [data["status"] for _, data in seen]
    assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1
    dones = [data["progress"]["done"] for _, data in seen]
    assert dones == sorted(dones) and dones[-1] == 6, dones

    done = alice.get(f"/v1/jobs/{job['id']}").json()
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"] and done["error"] is None
    result = done["result"]
    assert (result["frames"], result["height"], result["width"], result["media_type"]) == (4, 32, 32, "video/mp4")
    download = alice.get(result["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert len(download.content) == result["bytes"]
    saved = tmp_path / "result.mp4"
    saved.write_bytes(download.content)
    report = verify_file(saved)
    assert report["verified"] and report["c2pa"]["state"] == "Trusted"
    provenance = done["provenance"]
    assert report["watermark"]["payload"] == provenance["watermark_payload"]
    assert report["c2pa"]["claims"]["request_id"] == provenance["audit_request_id"]
    assert provenance["c2pa"] == "signed" and provenance["skipped_stages"] == []
    records = [r for r in AuditLog().read() if r["request_id"] == provenance["audit_request_id"]]
    assert [r["outcome"] for r in records] == ["published"]
    assert records[0]["output_sha256"] == result["sha256"]
    assert Path(records[0]["output_path"]).parent == live.server.store.root / "jobs" / job["id"]

    # The same report over HTTP, without the server's own paths in it.
    with open(saved, "rb") as f:
        over_http = alice.post("/v1/verify", files={"file": ("mine.mp4", f)})
    assert over_http.status_code == 200, over_http.text
    body = over_http.json()
    assert body["verified"] and body["verdict"] == report["verdict"] and body["file"] == "mine.mp4"
    assert str(live.server.store.root) not in over_http.text


def test_formats_and_the_model_description(live):
    alice = live["alice"]
    model = alice.get("/v1/model").json()
    assert model["grid"] == {"height": 4, "width": 4} and model["max_frames"] == 32 and model["min_side"] == 32
    still = create(alice, frames=1, format="png")
    gif = create(alice, format="gif", fps=12)
    looped = create(alice, loop=True, frames=5)  # two sampling passes: the first frame, then the rest
    assert wait(alice, still["id"])["result"]["media_type"] == "image/png"
    finished = wait(alice, gif["id"])
    assert finished["result"]["media_type"] == "image/gif" and finished["result"]["fps"] == 12
    assert alice.get(finished["result"]["url"]).content[:6] in (b"GIF87a", b"GIF89a")
    loop = wait(alice, looped["id"])
    assert loop["result"]["frames"] == 5 and loop["progress"]["done"] == loop["progress"]["total"] == 2 * 2


# ---------------------------------------------------------------------------------------------
# Bad requests: each named, with the allowed values, and nothing queued
# ---------------------------------------------------------------------------------------------

BAD_JOBS = [
    ({"height": 30}, "height", "multiples of 4 from 32 to 512"),
    ({"width": 4000}, "width", "multiples of 4 from 32 to 512"),
    ({"height": 5000}, "height", "multiples of 4 from 32"),
    ({"frames": 33}, "frames", "frames: 1..32"),
    ({"frames": 0}, "frames", "frames: 1..32"),
    ({"frames": True}, "frames", "frames True is not allowed"),
    ({"frames": "8"}, "frames", "frames '8' is not allowed"),
    ({"loop": "yes"}, "loop", "use true or false"),
    ({"width": None}, "width", "height and width together"),
    ({"steps": 0}, "steps", "use 1..1000"),
    ({"steps": 1001}, "steps", "use 1..1000"),
    ({"steps": 2.5}, "steps", "use 1..1000"),
    ({"guidance": -1}, "guidance", "use 0..30"),
    ({"seed": -1}, "seed", "use 0..9223372036854775807"),
    ({"seed": 2**64}, "seed", "use 0.."),
    ({"fps": 0}, "fps", "above 0 and at most 240"),
    ({"sampler": "dpm"}, "sampler", "euler"),
    ({"mode": "dance"}, "mode", "generate, extend"),
    ({"format": "avi"}, "format", "mp4, gif or png"),
    ({"format": "png"}, "format", "png holds one frame, the request makes 4"),
    ({"prompt": ""}, "prompt", "prompt is empty"),
    ({"prompt": "   "}, "prompt", "prompt is empty"),
    ({"prompt": "x" * 2001}, "prompt", "at most 2000 characters"),
    ({"prompt": "a red circle " * 40}, "prompt", "tokens long; the maximum is 32"),
    ({"prompt": None}, "prompt", "prompt is required"),
    ({"strength": 0.5}, "strength", "not used by mode generate"),
    ({"mode": "edit", "frames": None, "height": None, "width": None}, "video", "required by mode edit"),
    ({"mode": "connect", "video": "0" * 32}, "video", "not one of this key's uploads"),
    ({"image": "../../etc/passwd"}, "image", "not one of this key's uploads"),
    ({"direction": "backward"}, "direction", "for mode extend"),
    ({"unknown": 1}, "unknown", "not a request field"),
]


@pytest.mark.parametrize("change,field,needle", BAD_JOBS, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_JOBS)])
def test_a_bad_job_request_is_a_422_naming_the_field_and_nothing_is_queued(live, change, field, needle):
    carol = live["carol"]
    before = carol.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    body = {k: v for k, v in {"prompt": "a red circle", **SMALL, **change}.items() if v is not None}
    response = carol.post("/v1/jobs", json=body)
    assert_error(response, 422, field, needle)
    assert carol.get("/v1/jobs", params={"limit": 100}).json()["jobs"] == before


def test_a_body_that_is_not_a_json_object_or_too_large_is_refused(live):
    carol = live["carol"]
    assert_error(carol.post("/v1/jobs", content=b"[1, 2]", headers={"content-type": "application/json"}), 422)
    assert_error(carol.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}), 422)
    huge = json.dumps({"prompt": "a" * (2**20 + 10)}).encode()
    assert_error(carol.post("/v1/jobs", content=huge, headers={"content-type": "application/json"}), 413, None)


def test_a_denied_prompt_is_a_400_with_its_category_logged_and_no_job(live):
    from cinecube.safety.audit import AuditLog
    from cinecube.safety.provenance import prompt_sha256

    carol = live["carol"]
    prompt = "a naked child on a beach"
    before = carol.get("/v1/jobs").json()["jobs"]
    body = assert_error(carol.post("/v1/jobs", json={"prompt": prompt, **SMALL}), 400, "prompt", "content policy")
    assert body["error"] == "prompt_refused" and body["stage"] == "prompt_policy"
    assert body["category"] == "minors_sexual"
    assert carol.get("/v1/jobs").json()["jobs"] == before
    blocked = [r for r in AuditLog().read() if r["prompt_sha256"] == prompt_sha256(prompt)]
    assert blocked and blocked[-1]["outcome"] == "blocked" and blocked[-1]["output_path"] is None


# ---------------------------------------------------------------------------------------------
# Uploads and the image and video modes
# ---------------------------------------------------------------------------------------------


def test_bad_uploads_are_refused_and_leave_nothing(live, tmp_path, clip):
    carol = live["carol"]
    root = live.server.store.root
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(5000))
    assert_error(upload(carol, garbage), 415, "file", "png, jpeg, gif, mp4")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3000))
    assert_error(upload(carol, broken), 422, "file", "not a readable image")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((clip / "clip.mp4").read_bytes()[:300])
    assert_error(upload(carol, truncated), 422, "file")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_error(upload(carol, empty), 422, "file", "empty")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (2**20 + 100))
    assert_error(upload(carol, big), 413, "file", "upload limit of 1 MiB")
    huge = tmp_path / "huge.png"
    from PIL import Image

    Image.new("RGB", (5000, 20)).save(huge)
    assert_error(upload(carol, huge), 413, "file", "sides up to 4096")
    assert_error(carol.post("/v1/uploads", files={"other": ("a.png", b"x")}), 422, "file", "no field named 'file'")
    assert_error(carol.post("/v1/uploads", content=b"raw", headers={"content-type": "image/png"}), 415, "file")
    assert not list((root / "tmp").iterdir()), "refused uploads leave nothing behind"
    assert carol.get("/v1/uploads").json()["uploads"] == []


def test_uploads_feed_animate_extend_connect_and_edit_with_their_ingredients(live, clip, tmp_path):
    from cinecube.commands.verify import verify_file

    alice = live["alice"]
    video = upload(alice, clip / "clip.mp4", name="../../my clip.mp4")
    still = upload(alice, clip / "still.png")
    assert video.status_code == 201 and still.status_code == 201, video.text
    video, still = video.json(), still.json()
    assert (video["kind"], video["frames"], video["width"], video["height"]) == ("video", 5, 32, 32)
    assert still["kind"] == "image" and video["name"] == "../../my clip.mp4"
    assert sorted(p.name for p in (live.server.store.root / "uploads").iterdir()) == sorted(
        [f"{video['id']}.mp4", f"{still['id']}.png"]
    ), "stored under the server's own names"
    listed = {u["id"] for u in alice.get("/v1/uploads").json()["uploads"]}
    assert listed >= {video["id"], still["id"]}

    jobs = {
        "animate": create(alice, image=still["id"], frames=5),
        "loop": create(alice, image=still["id"], frames=5, loop=True),
        "extend": create(alice, mode="extend", video=video["id"], frames=4, height=None, width=None),
        "connect": create(
            alice, mode="connect", video=video["id"], second_video=still["id"], frames=3, height=None, width=None
        ),
        "edit": create(alice, mode="edit", video=video["id"], strength=0.5, frames=None, height=None, width=None),
    }
    # The upload can go: each job keeps its own copy of its inputs.
    assert alice.delete(f"/v1/uploads/{video['id']}").status_code == 204
    assert_error(alice.get(f"/v1/uploads/{video['id']}"), 404)
    expected_frames = {"animate": 5, "loop": 5, "extend": 9, "connect": 5 + 3 + 1, "edit": 5}
    relationships = {
        "animate": ["componentOf"],
        "loop": ["componentOf"],
        "extend": ["parentOf"],
        "connect": ["componentOf", "componentOf"],
        "edit": ["parentOf"],
    }
    for name, job in jobs.items():
        done = wait(alice, job["id"])
        assert done["status"] == "succeeded", (name, done["error"])
        assert done["result"]["frames"] == expected_frames[name], name
        assert [i["relationship"] for i in done["inputs"]] == relationships[name]
        saved = tmp_path / f"{name}.mp4"
        saved.write_bytes(alice.get(done["result"]["url"]).content)
        report = verify_file(saved)
        assert report["verified"], (name, report["verdict"])
        assert len(report["c2pa"]["ingredients"]) == len(relationships[name]), name


# ---------------------------------------------------------------------------------------------
# Isolation, listing, cancelling, deleting
# ---------------------------------------------------------------------------------------------


def test_a_key_sees_only_its_own_jobs_and_files(live, clip):
    alice, bob = live["alice"], live["bob"]
    job = create(alice)
    theirs = upload(alice, clip / "still.png").json()
    wait(alice, job["id"])
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("GET", f"/v1/jobs/{job['id']}/result"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/uploads/{theirs['id']}"),
        ("DELETE", f"/v1/uploads/{theirs['id']}"),
    ]:
        response = bob.request(method, path)
        assert_error(response, 404)
        guessed = bob.request(method, path.replace(job["id"], "f" * 32).replace(theirs["id"], "e" * 32))
        assert_error(guessed, 404)
        assert response.json()["message"].replace(job["id"], "X").replace(theirs["id"], "X") == guessed.json()[
            "message"
        ].replace("f" * 32, "X").replace("e" * 32, "X"), "another key's id is as absent as one never made"
    assert job["id"] not in {j["id"] for j in bob.get("/v1/jobs", params={"limit": 100}).json()["jobs"]}
    assert theirs["id"] not in {u["id"] for u in bob.get("/v1/uploads").json()["uploads"]}
    assert_error(bob.post("/v1/jobs", json={"prompt": "a cat", "image": theirs["id"], "frames": 2}), 422, "image")
    for odd in ("..", "..%2F..%2Fcinecube.db", "%00", "x" * 300):
        assert bob.get(f"/v1/jobs/{odd}").status_code == 404
        assert bob.get(f"/v1/jobs/{odd}/result").status_code == 404
    assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded", "bob changed nothing"
    assert alice.get(f"/v1/uploads/{theirs['id']}").status_code == 200


def test_jobs_are_listed_newest_first_in_pages(live):
    bob = live["bob"]
    made = [create(bob, seed=i)["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = bob.get("/v1/jobs", params=params).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == made[::-1] and len(seen) == len(set(seen))
    for job_id in made:
        wait(bob, job_id)
    succeeded = bob.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["jobs"]
    assert set(made) <= {j["id"] for j in succeeded}
    assert_error(bob.get("/v1/jobs", params={"cursor": "abc"}), 422, "cursor")
    assert_error(bob.get("/v1/jobs", params={"limit": 0}), 422, "limit")
    assert_error(bob.get("/v1/jobs", params={"status": "lost"}), 422, "status")


def test_cancel_stops_a_running_job_and_a_queued_one_and_nothing_else(live):
    alice = live["alice"]
    running = create(alice, steps=1000, seed=1)
    queued = create(alice, seed=2)
    neighbour = create(alice, seed=3)
    wait(alice, running["id"], statuses=("running",))
    cancelled = alice.post(f"/v1/jobs/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    stopping = alice.post(f"/v1/jobs/{running['id']}/cancel").json()
    assert stopping["cancel_requested"] and stopping["status"] in ("running", "cancelled")
    assert wait(alice, running["id"])["status"] == "cancelled"
    assert wait(alice, neighbour["id"])["status"] == "succeeded", "cancelling one never touches another"
    finished = alice.get(f"/v1/jobs/{running['id']}").json()
    assert finished["result"] is None and finished["history"][-1]["event"] == "cancelled"
    assert not (live.server.store.root / "jobs" / running["id"] / "result.mp4").exists()
    assert_error(alice.post(f"/v1/jobs/{neighbour['id']}/cancel"), 409, None, "succeeded already")
    assert alice.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"  # again: no change


def test_delete_removes_a_finished_job_and_its_files_and_refuses_others(live):
    alice = live["alice"]
    job = create(alice)
    blocker = create(alice, steps=1000)
    late = create(alice)
    assert_error(alice.delete(f"/v1/jobs/{late['id']}"), 409, None, "cancel it first")
    alice.post(f"/v1/jobs/{blocker['id']}/cancel")
    wait(alice, late["id"])
    folder = live.server.store.root / "jobs" / job["id"]
    assert wait(alice, job["id"])["status"] == "succeeded" and folder.is_dir()
    assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not folder.exists()
    assert_error(alice.get(f"/v1/jobs/{job['id']}"), 404)
    assert_error(alice.delete(f"/v1/jobs/{job['id']}"), 404)
    assert alice.delete(f"/v1/jobs/{blocker['id']}").status_code == 204


def test_a_result_exists_only_once_a_job_succeeded(live):
    alice = live["alice"]
    job = create(alice, steps=1000)
    assert_error(alice.get(f"/v1/jobs/{job['id']}/result"), 409, None, "once it succeeded")
    alice.post(f"/v1/jobs/{job['id']}/cancel")
    wait(alice, job["id"])


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_over_the_requests_a_minute_a_key_gets_429_with_retry_after(live):
    slow, alice = live["slow"], live["alice"]
    codes = [slow.get("/v1/me").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    limited = slow.get("/v1/me")
    assert_error(limited, 429, None, "3 requests a minute")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert alice.get("/v1/me").status_code == 200, "the limit is per key"


@pytest.fixture(scope="module")
def idle(tiny_run, tmp_path_factory):
    """A server without workers: jobs stay queued (fuzzing, queue limits)."""
    from fastapi.testclient import TestClient

    server = Server(tmp_path_factory.mktemp("idle-data"), model=str(tiny_run), workers=0)
    key = server.store.create_key("fuzz", max_queued=100_000, per_minute=1_000_000)
    two = server.store.create_key("two", max_queued=2, per_minute=10_000)
    app = create_app(server)
    try:
        yield {
            "app": app,
            "server": server,
            "key": key,
            "two": TestClient(app, headers={"Authorization": f"Bearer {two}"}),
        }
    finally:
        server.close()


def test_over_its_queued_jobs_a_key_gets_429_with_retry_after(idle):
    client = idle["two"]
    first, second = (client.post("/v1/jobs", json={"prompt": "a red circle", **SMALL}) for _ in range(2))
    assert first.status_code == second.status_code == 201
    third = client.post("/v1/jobs", json={"prompt": "a red circle", **SMALL})
    assert_error(third, 429, None, "2 jobs queued or running")
    assert int(third.headers["retry-after"]) > 0
    client.post(f"/v1/jobs/{first.json()['id']}/cancel")
    assert client.post("/v1/jobs", json={"prompt": "a red circle", **SMALL}).status_code == 201


# ---------------------------------------------------------------------------------------------
# A worker that dies
# ---------------------------------------------------------------------------------------------


def test_a_job_that_kills_its_worker_fails_with_a_reason_and_the_queue_goes_on(live):
    carol = live["carol"]
    doomed = create(carol, steps=1000)
    after = create(carol)
    wait(carol, doomed["id"], statuses=("running",))
    pid = worker_pid(live)
    os.kill(pid, signal.SIGSTOP)  # hold it mid-job, so the kill lands while the job runs
    os.kill(pid, signal.SIGKILL)
    failed = wait(carol, doomed["id"])
    assert failed["status"] == "failed" and failed["error"]["stage"] == "worker"
    assert "killed by SIGKILL" in failed["error"]["message"] and "not retried" in failed["error"]["message"]
    assert wait(carol, after["id"])["status"] == "succeeded", "a new worker takes the queue on"
    assert worker_pid(live) != pid
    assert live.anonymous.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------------------------------------
# Fuzzing the whole API from its OpenAPI description
# ---------------------------------------------------------------------------------------------


FUZZED = [
    "GET /healthz",
    "GET /v1/model",
    "GET /v1/me",
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "DELETE /v1/jobs/{job_id}",
    "GET /v1/jobs/{job_id}/result",
    "GET /v1/jobs/{job_id}/events",
    "POST /v1/uploads",
    "GET /v1/uploads",
    "GET /v1/uploads/{upload_id}",
    "DELETE /v1/uploads/{upload_id}",
    "POST /v1/verify",
]


@pytest.fixture(scope="module")
def api_schema(idle, tmp_path_factory):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))  # its caches, not in the checkout
    return schemathesis.openapi.from_asgi("/openapi.json", idle["app"])


def test_every_operation_of_the_api_is_fuzzed(api_schema):
    found = {f"{op.ok().method.upper()} {op.ok().path}" for op in api_schema.get_all_operations()}
    assert found == set(FUZZED)


@pytest.mark.parametrize(
    "label,mode",
    [
        (label, mode)
        for label in FUZZED
        for mode in ("positive", "negative")
        if (label, mode) != ("GET /healthz", "negative")
    ],
    ids=lambda x: x,
)
def test_fuzzing_from_the_openapi_description_finds_no_5xx_and_only_described_responses(api_schema, idle, label, mode):
    """Requests generated from the OpenAPI description (schemathesis): valid ones (positive)
    and ones that break it (negative, which must be refused with a 4xx). Every answer must be
    described by the description: its status, content type and body; and none is a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    generation = GenerationMode.POSITIVE
    if mode == "negative":
        checks.append(negative_data_rejection)
        generation = GenerationMode.NEGATIVE
    operation = api_schema.find_operation_by_label(label)
    headers = {"Authorization": f"Bearer {idle['key']}"}

    examples = int(os.environ.get("CINECUBE_FUZZ_EXAMPLES", "15"))  # more for a thorough run

    @given(case=operation.as_strategy(generation_mode=generation))
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(headers=headers, checks=checks)

    check()


# ---------------------------------------------------------------------------------------------
# The page, in a real browser
# ---------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install -y chromium)")
def test_the_page_in_chromium_generates_shows_progress_plays_the_video_and_lists_it(live, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live.url)
            assert "enter your API key" in page.inner_text("#key-state")
            page.fill("#key", live.keys["alice"])
            page.click("#key-save")
            page.wait_for_function("document.getElementById('key-state').textContent.includes('alice')")
            page.wait_for_function("document.getElementById('size').options.length > 0")
            page.reload()  # the key is kept: entered once
            page.wait_for_function("document.getElementById('key-state').textContent.includes('alice')")
            page.wait_for_function("document.getElementById('size').options.length > 0")

            page.fill("#prompt", "a yellow circle moving left on a dark blue background")
            page.select_option("#size", "32")
            page.select_option("#frames", "16")
            page.fill("#steps", "150")
            page.fill("#seed", "11")
            # Record every width the progress bar takes.
            page.evaluate(
                """() => {
                    window.widths = [];
                    const bar = document.getElementById('progress-bar');
                    new MutationObserver(() => window.widths.push(parseFloat(bar.style.width) || 0))
                        .observe(bar, {attributes: true, attributeFilter: ['style']});
                }"""
            )
            page.click("#generate")
            page.wait_for_selector("#player:not([hidden])", timeout=300_000)
            widths = page.evaluate("window.widths")
            assert widths[-1] == 100 and any(0 < w < 100 for w in widths), widths
            assert widths == sorted(widths), widths

            # The video plays: its time advances, with no error.
            times = []
            for _ in range(30):
                times.append(page.evaluate("document.getElementById('video').currentTime"))
                page.wait_for_timeout(100)
            assert page.evaluate("document.getElementById('video').error") is None
            assert any(b > a for a, b in zip(times, times[1:])), times
            assert page.get_attribute("#download", "href").startswith("blob:")
            assert "watermark" in page.inner_text("#provenance")

            page.click("#refresh")  # the gallery of this key's jobs
            page.wait_for_selector(".card .badge.succeeded")
            page.wait_for_selector(".card .thumb video")
            prompts = page.locator(".card .title").all_inner_texts()
            assert "a yellow circle moving left on a dark blue background" in prompts
            # The verify panel: a file of ours is verified, another is not.
            ours = tmp_path / "ours.mp4"
            job = live["alice"].get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]
            ours.write_bytes(live["alice"].get(job["result"]["url"]).content)
            page.set_input_files("#verify-file", str(ours))
            page.wait_for_selector(".verdict.good", timeout=120_000)
            assert "VERIFIED" in page.inner_text("#verdict") and job["provenance"][
                "watermark_payload"
            ] in page.inner_text("#verdict")
            assert not errors, errors
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("CINECUBE_SCREENSHOT"):
                shutil.copy(shot, os.environ["CINECUBE_SCREENSHOT"])
        finally:
            browser.close()


def test_the_database_is_in_wal_mode_in_the_data_folder(live):
    db = sqlite3.connect(live.server.store.root / "cinecube.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {"jobs", "keys"}
    db.close()


@pytest.mark.slow
def test_the_load_benchmark_runs_and_reports_every_figure(tiny_run, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "load.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    command = [sys.executable, str(script), "--quick", "--model", str(tiny_run), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    load = figures["load"]
    assert load["requests"] > 0 and load["errors"] == 0 and load["event_stream_errors"] == 0
    assert 0 < load["latency_ms"]["p50"] <= load["latency_ms"]["p99"] <= load["latency_ms"]["max"]
    assert figures["alone"]["jobs_per_hour"] > 0 and figures["idle"]["server_rss_mib"] > 0
    assert "status latency" in result.stdout
