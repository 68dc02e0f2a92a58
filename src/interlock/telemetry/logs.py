"""Structured logs: one JSON object per line, one line per request, secrets removed.

Every record Interlock logs goes through :class:`JsonFormatter`, which runs the message,
the exception text and every string field through the gateway's :class:`Redactor`
(provider keys, the master key, webhook secrets, anything shaped like a key). The
request line itself (logger ``interlock.access``) is built from ids and labels only:
the key's id, never the key; the prompt only when ``telemetry.logs.bodies`` is on, and
then redacted and truncated.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from interlock.settings import LogSettings
from interlock.telemetry.redact import Redactor
from interlock.telemetry.requestinfo import RequestInfo

ACCESS = "interlock.access"
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get("fields")
        if isinstance(fields, dict):
            out.update(fields)  # the request line: its fields, ready-made
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD and not key.startswith("_"):
                    out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # One redaction pass over the finished line covers every field at once.
        return self._redact(orjson.dumps(out, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


_HANDLER_FLAG = "_interlock_handler"


def configure(cfg: LogSettings, redact: Redactor) -> None:
    """Send the ``interlock`` loggers to stderr in the configured format (idempotent)."""
    root = logging.getLogger("interlock")
    for h in list(root.handlers):
        if getattr(h, _HANDLER_FLAG, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_FLAG, cfg.format)
    handler.setFormatter(JsonFormatter(redact) if cfg.format == "json" else TextFormatter(redact))
    root.addHandler(handler)
    root.setLevel(cfg.level.upper())
    root.propagate = False
    access = logging.getLogger(ACCESS)
    access.disabled = not cfg.enabled


class AccessLog:
    """Writes the per-request line. With the default setup (our JSON handler on the
    ``interlock`` logger, nothing added by the operator) the line is serialised and
    written straight to the handler's stream: a LogRecord and the logging machinery cost
    more than the line itself, on every request. Any other setup goes through logging.
    The fields are ids, labels and numbers (the opt-in body is redacted when taken), so
    the fast path needs no redaction pass."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(ACCESS)
        self._parent = logging.getLogger("interlock")

    def enabled(self) -> bool:
        return not self._logger.disabled and self._logger.isEnabledFor(logging.INFO)

    def emit(self, fields: dict[str, Any]) -> None:
        lg = self._logger
        handlers = self._parent.handlers
        if (
            not lg.handlers
            and len(handlers) == 1
            and getattr(handlers[0], _HANDLER_FLAG, False) == "json"
        ):
            h = handlers[0]
            assert isinstance(h, logging.StreamHandler)
            head = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "level": "info", "logger": ACCESS, "msg": "request"}  # fmt: skip
            line = orjson.dumps(head | fields, default=str) + b"\n"
            h.acquire()
            try:
                h.stream.write(line.decode())
                h.stream.flush()
            finally:
                h.release()
            return
        lg.info("request", extra={"fields": fields})


def request_fields(
    info: RequestInfo, method: str, status: int, latency_s: float, error_type: str | None
) -> dict[str, Any]:
    """The fields of one request's line (ids and labels only; see the module docstring)."""
    fields: dict[str, Any] = {
        "event": "request",
        "request_id": info.request_id,
        "method": method,
        "route": info.route,
        "status": status,
        "latency_ms": round(latency_s * 1000, 3),
        "outcome": info.outcome or ("ok" if status < 400 else "error"),
    }
    if error_type is not None:
        fields["error_type"] = error_type
    if info.trace_id is not None:
        fields["trace_id"] = info.trace_id
    if info.key_id is not None:
        fields["key_id"] = info.key_id
        fields["user"], fields["team"] = info.user, info.team
    if info.model is not None:
        fields.update(
            model=info.model,
            deployment=info.deployment,
            provider=info.provider,
            cache=info.cache,
            cost_usd=info.cost_usd,
            prompt_tokens=info.prompt_tokens,
            completion_tokens=info.completion_tokens,
            attempts=info.attempts,
            stream=info.stream,
        )
        if info.fallback:
            fields["fallback"] = info.fallback
    if info.body is not None:
        fields["body"] = info.body
    return fields


def body_excerpt(body: bytes, redact: Redactor, limit: int) -> str:
    """The request body for an opt-in log line: decoded, redacted, then truncated."""
    return redact(body.decode("utf-8", "replace"))[:limit]
