"""One error tree for the whole gateway, mapped to HTTP and to the OpenAI error body here.

    InterlockError                       500 internal_error (never leaks details)
    ├── ClientError                      400 invalid_request_error
    │   ├── InvalidRequest               400 (code names the problem, param names the field)
    │   ├── UnsupportedMediaType         415 unsupported_media_type
    │   ├── PayloadTooLarge              413 payload_too_large
    │   ├── AuthenticationFailed         401 invalid_api_key
    │   ├── PermissionDenied             403 permission_denied / model_not_allowed
    │   ├── NotFound                     404 not_found / model_not_found
    │   ├── MethodNotAllowed             405 method_not_allowed
    │   └── RequestTimeout               408 request_timeout (a body or head sent too slowly)
    ├── RateLimited                      429 rate_limited (Retry-After)
    ├── ServiceUnavailable               503 service_unavailable / circuit_open (Retry-After)
    │   └── Degraded                     503 degraded (the degradation ladder refused it)
    └── UpstreamError                    502 upstream_error
        ├── UpstreamRateLimited          429 upstream_rate_limited (Retry-After kept)
        ├── UpstreamBadRequest           400 upstream_bad_request (provider said the input is wrong)
        ├── UpstreamUnavailable          502 upstream_unavailable (connect error, reset, 5xx)
        ├── UpstreamProtocolError        502 upstream_protocol_error (malformed answer)
        └── UpstreamTimeout              504 upstream_timeout (also a TimeoutError)
            └── DeadlineExceeded         504 deadline_exceeded (the client's own deadline)

Every refusal the gateway makes is one of these; ``api`` renders them with
:func:`error_body` and nothing else decides a status code.

Blame: ``blames_upstream`` says whether a failure is an upstream's that the gateway is
responsible for (a provider error, a provider timeout under the deployment's own
timeouts). Only those feed circuit breakers and the degradation ladder, so no client can
move state every tenant shares: client errors, validation failures, a client's own
deadline, disconnects, the gateway's fail-closed refusals (budget state unavailable,
rate limited, queue full, draining, degraded...) and internal errors (a 500 is a bug:
logged and counted, never a reason to degrade others) all leave it False. It is a class
attribute, and an instance may clear it where the same class also describes a
consequence rather than a cause (the executor's "every deployment is cooling down").
"""

from __future__ import annotations

from typing import Any

import orjson


class InterlockError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"
    blames_upstream: bool = False  # see the module docstring: what may feed shared state

    def __init__(
        self,
        message: str = "internal error",
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.retry_after = retry_after
        self.extra_headers: list[tuple[bytes, bytes]] = []

    @property
    def retryable(self) -> bool:
        """Whether another attempt (same or other deployment) may succeed."""
        return False

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return list(self.extra_headers)
        seconds = max(1, int(self.retry_after + 0.999))
        ms = max(1, int(self.retry_after * 1000 + 0.999))
        return [
            (b"retry-after", str(seconds).encode()),
            (b"retry-after-ms", str(ms).encode()),
            *self.extra_headers,
        ]


class ClientError(InterlockError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(ClientError):
    pass


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class AuthenticationFailed(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ClientError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ClientError):
    """The client sent its request too slowly (server.header_timeout_s/body_timeout_s);
    the connection is closed after the answer."""

    status = 408
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.extra_headers = [(b"connection", b"close")]


class RateLimited(InterlockError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class ServiceUnavailable(InterlockError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class Degraded(ServiceUnavailable):
    code = "degraded"


class UpstreamError(InterlockError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    blames_upstream = True

    def __init__(
        self,
        message: str = "upstream error",
        *,
        upstream_status: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.upstream_status = upstream_status

    @property
    def retryable(self) -> bool:
        return True


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamBadRequest(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "upstream_bad_request"
    blames_upstream = False  # the provider judged the client's input

    @property
    def retryable(self) -> bool:
        return False


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamTimeout(UpstreamError, TimeoutError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class DeadlineExceeded(UpstreamTimeout):
    """The request's own deadline (``x-interlock-timeout``, a job's deadline) ran out before
    the deployment's timeouts did: the client chose it, so it is a 504 for that client and
    nobody else's business (no breaker, no ladder, no retry: the time is gone)."""

    code = "deadline_exceeded"
    blames_upstream = False

    @property
    def retryable(self) -> bool:
        return False


def error_payload(err: InterlockError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": err.type,
            "param": err.param,
            "code": err.code,
        }
    }


def error_body(err: InterlockError) -> bytes:
    """The OpenAI-shaped JSON body for ``err``."""
    return orjson.dumps(error_payload(err))
