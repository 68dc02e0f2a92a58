"""Alembic environment: always run on the connection handed in by interlock.storage."""

from __future__ import annotations

from alembic import context

from interlock.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through interlock.storage.engine.run_migrations")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
