"""Receiving images and videos: streamed into the data folder, bounded, typed and decoded.

An upload is a multipart form with one file field, `file` (what `curl -F file=@clip.mp4`
sends). It is streamed into `DATA/tmp/` and refused as soon as it passes the size limit
(HTTP 413), so nothing is written outside the data folder and nothing unbounded is held. Its
type comes from its first bytes, never from its name or the client's content type (PNG, JPEG,
GIF, MP4/MOV, WebM; else 415); its size in pixels and frames is read from the header before
any decoding, and then it is decoded whole, as a worker would read it (else 422).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CinecubeError

# (magic test, media type, suffix read_video dispatches on)
_TYPES = (
    (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), "image/png", ".png"),
    (lambda b: b.startswith(b"\xff\xd8\xff"), "image/jpeg", ".jpg"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "image/gif", ".gif"),
    (lambda b: b[4:8] == b"ftyp", "video/mp4", ".mp4"),
    (lambda b: b.startswith(b"\x1a\x45\xdf\xa3"), "video/webm", ".webm"),
)
ALLOWED_TYPES = "png, jpeg, gif, mp4 (or mov) and webm"
MAX_SIDE = 4096  # pixels per side of an uploaded picture or video
MAX_FRAMES = 1024
MAX_PIXELS = 64 * 2**20  # frames x height x width: 192 MiB decoded at most


class UploadProblem(CinecubeError):
    """An upload refused: `status` is the HTTP status (413 too big, 415 type, 422 content)."""

    def __init__(self, message: str, status: int = 422, field: str | None = "file"):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Received:
    path: Path  # in DATA/tmp, the caller moves or removes it
    name: str  # the client's file name, for display only
    bytes: int
    sha256: str
    media_type: str
    suffix: str


def media_type_of(head: bytes) -> tuple[str, str] | None:
    for test, media_type, suffix in _TYPES:
        if test(head):
            return media_type, suffix
    return None


class _FormReader:
    """Streams the `file` part of a multipart form to `target`, counting bytes."""

    def __init__(self, boundary: bytes, target: Path, limit: int):
        from python_multipart.multipart import MultipartParser

        self.target, self.limit = target, limit
        self.size, self.digest, self.head = 0, hashlib.sha256(), b""
        self.name: str | None = None
        self.found = False
        self._file = None
        self._header_field, self._header_value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self.parser = MultipartParser(boundary, callbacks)

    def _add(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _part_begin(self) -> None:
        self._headers, self._in_file = {}, False

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:
            self.found, self._in_file = True, True
            self.name = options.get(b"filename", b"upload").decode("utf-8", "replace")[-200:]
            self._file = open(self.target, "xb")  # noqa: SIM115 (closed in _part_end or by close())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadProblem(f"file is over the upload limit of {self.limit / 2**20:g} MiB", 413)
        if len(self.head) < 16:
            self.head += chunk[: 16 - len(self.head)]
        self.digest.update(chunk)
        self._file.write(chunk)

    def _part_end(self) -> None:
        if self._in_file:
            self._file.close()
            self._in_file = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive(
    content_type: str, body: AsyncIterator[bytes], tmp_dir: Path, limit: int, content_length: str | None
) -> Received:
    """Stream the `file` field of a multipart form into `tmp_dir`; check its size and type."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadProblem("send the file as multipart/form-data in a field named 'file' (curl -F file=@NAME)", 415)
    if content_length is not None and content_length.isdigit() and int(content_length) > limit + 64 * 1024:
        raise UploadProblem(f"file is over the upload limit of {limit / 2**20:g} MiB", 413)
    target = tmp_dir / f"upload-{os.getpid()}-{secrets.token_hex(8)}"
    reader = _FormReader(options[b"boundary"], target, limit)
    try:
        try:
            async for chunk in body:
                reader.parser.write(chunk)
            reader.parser.finalize()
        except UploadProblem:
            raise
        except Exception as exc:  # the multipart parser's own errors: a malformed form
            raise UploadProblem(f"the form could not be read ({type(exc).__name__}: {exc})", 422) from None
        finally:
            reader.close()
        if not reader.found:
            raise UploadProblem("the form has no field named 'file' with the file in it", 422)
        if reader.size == 0:
            raise UploadProblem("file is empty", 422)
        found = media_type_of(reader.head)
        if found is None:
            raise UploadProblem(f"file type not allowed: upload {ALLOWED_TYPES}", 415)
        media_type, suffix = found
        final = target.with_name(target.name + suffix)  # read_video goes by the suffix
        os.replace(target, final)
        return Received(final, reader.name or "upload", reader.size, reader.digest.hexdigest(), media_type, suffix)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def inspect(path: Path) -> dict:
    """Frames, height, width and fps of a received file, decoded whole; UploadProblem when it
    is too large or does not decode. Blocking: run it in a thread."""
    from ..video_io import read_video, video_info

    try:
        info = video_info(path)
    except CinecubeError as error:
        raise UploadProblem(_without_path(str(error), path)) from None
    frames, height, width = int(info["frames"]), int(info["height"]), int(info["width"])
    if max(height, width) > MAX_SIDE or frames > MAX_FRAMES or frames * height * width > MAX_PIXELS:
        raise UploadProblem(
            f"file is {width}x{height} with {frames} frame(s); uploads may have sides up to {MAX_SIDE} pixels, "
            f"up to {MAX_FRAMES} frames and {MAX_PIXELS // 2**20} Mpixels in all",
            413,
        )
    try:
        decoded, fps = read_video(path)
    except CinecubeError as error:
        raise UploadProblem(_without_path(str(error), path)) from None
    t, h, w = decoded.shape[:3]
    if t * h * w > MAX_PIXELS:
        raise UploadProblem(f"file decodes to {t} frames of {w}x{h}, over {MAX_PIXELS // 2**20} Mpixels", 413)
    return {"frames": int(t), "height": int(h), "width": int(w), "fps": float(fps) if fps and fps > 0 else 8.0}


def _without_path(message: str, path: Path) -> str:
    """A video_io message without the server's temporary path in it."""
    with contextlib.suppress(ValueError):
        message = message.replace(f"'{path}'", "the file").replace(str(path), "the file")
    return message
