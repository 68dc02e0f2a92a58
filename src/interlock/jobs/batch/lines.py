"""Batch input files: JSONL, one request per line, checked line by line at upload.

Each line is ``{"custom_id": str, "method": "POST", "url": <endpoint>, "body": {...}}``
(OpenAI's batch input format). Everything is checked when the file is uploaded, so a bad
file is one ``400 invalid_batch_file`` listing its first bad lines (line numbers from 1)
rather than a batch that fails hours later. The body check is a callable handed in by
the API layer (the synchronous route's own validation and the key's access to the
model), so this module stays below the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.errors import InterlockError, InvalidRequest

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions")
LINE_FIELDS = frozenset({"custom_id", "method", "url", "body"})
MAX_CUSTOM_ID = 512
MAX_REPORTED = 20  # bad lines listed in one 400

# (endpoint, body) -> None; raises an InterlockError for a bad body.
LineCheck = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based line number in the file
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    code: str
    message: str
    param: str | None = None

    def view(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message, "param": self.param}


class InvalidBatchFile(InvalidRequest):
    """A file with bad lines: a 400 whose body lists the first :data:`MAX_REPORTED`."""

    code = "invalid_batch_file"

    def __init__(self, errors: list[LineError], bad_lines: int) -> None:
        first = errors[0]
        more = f" (and {bad_lines - 1} more bad lines)" if bad_lines > 1 else ""
        super().__init__(
            f"line {first.line}: {first.message}{more}; see 'lines' for the first {len(errors)}",
            param="file",
        )
        self.lines = errors
        self.bad_lines = bad_lines


def _check_line(number: int, raw: bytes, check: LineCheck | None) -> Line:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _LineProblem("invalid_json", "the line is not valid JSON") from None
    if not isinstance(data, dict):
        raise _LineProblem("invalid_json", "the line must be a JSON object")
    for name in data:
        if name not in LINE_FIELDS:
            raise _LineProblem("unknown_field", f"unknown field '{str(name)[:64]}'", name[:64])
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise _LineProblem(
            "invalid_custom_id",
            f"'custom_id' must be a non-empty string of at most {MAX_CUSTOM_ID} characters",
            "custom_id",
        )
    if data.get("method") != "POST":
        raise _LineProblem("invalid_method", "'method' must be \"POST\"", "method")
    url = data.get("url")
    if url not in ENDPOINTS:
        raise _LineProblem("invalid_url", f"'url' must be one of {list(ENDPOINTS)}", "url")
    body = data.get("body")
    if not isinstance(body, dict):
        raise _LineProblem("invalid_body", "'body' must be the request object for 'url'", "body")
    if check is not None:
        try:
            check(url, body)
        except InterlockError as err:
            param = err.param or "body"
            if not param.startswith("body"):
                param = "body." + param
            raise _LineProblem(err.code, err.message, param) from None
    return Line(number, custom_id, url, body)


class _LineProblem(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def parse(data: bytes, *, max_lines: int, check: LineCheck | None = None) -> list[Line]:
    """The file's requests, or :class:`InvalidBatchFile` naming the first bad lines.

    Blank lines are skipped (a trailing newline is common); ``custom_id`` must be unique.
    """
    lines: list[Line] = []
    errors: list[LineError] = []
    bad = 0
    seen: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) + bad >= max_lines:
            raise InvalidRequest(
                f"the file has more than {max_lines} requests (jobs.batch.max_lines)",
                code="too_many_lines",
                param="file",
            )
        try:
            line = _check_line(number, raw, check)
            if line.custom_id in seen:
                raise _LineProblem(
                    "duplicate_custom_id",
                    f"'custom_id' {line.custom_id[:64]!r} appears on an earlier line",
                    "custom_id",
                )
        except _LineProblem as p:
            bad += 1
            if len(errors) < MAX_REPORTED:
                errors.append(LineError(number, p.code, p.message, p.param))
            continue
        seen.add(line.custom_id)
        lines.append(line)
    if errors:
        raise InvalidBatchFile(errors, bad)
    if not lines:
        raise InvalidRequest("the file has no requests", code="empty_file", param="file")
    return lines
