"""A small, bounded ``multipart/form-data`` parser for file uploads (``POST /v1/files``).

Why not a library: the body is already read whole and capped by the route
(``jobs.batch.max_file_bytes`` plus a little), so all that is needed is splitting on
the boundary with ``bytes.find`` — linear, no temporary files, no new dependency.
Only what the upload route needs is understood: ``Content-Disposition`` names and
filenames; part headers are capped; a malformed body is a ``400 invalid_multipart``.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.errors import InvalidRequest, UnsupportedMediaType

MAX_PARTS = 16
MAX_HEADER_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(f"malformed multipart body: {message}", code="invalid_multipart")


def boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 415 for anything else."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            "Content-Type must be multipart/form-data (fields 'purpose' and 'file')"
        )
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 200:
                return value.encode("latin-1")
    raise _bad("the Content-Type has no boundary")


def _disposition(headers: bytes) -> tuple[str, str | None]:
    for raw in headers.split(b"\r\n"):
        key, _, value = raw.decode("utf-8", "replace").partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        name: str | None = None
        filename: str | None = None
        for param in value.split(";")[1:]:
            k, _, v = param.strip().partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            if k.strip().lower() == "name":
                name = v
            elif k.strip().lower() == "filename":
                filename = v
        if name is None:
            break
        return name, filename
    raise _bad("a part has no Content-Disposition name")


def _next_delimiter(body: bytes, marker: bytes, start: int) -> int:
    """Where the part starting at ``start`` ends: the next CRLF--boundary that is followed
    by CRLF or ``--`` (a boundary-like run inside the data is not a delimiter)."""
    while True:
        end = body.find(marker, start)
        if end < 0:
            raise _bad("the closing boundary is missing")
        after = body[end + len(marker) : end + len(marker) + 2]
        if after in (b"\r\n", b"--"):
            return end
        start = end + 1


def parse(body: bytes, content_type: str | None) -> dict[str, Part]:
    """The parts by name (the first part of each name wins)."""
    delim = b"--" + boundary(content_type)
    pos = body.find(delim)
    if pos < 0:
        raise _bad("no boundary found")
    parts: dict[str, Part] = {}
    pos += len(delim)
    for _ in range(MAX_PARTS + 1):
        if body[pos : pos + 2] == b"--":
            return parts
        if body[pos : pos + 2] != b"\r\n":
            raise _bad("expected CRLF after a boundary")
        head_end = body.find(b"\r\n\r\n", pos + 2, pos + 2 + MAX_HEADER_BYTES)
        if head_end < 0:
            raise _bad("part headers are missing or too long")
        name, filename = _disposition(body[pos + 2 : head_end])
        end = _next_delimiter(body, b"\r\n" + delim, head_end + 4)
        parts.setdefault(name, Part(name, filename, body[head_end + 4 : end]))
        pos = end + 2 + len(delim)
    raise _bad(f"more than {MAX_PARTS} parts")
