"""The front door: the HTTP server (listener, limits, slow clients, drain) and auth."""

from __future__ import annotations

from pydantic import Field, SecretStr

from interlock.settings.base import SettingsModel


class ServerSettings(SettingsModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=4, le=1000)
    max_n: int = Field(default=8, ge=1, le=128)
    max_tokens_limit: int = Field(default=1_000_000, ge=1)
    # The ceiling for one request end to end; a deployment's own timeouts are tighter.
    request_timeout_s: float = Field(default=600.0, gt=0)
    access_log: bool = False
    # --workers N: a worker that does not answer the supervisor's ping for this long is
    # killed and replaced (uvicorn's default of 5 s kills healthy workers on a busy host).
    worker_healthcheck_s: int = Field(default=30, ge=1, le=600)
    # Slow clients (cli/http_server.py, api/http.py): a request head (request line and
    # headers) must arrive within header_timeout_s of its first byte (of the connection,
    # for the first request), a body within body_timeout_s of the head; each process
    # holds at most max_connections connections (more: 503 and close).
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # SIGTERM: new requests get 503 draining (Retry-After, Connection: close) while the
    # ones in flight (streams included) finish, for at most this long.
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)


class AuthSettings(SettingsModel):
    master_key: SecretStr | None = None
    # Secret mixed into every key hash ("pepper"); separate from any other secret.
    # Unset: generated once and kept in <state_dir>/key_hash_secret (mode 0600).
    key_hash_secret: SecretStr | None = None
    # How long a process trusts a verified key before re-reading it; bounds how long a
    # revoked key keeps working in any process.
    cache_ttl_s: float = Field(default=2.0, ge=0.0, le=60.0)
    # While the key store is unreachable, a key verified within this is still accepted.
    stale_on_error_s: float = Field(default=300.0, ge=0.0)
