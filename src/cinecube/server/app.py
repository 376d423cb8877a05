"""The HTTP application: the /v1 API, API keys and per-key limits, progress events, the page.

    server = Server(data_dir, model=None, workers=1)   # opens the folder, recovers its jobs
    app = create_app(server)                            # FastAPI; the workers start with it

Every /v1 endpoint needs a key (`Authorization: Bearer KEY`) once any key exists; until then
the server is a single-user one, meant for loopback. A key sees only its own jobs and uploads:
anyone else's id is a 404, as is an id that never existed. Errors are JSON,
`{"error": code, "message": ..., "field": ..., "stage": ..., "category": ...}`, naming the
request field and its allowed values where there is one.
"""

import asyncio
import contextlib
import json
import math
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import CinecubeError
from ..safety.guard import SafetySettings
from .pool import WorkerPool
from .requests import JobRequest, Planner, RequestProblem, limits_text
from .store import LOCAL_KEY, TERMINAL, KeyRow, Store, StoreError, iso
from .uploads import UploadProblem, inspect, receive

MAX_BODY_BYTES = 1 * 2**20  # any request but an upload
EVENTS_MAX_S = 600.0  # an event stream ends after this; clients reconnect
EVENTS_POLL_S = 0.25
KEEPALIVE_S = 15.0
MEDIA_TYPES = {"mp4": "video/mp4", "gif": "image/gif", "png": "image/png"}


# ------------------------------------------------------------------------------------------
# Response bodies (they make the OpenAPI description)
# ------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="a code: unauthorized, not_found, invalid_request, prompt_refused, ...")
    message: str = Field(description="one line, naming the field and its allowed values where there is one")
    field: str | None = Field(None, description="the request field at fault")
    stage: str | None = Field(None, description="the safety stage that refused the request")
    category: str | None = Field(None, description="the prompt policy's category")


class Progress(BaseModel):
    done: int = Field(description="sampling steps done")
    total: int = Field(description="sampling steps in all (0 until sampling starts)")
    fraction: float
    stage: str = Field(description="queued, starting, reading inputs, preparing, sampling, publishing, ...")


class HistoryEvent(BaseModel):
    time: str
    event: str
    detail: str


class InputRef(BaseModel):
    upload_id: str
    name: str
    relationship: str = Field(description="parentOf (extended or edited) or componentOf (placed in it)")


class JobError(BaseModel):
    message: str
    stage: str | None = None


class JobResult(BaseModel):
    url: str
    media_type: str
    bytes: int
    sha256: str
    frames: int
    height: int
    width: int
    fps: float


class JobProvenance(BaseModel):
    watermark_payload: str | None = Field(None, description="as `cinecube verify` prints it")
    audit_request_id: str | None = Field(None, description="the request id of the output's audit record")
    c2pa: str = Field(description="signed or skipped")
    skipped_stages: list[str]
    stages: list[dict[str, Any]]


