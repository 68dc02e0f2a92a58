"""Authentication of virtual keys and their administration.

Verified keys are cached per process for ``cache_ttl_s`` (a dict hit on the hot path);
that TTL is the bound on how long a revoked or changed key keeps working in any process,
however many workers or replicas run.
"""

from __future__ import annotations

import hmac
import os
import secrets as _secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from interlock.auth import secrets
from interlock.errors import AuthenticationFailed, InvalidRequest, ServiceUnavailable
from interlock.storage.files import private_dir
from interlock.storage.keys import KeyRecord, KeyStore
from interlock.types import Principal

_MAX_CACHE = 50_000
MASTER_KEY_ID = "master"


def load_or_create_pepper(configured: str | None, state_dir: str) -> bytes:
    """The key-hash secret: from config/env, else a file created once under state_dir."""
    if configured:
        return configured.encode()
    path = Path(state_dir) / "key_hash_secret"
    if path.exists():
        return path.read_bytes().strip()
    private_dir(path.parent)
    value = _secrets.token_hex(32).encode()
    # O_EXCL: when several processes race on a first start, exactly one value wins.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


def _clean_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"'{field}' must be a list of non-empty strings", param=field)
    if len(value) > 100:
        raise InvalidRequest(f"'{field}' has more than 100 entries", param=field)
    return list(dict.fromkeys(value))


_LIMIT_FIELDS = {
    "rpm": (1, 10**9),
    "tpm": (1, 10**12),
    "max_concurrency": (1, 10**6),
    "priority": (0, 9),
}


def clean_limits(value: Any, field: str = "rate_limits") -> dict[str, Any]:
    """{rpm, tpm, max_concurrency, priority (0-9), max_wait_s (0-60)} of a key."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{field}' must be an object", param=field)
    out: dict[str, Any] = {}
    for name, v in value.items():
        if name in _LIMIT_FIELDS:
            lo, hi = _LIMIT_FIELDS[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InvalidRequest(
                    f"'{field}.{name}' must be an integer from {lo} to {hi}",
                    param=f"{field}.{name}",
                )
        elif name == "max_wait_s":
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 60:
                raise InvalidRequest(
                    f"'{field}.max_wait_s' must be 0 to 60 seconds", param=f"{field}.max_wait_s"
                )
        else:
            raise InvalidRequest(
                f"unknown field '{field}.{str(name)[:32]}'",
                param=f"{field}.{str(name)[:32]}",
                code="unknown_field",
            )
        out[name] = v
    return out


def _clean_str(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidRequest(f"'{field}' must be a string of 1 to 200 characters", param=field)
    return value


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        *,
        master_key: str | None = None,
        cache_ttl_s: float = 2.0,
        stale_on_error_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stale_ok = stale_on_error_s
        self._store = store
        self._pepper = pepper
        self._master_hash = (
            secrets.hash_secret(pepper, "master", master_key) if master_key else None
        )
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        # Bumped by forget(): other caches of principals (the job runner's) drop theirs
        # too, so a key revoked or restricted in this process stops at once everywhere.
        self.generation = 0

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        fp = secrets.fingerprint(token)
        hit = self._cache.get(fp)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            principal = await self._verify(token)
        except AuthenticationFailed:
            raise
        except Exception as exc:
            # The key store is unreachable. A key verified recently stays valid for a
            # bounded time, so a database outage does not take the gateway down with it.
            if hit is not None and now - hit[1] < self._stale_ok:
                return hit[0]
            raise ServiceUnavailable(
                "API keys cannot be verified right now (key store unreachable)",
                code="auth_unavailable",
                retry_after=5,
            ) from exc
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[fp] = (principal, now + self._ttl)
        return principal

    async def _verify(self, token: str) -> Principal:
        if self._master_hash is not None and hmac.compare_digest(
            secrets.hash_secret(self._pepper, "master", token), self._master_hash
        ):
            return Principal(key_id=MASTER_KEY_ID, is_admin=True)
        parts = secrets.split_token(token)
        rec = await self._store.get(parts[0]) if parts else None
        # Verify even when the id is unknown, so timing does not tell ids apart.
        salt, stored = (rec.salt, rec.hash) if rec else ("0" * 32, "0" * 64)
        ok = secrets.verify(self._pepper, salt, stored, parts[1] if parts else token)
        if rec is None or not ok:
            raise AuthenticationFailed("invalid API key")
        if rec.revoked_at is not None:
            raise AuthenticationFailed("API key has been revoked", code="api_key_revoked")
        return principal_of(rec)

    def forget(self) -> None:
        """Drop this process's cache (tests, and after an admin change in this process)."""
        self._cache.clear()
        self.generation += 1

    async def create(
        self,
        *,
        name: Any = None,
        user: Any = None,
        team: Any = None,
        tags: Any = None,
        models: Any = None,
        admin: Any = False,
        metadata: Any = None,
        rate_limits: Any = None,
    ) -> tuple[KeyRecord, str]:
        if not isinstance(admin, bool):
            raise InvalidRequest("'admin' must be a boolean", param="admin")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be an object", param="metadata")
        new = secrets.new_key(self._pepper)
        rec = KeyRecord(
            key_id=new.key_id,
            salt=new.salt,
            hash=new.hash,
            name=_clean_str(name, "name"),
            user=_clean_str(user, "user"),
            team=_clean_str(team, "team"),
            tags=_clean_list(tags, "tags"),
            models=_clean_list(models, "models"),
            is_admin=admin,
            metadata=dict(metadata or {}),
            limits=clean_limits(rate_limits),
        )
        await self._store.insert(rec)
        return rec, new.token

    async def update(self, key_id: str, changes: dict[str, Any]) -> KeyRecord | None:
        allowed = {"name", "user", "team", "tags", "models", "metadata", "rate_limits"}
        unknown = set(changes) - allowed
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequest(f"'{field}' cannot be changed", param=field, code="unknown_field")
        values: dict[str, Any] = {}
        for k, v in changes.items():
            if k in ("tags", "models"):
                values[k] = _clean_list(v, k)
            elif k == "rate_limits":
                values["limits"] = clean_limits(v)
                continue
            elif k == "metadata":
                if not isinstance(v, dict):
                    raise InvalidRequest("'metadata' must be an object", param="metadata")
                values[k] = v
            else:
                values[k] = _clean_str(v, k)
        rec = await self._store.update(key_id, **values)
        self.forget()
        return rec

    async def revoke(self, key_id: str) -> KeyRecord | None:
        rec = await self._store.revoke(key_id)
        self.forget()
        return rec

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._store.get(key_id)

    async def list(self, *, include_revoked: bool = False) -> Iterable[KeyRecord]:
        return await self._store.list(include_revoked=include_revoked)

    async def has_admin(self) -> bool:
        return await self._store.has_admin()


def principal_of(rec: KeyRecord) -> Principal:
    """The request identity a stored key record grants (its user, team, tags, limits)."""
    lim = rec.limits
    return Principal(
        key_id=rec.key_id,
        user=rec.user,
        team=rec.team,
        tags=tuple(rec.tags),
        models=tuple(rec.models),
        is_admin=rec.is_admin,
        rpm=lim.get("rpm"),
        tpm=lim.get("tpm"),
        max_concurrency=lim.get("max_concurrency"),
        priority=int(lim.get("priority", 9)),
        max_wait_s=float(lim.get("max_wait_s", 0.0)),
    )

