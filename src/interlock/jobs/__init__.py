"""Queued work: gateway requests accepted now and run later by a worker.

``interlock.jobs.queue`` holds the durable queue (one protocol, three backends: SQLite,
PostgreSQL, Redis); the worker, webhooks and the batch API build on it.
"""
