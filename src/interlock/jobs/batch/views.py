"""What clients see: OpenAI's ``file`` and ``batch`` objects, and the output file lines.

The shapes follow OpenAI's API reference closely enough that the official SDK parses
them (``client.files.retrieve``, ``client.batches.retrieve``); times are Unix seconds.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from interlock.jobs.batch.store import Batch, FileRecord


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_view(rec: FileRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "object": "file",
        "bytes": rec.bytes,
        "created_at": int(rec.created_at),
        "filename": rec.filename,
        "purpose": rec.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def batch_view(b: Batch) -> dict[str, Any]:
    return {
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": {"object": "list", "data": b.errors} if b.errors else None,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status,
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": int(b.created_at),
        "in_progress_at": _ts(b.times.get("in_progress_at")),
        "expires_at": int(b.expires_at),
        "finalizing_at": _ts(b.times.get("finalizing_at")),
        "completed_at": _ts(b.times.get("completed_at")),
        "failed_at": _ts(b.times.get("failed_at")),
        "expired_at": _ts(b.times.get("expired_at")),
        "cancelling_at": _ts(b.times.get("cancelling_at")),
        "cancelled_at": _ts(b.times.get("cancelled_at")),
        "request_counts": {"total": b.total, "completed": b.completed, "failed": b.failed},
        "metadata": b.metadata,
    }


def request_line_id(batch_id: str, line: int) -> str:
    """A stable id for one line's result (the same if the finalizer runs twice)."""
    digest = hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:24]
    return "batch_req_" + digest


def output_line(
    batch_id: str,
    line: int,
    custom_id: str,
    *,
    status_code: int | None = None,
    request_id: str | None = None,
    body: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> str:
    """One line of an output or error file, in OpenAI's format: ``response`` for a
    request that got an HTTP answer (also an error answer), ``error`` for one that never
    ran (cancelled, expired)."""
    response = (
        None
        if status_code is None
        else {"status_code": status_code, "request_id": request_id, "body": body}
    )
    return orjson.dumps(
        {
            "id": request_line_id(batch_id, line),
            "custom_id": custom_id,
            "response": response,
            "error": error,
        }
    ).decode()
