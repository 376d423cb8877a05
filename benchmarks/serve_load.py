"""The server under load, on loopback: status latency, event delivery, jobs per hour, memory.

    .venv/bin/python benchmarks/serve_load.py [--rate 200] [--seconds 30] [--clients 20]
                                              [--model M] [--workers 1] [--out FILE.json] [--quick]

Starts `cinecube serve` (its own data folder, a key without practical limits), waits for the
worker to load the model, and measures:

1. idle: the resident memory of the server process and of each worker;
2. jobs per hour at the default size (64x64, 16 frames, 25 steps, guidance 3) with no other
   traffic: a few jobs one after another, 3600 / the median time a worker spends on one;
3. under load: `--clients` clients (threads, each with a keep-alive connection) poll job status
   (GET /v1/jobs/ID) at `--rate` requests a second in all for `--seconds`, while the worker runs
   jobs back to back and one event stream (GET /v1/jobs/ID/events) follows each job. Reported:
   status latency p50/p90/p99/max, errors (anything but 200, and failed connections), the rate
   reached, how late events arrive (from the change in the database to the client), jobs per
   hour meanwhile, and memory.

The clients run on the same machine (one Python process, http.client), so latencies include
their own scheduling; nothing here is a pass/fail threshold. `--quick` is a smoke run
of a few seconds whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `cinecube` importable
    sys.path.insert(0, str(ROOT / "src"))

DEFAULT_JOB = {"prompt": "a red circle moving right on a black background", "frames": 16, "height": 64, "width": 64}
QUICK_JOB = {"prompt": "a red circle moving right on a black background", "frames": 4, "height": 32, "width": 32}


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def parse_iso(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class Server:
    def __init__(self, data: Path, model: str | None, workers: int):
        command = [sys.executable, "-m", "cinecube.cli", "serve", "--port", "0", "--data-dir", str(data)]
        command += ["--workers", str(workers)] + (["--model", model] if model else [])
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 300
        while not any(line.startswith("cinecube serve: http") for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start:\n" + "".join(self.lines))
            time.sleep(0.05)
        self.url = next(line for line in self.lines if line.startswith("cinecube serve: ")).split()[2].rstrip("/")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def worker_pids(store) -> list[int]:
    return [w["pid"] for w in store.workers() if w["pid"] and w["state"] in ("idle", "busy")]


def memory(server: Server, store) -> dict:
    return {"server_mib": rss_mib(server.process.pid), "workers_mib": [rss_mib(p) for p in worker_pids(store)]}


class Client:
    """A keep-alive HTTP/1.1 connection (http.client: light enough that the clients, on the same
    machine, take little of the CPU the server needs)."""

    def __init__(self, url: str, key: str, timeout: float = 60):
        host, port = url.split("//", 1)[1].split(":")
        self.address, self.timeout = (host, int(port)), timeout
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(*self.address, timeout=timeout)

    def request(self, method: str, path: str, body: dict | None = None, retry: bool = True) -> tuple[int, dict | None]:
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.connection.request(method, path, body=data, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            self.connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
            # A connection left idle past the server's keep-alive is closed by it: open another, once.
            if retry and isinstance(error, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
                return self.request(method, path, body, retry=False)
            raise
        return response.status, json.loads(payload) if payload else None

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}")[1]

    def create(self, body: dict) -> str:
        status, job = self.request("POST", "/v1/jobs", body)
        if status != 201:
            raise SystemExit(f"a job was refused: {job}")
        return job["id"]


def run_jobs_alone(client: Client, n: int, job: dict) -> list[float]:
    """Worker seconds per job (started_at -> finished_at), jobs one after another, no other traffic."""
    seconds = []
    for i in range(n):
        job_id = client.create({**job, "seed": i})
        while (state := client.job(job_id))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
        if state["status"] != "succeeded":
            raise SystemExit(f"a job did not succeed: {state['error']}")
        seconds.append(parse_iso(state["finished_at"]) - parse_iso(state["started_at"]))
    return seconds


def follow(client: Client, job_id: str, delays: list[float], counts: dict, lock: threading.Lock) -> None:
    """One event stream, read to its end: how late each event arrives after the change it reports."""
    connection = http.client.HTTPConnection(*client.address, timeout=600)
    try:
        connection.request("GET", f"/v1/jobs/{job_id}/events", headers=client.headers)
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"status {response.status}")
        last = None  # the first event is the state when the stream opened, not a change it waited for
        for raw in response:
            line = raw.decode()
            if line.startswith("data:"):
                data = json.loads(line[5:])
                arrived = time.time()
                with lock:
                    counts["events"] += 1
                    # Only the job's own changes are timed (a queue position moves when another job ends).
                    if last is not None and data["updated_at"] != last:
                        delays.append(arrived - parse_iso(data["updated_at"]))
                last = data["updated_at"]
    except (OSError, http.client.HTTPException, ValueError):
        with lock:
            counts["sse_errors"] += 1
    finally:
        connection.close()


def poll(client: Client, ids: list[str], interval: float, until: float, latencies: list, counts: dict, lock) -> None:
    """One client: a status request every `interval` seconds, on schedule (not after the last answer)."""
    rng = random.Random()
    next_at = time.monotonic() + rng.random() * interval
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if next_at > now:
            time.sleep(next_at - now)
        next_at += interval
        started = time.perf_counter()
        try:
            ok = client.request("GET", f"/v1/jobs/{rng.choice(ids)}", retry=False)[0] == 200  # a drop is an error
        except (OSError, http.client.HTTPException, ValueError):
            ok = False
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            counts["requests"] += 1
            counts["errors"] += not ok


def measure(args, server: Server, key: str, store) -> dict:
    job = QUICK_JOB if args.quick else DEFAULT_JOB
    client = Client(server.url, key)
    while not worker_pids(store) or any(w["state"] in ("starting", "loading") for w in store.workers()):
        time.sleep(0.2)
    run_jobs_alone(client, 1, job)  # warm-up: first-use costs (caches, first encode)
    time.sleep(2)
    idle = memory(server, store)
    alone = run_jobs_alone(client, 2 if args.quick else args.alone_jobs, job)
    per_job = statistics.median(alone)

    # Under load: enough jobs to keep the worker(s) busy for the whole window.
    n_jobs = int(args.seconds / per_job * args.workers) + 2
    ids = [client.create({**job, "seed": 100 + i}) for i in range(n_jobs)]
    lock = threading.Lock()
    delays: list[float] = []
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0, "events": 0, "sse_errors": 0}
    streams = [
        threading.Thread(target=follow, args=(Client(server.url, key), i, delays, counts, lock), daemon=True)
        for i in ids
    ]
    for stream in streams:
        stream.start()
    started_wall, started = time.time(), time.monotonic()
    until = started + args.seconds
    interval = args.clients / args.rate
    pollers = [
        threading.Thread(target=poll, args=(Client(server.url, key), ids, interval, until, latencies, counts, lock))
        for _ in range(args.clients)
    ]
    for poller in pollers:
        poller.start()
    samples = []
    while time.monotonic() < until:
        samples.append(memory(server, store))
        time.sleep(0.5)
    for poller in pollers:
        poller.join()
    elapsed = time.monotonic() - started
    ended_wall = time.time()
    jobs = [client.job(i) for i in ids]
    in_window = [
        j for j in jobs if j["status"] == "succeeded" and started_wall <= parse_iso(j["finished_at"]) <= ended_wall
    ]
    loaded_seconds = [parse_iso(j["finished_at"]) - parse_iso(j["started_at"]) for j in in_window]
    for j in jobs:
        if j["status"] in ("queued", "running"):
            client.request("POST", f"/v1/jobs/{j['id']}/cancel")
    for stream in streams:
        stream.join(60)

    server_rss = [s["server_mib"] for s in samples if s["server_mib"]]
    worker_rss = [sum(w for w in s["workers_mib"] if w) for s in samples if s["workers_mib"]]
    ms = [x * 1000 for x in latencies]
    return {
        "job": {**job, "steps": 25, "guidance": 3.0},
        "idle": {"server_rss_mib": idle["server_mib"], "worker_rss_mib": idle["workers_mib"]},
        "alone": {
            "jobs": len(alone),
            "worker_seconds_per_job": alone,
            "jobs_per_hour": round(3600 / per_job * args.workers, 1),
        },
        "load": {
            "seconds": round(elapsed, 1),
            "clients": args.clients,
            "target_rate": args.rate,
            "requests": counts["requests"],
            "rate": round(counts["requests"] / elapsed, 1),
            "errors": counts["errors"],
            "latency_ms": {
                "p50": round(percentile(ms, 50), 2),
                "p90": round(percentile(ms, 90), 2),
                "p99": round(percentile(ms, 99), 2),
                "max": round(max(ms), 2),
            },
            "event_streams": len(ids),
            "events": counts["events"],
            "event_stream_errors": counts["sse_errors"],
            "event_delay_ms": {
                "p50": round(percentile(delays, 50) * 1000, 1) if delays else None,
                "p99": round(percentile(delays, 99) * 1000, 1) if delays else None,
            },
            "jobs_finished": len(in_window),
            "worker_seconds_per_job": loaded_seconds,
            "jobs_per_hour": round(3600 / statistics.median(loaded_seconds) * args.workers, 1)
            if loaded_seconds
            else None,
            "server_rss_mib": {"mean": round(statistics.mean(server_rss), 1), "max": round(max(server_rss), 1)},
            "worker_rss_mib": {"mean": round(statistics.mean(worker_rss), 1), "max": round(max(worker_rss), 1)},
        },
    }


def report(result: dict) -> str:
    load, alone, idle = result["load"], result["alone"], result["idle"]
    lat = load["latency_ms"]
    job = result["job"]
    size = f"{job['width']}x{job['height']}x{job['frames']}, {job['steps']} steps"
    workers = ", ".join(f"{w:.0f}" for w in idle["worker_rss_mib"] if w)
    lines = [
        "| figure | value |\n|---|---|",
        f"| status requests | {load['requests']} in {load['seconds']} s ({load['rate']}/s of "
        f"{load['target_rate']}/s asked), {load['clients']} clients |",
        f"| status latency | p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms |",
        f"| errors | {load['errors']} (status), {load['event_stream_errors']} (event streams) |",
        f"| event streams | {load['event_streams']}, {load['events']} events, delay p50 "
        f"{load['event_delay_ms']['p50']} ms, p99 {load['event_delay_ms']['p99']} ms |",
        f"| jobs per hour ({size}) | {alone['jobs_per_hour']} alone, {load['jobs_per_hour']} under load |",
        f"| resident memory idle | server {idle['server_rss_mib']:.0f} MiB, worker {workers} MiB |",
        f"| resident memory under load | server {load['server_rss_mib']['max']:.0f} MiB max, "
        f"worker {load['worker_rss_mib']['max']:.0f} MiB max |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0, help="status requests a second, all clients together")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--alone-jobs", type=int, default=4, help="jobs timed one after another with no traffic")
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--quick", action="store_true", help="a smoke run: small jobs, a few seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rate, args.clients = min(args.seconds, 4.0), min(args.rate, 40.0), min(args.clients, 4)

    from cinecube.server.store import Store

    with tempfile.TemporaryDirectory(prefix="cinecube-serve-load-") as tmp:
        os.environ.setdefault("CINECUBE_CONFIG_DIR", str(Path(tmp) / "config"))  # its own signing key and audit log
        data = Path(tmp) / "data"
        store = Store(data)
        key = store.create_key("load", max_queued=1_000_000, per_minute=1_000_000)
        server = Server(data, args.model, args.workers)
        try:
            result = measure(args, server, key, store)
        finally:
            server.stop()
    result["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    result["when"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(report(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
