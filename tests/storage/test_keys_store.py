"""The key store behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.auth.service import KeyService
from interlock.errors import AuthenticationFailed, InvalidRequest
from interlock.storage.engine import ping, run_migrations
from interlock.storage.keys import KeyStore

PEPPER = b"test-pepper"


async def test_create_then_authenticate(engine: AsyncEngine) -> None:
    svc = KeyService(KeyStore(engine), PEPPER, cache_ttl_s=0)
    rec, token = await svc.create(user="u1", team="t1", tags=["search"], models=["chat"])
    p = await svc.authenticate(token)
    assert (p.key_id, p.user, p.team, p.tags, p.models) == (
        rec.key_id,
        "u1",
        "t1",
        ("search",),
        ("chat",),
    )
    assert not p.is_admin


async def test_secret_is_stored_hashed(engine: AsyncEngine) -> None:
    svc = KeyService(KeyStore(engine), PEPPER, cache_ttl_s=0)
    rec, token = await svc.create(user="u1")
    stored = await KeyStore(engine).get(rec.key_id)
    assert stored is not None
    secret = token.rsplit("-", 1)[-1]
    assert secret not in stored.hash and secret not in stored.salt
    assert token not in str(stored.public())


async def test_wrong_secret_and_unknown_id_are_rejected(engine: AsyncEngine) -> None:
    svc = KeyService(KeyStore(engine), PEPPER, cache_ttl_s=0)
    _rec, token = await svc.create()
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate("sk-il-zzzzzzzzzzzz-" + "x" * 43)
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate("not-a-key")


async def test_other_pepper_cannot_verify(engine: AsyncEngine) -> None:
    _rec, token = await KeyService(KeyStore(engine), PEPPER).create()
    with pytest.raises(AuthenticationFailed):
        await KeyService(KeyStore(engine), b"another-pepper", cache_ttl_s=0).authenticate(token)


async def test_revocation_takes_effect_after_cache_ttl(engine: AsyncEngine) -> None:
    now = [0.0]
    writer = KeyService(KeyStore(engine), PEPPER)
    reader = KeyService(KeyStore(engine), PEPPER, cache_ttl_s=2.0, clock=lambda: now[0])
    rec, token = await writer.create()
    await reader.authenticate(token)
    await writer.revoke(rec.key_id)
    now[0] = 1.9
    await reader.authenticate(token)  # still cached in this (other) process
    now[0] = 2.1
    with pytest.raises(AuthenticationFailed) as exc:
        await reader.authenticate(token)
    assert exc.value.code == "api_key_revoked"


async def test_list_update_revoke(engine: AsyncEngine) -> None:
    svc = KeyService(KeyStore(engine), PEPPER, cache_ttl_s=0)
    a, _ = await svc.create(user="a")
    b, _ = await svc.create(user="b", admin=True)
    assert {r.key_id for r in await svc.list()} == {a.key_id, b.key_id}
    assert await svc.has_admin()
    updated = await svc.update(a.key_id, {"team": "t9", "tags": ["x", "x", "y"]})
    assert updated is not None and updated.team == "t9" and updated.tags == ["x", "y"]
    await svc.revoke(b.key_id)
    assert [r.key_id for r in await svc.list()] == [a.key_id]
    assert len(list(await svc.list(include_revoked=True))) == 2
    assert not await svc.has_admin()
    assert await svc.update("missing", {"team": "x"}) is None


async def test_bad_fields_are_refused(engine: AsyncEngine) -> None:
    svc = KeyService(KeyStore(engine), PEPPER)
    with pytest.raises(InvalidRequest) as exc:
        await svc.create(tags="search")
    assert exc.value.param == "tags"
    with pytest.raises(InvalidRequest):
        await svc.create(admin="yes")
    rec, _ = await svc.create()
    with pytest.raises(InvalidRequest):
        await svc.update(rec.key_id, {"hash": "x"})


async def test_migrations_are_idempotent_and_concurrent(engine: AsyncEngine) -> None:
    await asyncio.gather(run_migrations(engine), run_migrations(engine))
    assert await ping(engine)
