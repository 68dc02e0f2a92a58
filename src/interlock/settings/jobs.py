"""The job queue, its worker pool, job webhooks and the Batch API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from interlock.settings.base import SettingsModel


class JobWebhookSettings(SettingsModel):
    # Signs job webhooks (Standard Webhooks, "whsec_<base64>"). Unset: generated once and
    # kept in <state_dir>/webhook_secret (mode 0600); GET /admin/jobs/webhook-secret shows it.
    secret: SecretStr | None = None
    # Hosts/CIDRs webhooks may reach although private (e.g. ["127.0.0.1", "10.0.0.0/8"]).
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    base_delay_s: float = Field(default=1.0, ge=0)
    max_delay_s: float = Field(default=300.0, ge=0)
    max_total_s: float = Field(default=900.0, ge=0)


class JobBatchSettings(SettingsModel):
    # The OpenAI Batch API (/v1/files, /v1/batches; docs/batch.md). Files live in the
    # storage database, so these bound what one key can make it hold.
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_lines: int = Field(default=50_000, ge=1)
    max_stored_bytes_per_key: int = Field(default=1024 * 1024 * 1024, ge=1024)
    # Each line runs as a job at this priority: below "low" (-10), so interactive jobs go first.
    priority: int = Field(default=-20, ge=-100, le=100)
    max_in_flight: int = Field(default=256, ge=1, le=100_000)  # queued jobs per batch at once
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)


class JobSettings(SettingsModel):
    # auto: the storage database (SQLite or PostgreSQL); redis: state.redis_url.
    backend: Literal["auto", "sql", "redis"] = "auto"
    # The Redis queue's socket timeout (connect and every call): a lease or completion is
    # one Lua script, slower than the sub-second state calls of the request path.
    redis_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # `interlock serve` runs a worker pool in each of its processes too.
    run_in_serve: bool = True
    concurrency: int = Field(default=8, ge=1, le=1024)  # jobs one pool runs at once
    lease_s: float = Field(default=30.0, ge=0.5)  # heartbeats extend it every lease_s/3
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_base_delay_s: float = Field(default=2.0, ge=0)
    retry_max_delay_s: float = Field(default=300.0, ge=0)
    drain_timeout_s: float = Field(default=25.0, ge=0)  # SIGTERM: finish running jobs this long
    max_depth_per_priority: int | None = Field(default=None, ge=1)
    max_depth_per_tenant: int | None = Field(default=None, ge=1)
    queue_full_retry_after_s: float = Field(default=5.0, gt=0)
    metrics_interval_s: float = Field(default=5.0, gt=0)
    max_metadata_bytes: int = Field(default=4096, ge=2)
    webhooks: JobWebhookSettings = Field(default_factory=JobWebhookSettings)
    batch: JobBatchSettings = Field(default_factory=JobBatchSettings)
