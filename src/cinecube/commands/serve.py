"""`cinecube serve` and `cinecube keys`: the HTTP server and its API keys.

    cinecube serve [--host 127.0.0.1] [--port 8000] [--workers 1] [--data-dir DIR] [--model M]
    cinecube keys create NAME [--max-queued 20] [--per-minute 600]   prints the key, once
    cinecube keys list
    cinecube keys revoke NAME

The server keeps its jobs, keys and files in the data folder (docs/serving.md). Until a key
exists it serves anyone who can reach it, so it listens on loopback by default and warns when
told to listen elsewhere without keys.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import sys
import time

from . import arguments as arg
from .generate import add_safety_arguments, safety_settings_from


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    s = commands.add_parser(
        "serve", help="serve the HTTP API and the web page, with a job queue that survives restarts"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=arg.non_negative_int, default=8000, help="port (default 8000; 0: any free one)")
    s.add_argument("--workers", type=arg.positive_int, default=1, help="worker processes, each with the model (1)")
    _data_dir(s)
    s.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    s.add_argument("--device", type=arg.device, default="cpu")
    s.add_argument(
        "--threads", type=arg.non_negative_int, default=0, help="torch threads per worker (default: cores / workers)"
    )
    s.add_argument("--max-upload-mb", type=arg.positive_float, default=32.0, help="largest upload (32 MiB)")
    s.add_argument("--log-requests", action="store_true", help="print a line per HTTP request")
    add_safety_arguments(s)
    s.set_defaults(func=cmd_serve)

    k = commands.add_parser("keys", help="create, list and revoke the API keys of a server")
    keys = k.add_subparsers(dest="keys_command", required=True)
    c = keys.add_parser("create", help="create a key and print it (it is shown only this once)")
    c.add_argument("name")
    c.add_argument("--max-queued", type=arg.positive_int, default=20, help="jobs queued or running at once (20)")
    c.add_argument("--per-minute", type=arg.positive_int, default=600, help="requests a minute (600)")
    _data_dir(c)
    c.set_defaults(func=cmd_keys_create)
    ls = keys.add_parser("list", help="list the keys (never the keys themselves)")
    ls.add_argument("--json", action="store_true")
    _data_dir(ls)
    ls.set_defaults(func=cmd_keys_list)
    r = keys.add_parser("revoke", help="revoke a key: its requests are refused from now on")
    r.add_argument("name")
    _data_dir(r)
    r.set_defaults(func=cmd_keys_revoke)


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help="the server's folder: job database, uploads, results (default: ~/.local/share/cinecube/server)",
    )


def _store(args: argparse.Namespace, create: bool):
    from ..server.store import Store, default_data_dir

    return Store(args.data_dir if args.data_dir is not None else default_data_dir(), create=create)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    import socket

    from ..errors import CinecubeError
    from ..safety.guard import check_settings

    safety = safety_settings_from(args)
    check_settings(safety)  # the audit log and signing key, before anything starts
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on sockets that say they are TCP,
    # and with it on, a response written in two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(2048)  # connections wait in the backlog until the app is up
    except (OSError, OverflowError) as error:
        sock.close()
        raise CinecubeError(f"--host {args.host} --port {args.port}: cannot listen there ({error})") from None
    port = sock.getsockname()[1]

    from ..server.app import Server, create_app

    started = time.monotonic()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    try:
        server = Server(
            args.data_dir if args.data_dir is not None else _default_dir(),
            model=args.model,
            workers=args.workers,
            safety=safety,
            device=args.device,
            threads=threads,
            max_upload_mb=args.max_upload_mb,
        )
    except BaseException:
        sock.close()
        raise
    try:
        store = server.store
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"cinecube serve: http://{host}:{port}/  (API /v1, description /docs)", flush=True)
        print(f"  data folder {store.root}; model {server.planner.model_name}; {args.workers} worker(s)", flush=True)
        recovered = server.recovered
        if any(recovered.values()):
            print(
                f"  after the last stop: {len(recovered['retried'])} running job(s) queued again, "
                f"{len(recovered['failed'])} failed (interrupted twice), {len(recovered['cancelled'])} cancelled",
                flush=True,
            )
        counts = store.counts()
        print(f"  {counts['queued']} job(s) queued", flush=True)
        if store.keys_configured():
            live = sum(1 for key, _ in store.list_keys() if key.revoked_at is None)
            print(f"  API keys required ({live} active)", flush=True)
        else:
            print("  no API keys: anyone who can reach this address can use it (`cinecube keys create NAME`)")
            if not _is_loopback(args.host):
                print(
                    f"WARNING: listening on {args.host} without API keys: anyone on the network can generate, "
                    "and see and delete every job. Create a key first: cinecube keys create NAME",
                    file=sys.stderr,
                    flush=True,
                )
        if safety.skipped:
            print(f"  WARNING: safety stages skipped on request: {', '.join(safety.skipped)}", file=sys.stderr)
        print(f"  ready in {time.monotonic() - started:.1f} s; the workers load the model now", flush=True)
        with contextlib.suppress(_Stop, KeyboardInterrupt):  # SIGTERM or Ctrl-C, once uvicorn has shut down
            _run_uvicorn(create_app(server), sock, args.log_requests, server.stopping.set)
    finally:
        server.close()
        sock.close()
    print("cinecube serve: stopped (jobs that were running are retried at the next start)", flush=True)
    return 0


def _default_dir():
    from ..server.store import default_data_dir

    return default_data_dir()


STOP_GRACE_S = 3


class _Stop(Exception):
    """SIGTERM: uvicorn shuts down on it, then raises it again for the process's own handler."""


