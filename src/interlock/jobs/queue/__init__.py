"""The durable job queue: one :class:`JobQueue` protocol, identical on every backend.

* :class:`SqlJobQueue` — SQLite (embedded default) and PostgreSQL (cluster mode), on the
  ``jobs`` table of migration 0006.
* :class:`RedisJobQueue` — Redis (cluster mode), one Lua script per state change.

``tests/jobs/test_queue_conformance.py`` runs the same suite against all three.
"""

from interlock.jobs.queue.base import (
    PRIORITIES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Clock,
    Job,
    JobNotFound,
    JobQueue,
    JobStatus,
    QueueDepth,
    QueueFull,
    QueueLimits,
    QueueUnavailable,
    new_job_id,
    priority_value,
)
from interlock.jobs.queue.redis import RedisJobQueue
from interlock.jobs.queue.sql import SqlJobQueue

__all__ = [
    "PRIORITIES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "Clock",
    "Job",
    "JobNotFound",
    "JobQueue",
    "JobStatus",
    "QueueDepth",
    "QueueFull",
    "QueueLimits",
    "QueueUnavailable",
    "RedisJobQueue",
    "SqlJobQueue",
    "new_job_id",
    "priority_value",
]