class JobView(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    mode: str
    prompt: str
    request: dict[str, Any] = Field(description="the checked request the worker runs")
    inputs: list[InputRef]
    progress: Progress
    queue_position: int | None = Field(None, description="1 = the next job a worker takes")
    cancel_requested: bool
    attempts: int = Field(description="how many times a worker started it (2 after a retry)")
    history: list[HistoryEvent]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str
    error: JobError | None = None
    result: JobResult | None = None
    provenance: JobProvenance | None = None


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page")


class UploadView(BaseModel):
    id: str
    kind: Literal["image", "video"]
    media_type: str
    name: str
    bytes: int
    sha256: str
    frames: int
    height: int
    width: int
    fps: float
    created_at: str


class UploadList(BaseModel):
    uploads: list[UploadView]


class KeyInfo(BaseModel):
    name: str
    max_queued: int
    per_minute: int
    active_jobs: int
    keys_required: bool


class WorkerInfo(BaseModel):
    slot: str
    running: bool
    failed: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    workers: list[WorkerInfo]
    queued: int
    running: int


class VerifyReport(BaseModel):
    file: str
    verified: bool
    verified_by: str | None = None
    verdict: str
    c2pa: dict[str, Any]
    watermark: dict[str, Any]
    detector: dict[str, Any]
    media: dict[str, Any]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "refused by a safety stage (the prompt policy: with its category)",
        401: "no API key, or one that is unknown or revoked",
        404: "no such resource for this key",
        409: "the job is not in a state that allows this",
        413: "the upload or request is too large",
        415: "the upload's type is not allowed",
        422: "a request field is not allowed (named, with its allowed values)",
        429: "over this key's limit of requests a minute or of jobs queued (see Retry-After)",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


# ------------------------------------------------------------------------------------------
# The server's state
# ------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.headers = headers or {}
        self.extra = extra


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to a minute's worth."""

    def __init__(self):
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, per_minute: int) -> int:
        """0 when the request may go ahead, else the seconds until it may."""
        rate = per_minute / 60.0
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), t))
            tokens = min(float(per_minute), tokens + (t - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0
            self._buckets[key] = (tokens, t)
            return max(1, math.ceil((1.0 - tokens) / rate))


class Server:
    """A data folder opened for serving: its lock held, its jobs recovered, its workers ready
    to start. `close()` stops the workers and lets the folder go."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        model: str | None = None,
        workers: int = 1,
        safety: SafetySettings | None = None,
        device: str = "cpu",
        threads: int = 0,
        max_upload_mb: float = 32,
        log=None,
    ):
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise StoreError(f"--data-dir '{data_dir}' is a file; give a folder")
        self.safety = safety or SafetySettings()
        # The model folder first: a typo fails before the data folder is created or any job touched.
        self.planner = Planner(model, self.safety)
        self.store = Store(data_dir)
        self.store.acquire_server_lock()
        try:
            self.recovered = self.store.recover()
            self.pool = WorkerPool(
                self.store,
                workers,
                model=str(self.planner.model_path) if model is not None else None,
                safety=self.safety,
                device=device,
                threads=threads,
                log=log,
            )
        except BaseException:
            self.store.release_server_lock()
            raise
        self.limiter = RateLimiter()
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self._touched: dict[str, float] = {}
        self._verify_slots = threading.BoundedSemaphore(2)
        self.stopping = threading.Event()  # set when the server begins to stop: event streams end

    def close(self) -> None:
        self.pool.stop()
        self.store.release_server_lock()

    def touch(self, key: KeyRow) -> None:
        """Record that a key was used, at most once a minute (a write per request would cost)."""
        t = time.monotonic()
        if key.id != LOCAL_KEY.id and t - self._touched.get(key.id, -1e9) > 60:
            self._touched[key.id] = t
            self.store.touch_key(key)


# ------------------------------------------------------------------------------------------
# Views
# ------------------------------------------------------------------------------------------


def job_view(job: dict[str, Any], store: Store) -> dict[str, Any]:
    done, total = job["progress_done"], job["progress_total"]
    result = None
    if job["status"] == "succeeded" and job["result"]:
        r = job["result"]
        fmt = r["file"].rsplit(".", 1)[-1]
        result = {
            "url": f"/v1/jobs/{job['id']}/result",
            "media_type": MEDIA_TYPES.get(fmt, "application/octet-stream"),
            **{k: r[k] for k in ("bytes", "sha256", "frames", "height", "width", "fps")},
        }
    provenance = None
    if job["status"] == "succeeded" and job["provenance"] is not None:
        p = job["provenance"]
        provenance = {
            "watermark_payload": job["watermark_payload"],
            "audit_request_id": job["audit_request_id"],
            "c2pa": "skipped" if "c2pa" in p["skipped"] else "signed",
            "skipped_stages": p["skipped"],
            "stages": p["stages"],
        }
    return {
        "id": job["id"],
        "status": job["status"],
        "mode": job["mode"],
        "prompt": job["prompt"],
        "request": job["params"],
        "inputs": [
            {"upload_id": i["upload_id"], "name": i["name"], "relationship": i["relationship"]} for i in job["inputs"]
        ],
        "progress": {
            "done": done,
            "total": total,
            "fraction": 1.0 if job["status"] == "succeeded" else (done / total if total else 0.0),
            "stage": job["stage"],
        },
        "queue_position": store.queue_position(job),
        "cancel_requested": job["cancel_requested_at"] is not None,
        "attempts": job["attempts"],
        "history": job["history"] or [],
        "created_at": iso(job["created_at"]),
        "started_at": iso(job["started_at"]),
        "finished_at": iso(job["finished_at"]),
        "updated_at": iso(job["updated_at"]),
        "error": {"message": job["error"], "stage": job["error_stage"]} if job["error"] else None,
        "result": result,
        "provenance": provenance,
    }


def upload_view(upload: dict[str, Any]) -> dict[str, Any]:
    view = {k: upload[k] for k in ("id", "media_type", "name", "bytes", "sha256", "frames", "height", "width", "fps")}
    return {**view, "kind": "image" if upload["frames"] == 1 else "video", "created_at": iso(upload["created_at"])}


# ------------------------------------------------------------------------------------------
# The application
# ------------------------------------------------------------------------------------------


class _BodyLimit:
    """Refuse (413) a request body over MAX_BODY_BYTES, except uploads (bounded by their own limit)."""

    def __init__(self, app, exempt: tuple[str, ...]):
        self.app, self.exempt = app, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return await _send_json(send, 413, "too_large", f"the request body is over {MAX_BODY_BYTES} bytes")
        seen = 0

        async def bounded():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    raise ApiError(413, "too_large", f"the request body is over {MAX_BODY_BYTES} bytes")
            return message

        return await self.app(scope, bounded, send)


async def _send_json(send, status: int, error: str, message: str) -> None:
    body = json.dumps(ErrorBody(error=error, message=message).model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _static_dir() -> Path:
    return Path(str(resources.files("cinecube.server") / "static"))


def create_app(server: Server) -> FastAPI:
    store, planner = server.store, server.planner

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        server.pool.start()
        try:
            yield
        finally:
            server.stopping.set()
            await run_in_threadpool(server.pool.stop)

    app = FastAPI(
        title="cinecube",
        version=__version__,
        description="Text-to-video jobs with provenance: create, follow, download, cancel, verify. "
        "Every /v1 endpoint needs `Authorization: Bearer KEY` once a key exists (`cinecube keys create NAME`).",
        lifespan=lifespan,
        dependencies=[Depends(_known_query_only)],
    )
    app.add_middleware(_BodyLimit, exempt=("/v1/uploads", "/v1/verify"))
    bearer = HTTPBearer(auto_error=False, description="a key from `cinecube keys create NAME`")

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        body = ErrorBody(error=exc.error, message=exc.message, **exc.extra).model_dump()
        return JSONResponse(body, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problem = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(p) for p in problem.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        if problem.get("type") in ("json_invalid", "model_attributes_type", "dict_type"):
            field = None  # the body as a whole; its loc is a character position
        message = _validation_message(field, problem, planner.sizes)
        return JSONResponse(ErrorBody(error="invalid_request", message=message, field=field).model_dump(), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = ErrorBody(error=code, message=str(exc.detail)).model_dump()
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    # ------------------------------------------------------------------ who is asking

    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> KeyRow:
        if not store.keys_configured():
            key = LOCAL_KEY
        else:
            if credentials is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "this endpoint needs an API key: send 'Authorization: Bearer KEY' "
                    "(an administrator creates one with `cinecube keys create NAME`)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            key = store.authenticate(credentials.credentials)
            if key is None:
                raise ApiError(
                    401, "unauthorized", "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
                )
        wait = server.limiter.take(key.id, key.per_minute)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"over this key's limit of {key.per_minute} requests a minute; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        server.touch(key)
        return key

    Caller = Annotated[KeyRow, Depends(caller)]

    def owned_job(key: KeyRow, job_id: str) -> dict[str, Any]:
        job = store.get_job(key.owner, job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job '{job_id[:64]}' for this key")
        return job

    # ------------------------------------------------------------------ health, model, page

    @app.get("/healthz", response_model=Health, tags=["server"], summary="Is the server up (no key needed)")
    def healthz() -> dict[str, Any]:
        counts = store.counts()
        workers = server.pool.status()
        degraded = bool(server.pool.failed) or (workers and not any(w["running"] for w in workers))
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "workers": [{"slot": w["slot"], "running": w["running"], "failed": w["failed"]} for w in workers],
            "queued": counts["queued"],
            "running": counts["running"],
        }

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((_static_dir() / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.get(
        "/v1/model",
        tags=["server"],
        summary="The model: allowed sizes, limits and defaults",
        responses=_errors(401, 429),
    )
    def model_info(key: Caller) -> dict[str, Any]:
        return planner.describe()

    @app.get(
        "/v1/me",
        response_model=KeyInfo,
        tags=["server"],
        summary="This key: its limits and jobs",
        responses=_errors(401, 429),
    )
    def me(key: Caller) -> dict[str, Any]:
        return {
            "name": key.name,
            "max_queued": key.max_queued,
            "per_minute": key.per_minute,
            "active_jobs": store.active_jobs(key.owner),
            "keys_required": store.keys_configured(),
        }

    # ------------------------------------------------------------------ jobs

    @app.post(
        "/v1/jobs",
        status_code=201,
        response_model=JobView,
        tags=["jobs"],
        summary="Queue a generation job",
        responses=_errors(400, 401, 413, 422, 429),
    )
    def create_job(body: JobRequest, key: Caller) -> dict[str, Any]:
        uploads = {}
        for field in ("image", "video", "second_video"):
            upload_id = getattr(body, field)
            if upload_id is not None:
                upload = store.get_upload(key.owner, upload_id)
                if upload is None:
                    raise ApiError(
                        422,
                        "invalid_request",
                        f"{field} '{upload_id[:64]}' is not one of this key's uploads (POST /v1/uploads first)",
                        field=field,
                    )
                uploads[field] = upload
        if store.active_jobs(key.owner) >= key.max_queued:
            raise _queue_full(key)
        try:
            plan = planner.plan(body, uploads)
        except RequestProblem as problem:
            raise ApiError(
                problem.status,
                "prompt_refused" if problem.status == 400 else "invalid_request",
                str(problem),
                field=problem.field,
                stage=problem.stage,
                category=problem.category,
            ) from None
        job = store.create_job(
            key.owner,
            mode=plan.mode,
            prompt=plan.prompt,
            params=plan.params,
            uploads=plan.uploads,
            max_queued=key.max_queued,
        )
        if job is None:
            raise _queue_full(key)
        return job_view(job, store)

    def _queue_full(key: KeyRow) -> ApiError:
        return ApiError(
            429,
            "too_many_jobs",
            f"this key has {key.max_queued} jobs queued or running, its limit; wait for one to finish",
            headers={"Retry-After": "10"},
        )

    @app.get(
        "/v1/jobs",
        response_model=JobList,
        tags=["jobs"],
        summary="This key's jobs, newest first",
        responses=_errors(401, 422, 429),
    )
    def list_jobs(
        key: Caller,
        limit: int = Query(20, ge=1, le=100),
        cursor: str | None = Query(None, max_length=20, description="next_cursor of the previous page"),
        status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    ) -> dict[str, Any]:
        before = None
        if cursor is not None:
            if not cursor.isdigit() or not 0 < int(cursor) < 2**62:
                raise ApiError(422, "invalid_request", f"cursor {cursor!r} is not one this server gave", field="cursor")
            before = int(cursor)
        jobs, next_seq = store.list_jobs(key.owner, limit=limit, before=before, status=status)
        return {"jobs": [job_view(j, store) for j in jobs], "next_cursor": str(next_seq) if next_seq else None}

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobView,
        tags=["jobs"],
        summary="A job: status, progress, result",
        responses=_errors(401, 404, 429),
    )
    def get_job(job_id: str, key: Caller) -> dict[str, Any]:
        return job_view(owned_job(key, job_id), store)

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        response_model=JobView,
        tags=["jobs"],
        summary="Cancel a queued job, or stop a running one",
        responses=_errors(401, 404, 409, 413, 429),
    )
    def cancel_job(job_id: str, key: Caller) -> dict[str, Any]:
        owned_job(key, job_id)
        job = store.cancel_job(key.owner, job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job '{job_id[:64]}' for this key")
        if job["status"] in TERMINAL and job["status"] != "cancelled":
            raise ApiError(409, "finished", f"job {job_id} has {job['status']} already; there is nothing to cancel")
        return job_view(job, store)

    @app.delete(
        "/v1/jobs/{job_id}",
        status_code=204,
        response_class=Response,
        tags=["jobs"],
        summary="Delete a finished job and its files",
        responses=_errors(401, 404, 409, 429),
    )
    def delete_job(job_id: str, key: Caller) -> Response:
        status = store.delete_job(key.owner, job_id)
        if status == "missing":
            raise ApiError(404, "not_found", f"no job '{job_id[:64]}' for this key")
        if status is not None:
            raise ApiError(409, "not_finished", f"job {job_id} is {status}; cancel it first, then delete it")
        return Response(status_code=204)

    @app.get(
        "/v1/jobs/{job_id}/result",
        tags=["jobs"],
        summary="Download the result (with its watermark and signed C2PA manifest)",
        response_class=FileResponse,
        responses={
            200: {
                "description": "the video or image",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()},
            },
            **_errors(401, 404, 409, 429),
        },
    )
    def result(job_id: str, key: Caller) -> FileResponse:
        job = owned_job(key, job_id)
        if job["status"] != "succeeded":
            raise ApiError(409, "no_result", f"job {job_id} is {job['status']}; a result exists once it succeeded")
        path = store.path(job["result"]["file"])
        fmt = path.suffix.lstrip(".")
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"cinecube-{job_id[:12]}.{fmt}")

    @app.get(
        "/v1/jobs/{job_id}/events",
        tags=["jobs"],
        summary="Follow a job: server-sent events, one `job` event per change, until it ends",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "text/event-stream: `event: job` with the job as JSON data, at each change; "
                "the stream ends after the job ends (or after 10 minutes: reconnect)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(401, 404, 429),
        },
    )
    def events(job_id: str, request: Request, key: Caller) -> StreamingResponse:
        owned_job(key, job_id)
        return StreamingResponse(
            _event_stream(store, key.owner, job_id, request, server.stopping),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------------ uploads and verify

    upload_body = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    }

    @app.post(
        "/v1/uploads",
        status_code=201,
        response_model=UploadView,
        tags=["uploads"],
        summary="Upload an image or video to animate, extend, connect or edit",
        openapi_extra=upload_body,
        responses=_errors(401, 413, 415, 422, 429),
    )
    async def create_upload(request: Request, key: Caller) -> dict[str, Any]:
        received = await _receive(server, request)
        try:
            info = await run_in_threadpool(inspect, received.path)
        except UploadProblem as problem:
            received.path.unlink(missing_ok=True)
            raise ApiError(problem.status, "invalid_upload", str(problem), field=problem.field) from None
        from .store import new_id

        upload_id = new_id()
        record = {
            "id": upload_id,
            "kind": "image" if info["frames"] == 1 else "video",
            "media_type": received.media_type,
            "suffix": received.suffix,
            "name": received.name,
            "bytes": received.bytes,
            "sha256": received.sha256,
            **info,
        }
        os.replace(received.path, store.root / "uploads" / f"{upload_id}{received.suffix}")
        return upload_view(store.add_upload(key.owner, record))

    @app.get(
        "/v1/uploads",
        response_model=UploadList,
        tags=["uploads"],
        summary="This key's uploads, newest first",
        responses=_errors(401, 429),
    )
    def list_uploads(key: Caller) -> dict[str, Any]:
        return {"uploads": [upload_view(u) for u in store.list_uploads(key.owner)]}

    @app.get(
        "/v1/uploads/{upload_id}",
        response_model=UploadView,
        tags=["uploads"],
        summary="An upload",
        responses=_errors(401, 404, 429),
    )
    def get_upload(upload_id: str, key: Caller) -> dict[str, Any]:
        upload = store.get_upload(key.owner, upload_id)
        if upload is None:
            raise ApiError(404, "not_found", f"no upload '{upload_id[:64]}' for this key")
        return upload_view(upload)

    @app.delete(
        "/v1/uploads/{upload_id}",
        status_code=204,
        response_class=Response,
        tags=["uploads"],
        summary="Delete an upload (jobs made from it keep their copy)",
        responses=_errors(401, 404, 429),
    )
    def delete_upload(upload_id: str, key: Caller) -> Response:
        if not store.delete_upload(key.owner, upload_id):
            raise ApiError(404, "not_found", f"no upload '{upload_id[:64]}' for this key")
        return Response(status_code=204)

    @app.post(
        "/v1/verify",
        response_model=VerifyReport,
        tags=["verify"],
        summary="Was this file made by cinecube? The `cinecube verify` report",
        openapi_extra=upload_body,
        responses=_errors(401, 413, 415, 422, 429),
    )
    async def verify(request: Request, key: Caller) -> dict[str, Any]:
        received = await _receive(server, request)
        try:
            report = await run_in_threadpool(_verify, server, received.path)
        finally:
            received.path.unlink(missing_ok=True)
        report["c2pa"] = {**report["c2pa"], "path": received.name}  # not the server's temporary name
        return {**report, "file": received.name}

    return app


def _known_query_only(request: Request) -> None:
    """A query parameter the endpoint does not take is refused (422), not silently ignored."""
    route = request.scope.get("route")
    if route is None or not request.query_params or not request.url.path.startswith("/v1/"):
        return
    allowed = getattr(route, "_cinecube_query", None)
    if allowed is None:

        def names(dependant) -> set[str]:
            return {p.alias for p in dependant.query_params}.union(*(names(d) for d in dependant.dependencies))

        allowed = names(route.dependant)
        route._cinecube_query = allowed
    for name in request.query_params:
        if name not in allowed:
            takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
            raise ApiError(422, "invalid_request", f"unknown query parameter {name[:64]!r}; {takes}", field=name[:64])


async def _receive(server: Server, request: Request):
    try:
        return await receive(
            request.headers.get("content-type", ""),
            request.stream(),
            server.store.root / "tmp",
            server.max_upload_bytes,
            request.headers.get("content-length"),
        )
    except UploadProblem as problem:
        raise ApiError(problem.status, "invalid_upload", str(problem), field=problem.field) from None


def _verify(server: Server, path: Path) -> dict[str, Any]:
    from ..commands.verify import verify_file

    with server._verify_slots:
        try:
            return verify_file(path)
        except CinecubeError as error:
            message = str(error).replace(f"'{path}'", "the file").replace(str(path), "the file")
            raise ApiError(422, "unreadable", message, field="file") from None


async def _event_stream(store: Store, owner: str, job_id: str, request: Request, stopping: threading.Event):
    """`event: job` whenever the job changes, a comment every KEEPALIVE_S, until it ends (or the
    server stops: the client reconnects)."""
    yield "retry: 2000\n\n"
    started = last_sent = time.monotonic()
    last_state = None
    number = 0
    while True:
        job = store.get_job(owner, job_id)
        if job is None:
            yield "event: deleted\ndata: {}\n\n"
            return
        view = job_view(job, store)
        state = (view["status"], view["progress"], view["queue_position"], view["cancel_requested"])
        if state != last_state:
            number += 1
            yield f"event: job\nid: {number}\ndata: {json.dumps(view)}\n\n"
            last_state, last_sent = state, time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if job["status"] in TERMINAL or time.monotonic() - started > EVENTS_MAX_S:
            return
        if stopping.is_set() or await request.is_disconnected():
            return
        await asyncio.sleep(EVENTS_POLL_S)


def _validation_message(field: str | None, problem: dict[str, Any], sizes: str) -> str:
    """A pydantic error in the pipeline's words: '<field> <value> is not allowed; <allowed>'."""
    kind = problem.get("type", "")
    name = field or "the request"
    value = problem.get("input")
    shown = repr(value) if not isinstance(value, str) or len(value) < 60 else repr(value[:57] + "...")
    allowed = limits_text(field or "", sizes)
    if kind == "missing":
        return f"{name} is required"
    if kind == "extra_forbidden":
        return f"{name} is not a request field; see the JobRequest schema in /openapi.json"
    if kind == "string_too_long" and field == "prompt":
        return f"prompt is {len(value)} characters long; {allowed}"
    if kind in ("json_invalid", "model_attributes_type", "dict_type"):
        return f"the request body is not a JSON object ({problem.get('msg', '')})"
    if allowed and not isinstance(value, dict | list):
        return f"{name} {shown} is not allowed; {allowed}"
    return f"{name}: {problem.get('msg', 'not allowed')}"