def _raise_stop(signum, frame) -> None:
    raise _Stop


def _run_uvicorn(app, sock, log_requests: bool, on_stop=None) -> None:
    import signal

    import uvicorn

    class Uvicorn(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if on_stop is not None:
                on_stop()  # event streams end now, rather than hold the stop up
            super().handle_exit(sig, frame)

    signal.signal(signal.SIGTERM, _raise_stop)  # so the workers are stopped and the folder let go

    # Event streams stay open while their jobs run: on a stop, give them a few seconds, then close them.
    config = uvicorn.Config(
        app,
        log_level="info" if log_requests else "warning",
        access_log=log_requests,
        timeout_graceful_shutdown=STOP_GRACE_S,
    )
    Uvicorn(config).run(sockets=[sock])


def cmd_keys_create(args: argparse.Namespace) -> int:
    store = _store(args, create=True)
    key = store.create_key(args.name, max_queued=args.max_queued, per_minute=args.per_minute)
    print(key)
    print(
        f"key '{args.name}' created ({args.max_queued} jobs queued, {args.per_minute} requests a minute); "
        "it is shown only this once: keep it. Send it as 'Authorization: Bearer KEY'.",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from ..server.store import iso

    store = _store(args, create=False)
    rows = store.list_keys()
    if args.json:
        out = [
            {
                "name": key.name,
                "id": key.id,
                "created_at": iso(key.created_at),
                "revoked_at": iso(key.revoked_at),
                "last_used_at": iso(key.last_used_at),
                "max_queued": key.max_queued,
                "per_minute": key.per_minute,
                "jobs": counts,
            }
            for key, counts in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        print("no API keys (the server is open to anyone who can reach it); create one: cinecube keys create NAME")
        return 0
    print(f"{'name':<20} {'key':<20} {'created':<20} {'state':<8} {'queued':>6} {'/min':>6} {'jobs':>6}")
    for key, counts in rows:
        state = "revoked" if key.revoked_at is not None else "active"
        created = (iso(key.created_at) or "")[:19].replace("T", " ")
        prefix = f"cc_{key.id}_..."
        jobs = sum(counts.values())
        print(f"{key.name:<20} {prefix:<20} {created:<20} {state:<8} {key.max_queued:>6} {key.per_minute:>6} {jobs:>6}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args, create=False)
    key = store.revoke_key(args.name)
    print(f"key '{key.name}' revoked: its requests are refused from now on (its jobs stay in the data folder)")
    return 0
