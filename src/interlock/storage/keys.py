"""The api_keys table: create, find, list, update, revoke."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import api_keys


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    salt: str
    hash: str
    name: str | None = None
    user: str | None = None
    team: str | None = None
    tags: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    is_admin: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revoked_at: datetime | None = None
    limits: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """Everything but the salt and hash: what the admin API shows."""
        return {
            "id": self.key_id,
            "name": self.name,
            "user": self.user,
            "team": self.team,
            "tags": list(self.tags),
            "models": list(self.models),
            "admin": self.is_admin,
            "metadata": dict(self.metadata),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked": self.revoked_at is not None,
            "rate_limits": dict(self.limits),
        }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _row(row: Any) -> KeyRecord:
    m = row._mapping
    return KeyRecord(
        key_id=m["key_id"],
        salt=m["salt"],
        hash=m["hash"],
        name=m["name"],
        user=m["user_id"],
        team=m["team_id"],
        tags=list(m["tags"] or []),
        models=list(m["models"] or []),
        is_admin=bool(m["is_admin"]),
        metadata=dict(m["metadata"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        revoked_at=m["revoked_at"],
        limits=dict(m["limits"] or {}),
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rec: KeyRecord) -> KeyRecord:
        now = datetime.now(UTC)
        rec.created_at = rec.updated_at = now
        async with self._engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    key_id=rec.key_id,
                    salt=rec.salt,
                    hash=rec.hash,
                    name=rec.name,
                    user_id=rec.user,
                    team_id=rec.team,
                    tags=list(rec.tags),
                    models=list(rec.models),
                    is_admin=rec.is_admin,
                    metadata=dict(rec.metadata),
                    created_at=now,
                    updated_at=now,
                    revoked_at=None,
                    limits=dict(rec.limits) or None,
                )
            )
        return rec

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        return _row(row) if row is not None else None

    async def list(
        self, *, include_revoked: bool = False, user: str | None = None, team: str | None = None
    ) -> list[KeyRecord]:
        q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if not include_revoked:
            q = q.where(api_keys.c.revoked_at.is_(None))
        if user is not None:
            q = q.where(api_keys.c.user_id == user)
        if team is not None:
            q = q.where(api_keys.c.team_id == team)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).fetchall()
        return [_row(r) for r in rows]

    async def has_admin(self) -> bool:
        q = (
            select(api_keys.c.key_id)
            .where(api_keys.c.is_admin.is_(True), api_keys.c.revoked_at.is_(None))
            .limit(1)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(q)).first() is not None

    async def update(self, key_id: str, **changes: Any) -> KeyRecord | None:
        columns = {"user": "user_id", "team": "team_id"}
        values = {columns.get(k, k): v for k, v in changes.items()}
        values["updated_at"] = datetime.now(UTC)
        async with self._engine.begin() as conn:
            res = await conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(**values)
            )
        if res.rowcount == 0:
            return None
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> KeyRecord | None:
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
        return await self.get(key_id)
