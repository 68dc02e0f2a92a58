"""backend: sql — an entry one replica caches is found by another after a sync."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from interlock.cache.semantic.cache import SemanticCache
from interlock.cache.semantic.store import SemanticStore
from interlock.settings import SemanticCacheSettings, StorageSettings
from interlock.storage.engine import create_engine
from tests.support.databases import BACKENDS, migrated


async def fake_embed(texts: list[str]) -> list[np.ndarray]:
    """Texts that differ only in case and punctuation get the same vector."""
    out = []
    for t in texts:
        norm = "".join(ch for ch in t.lower() if ch.isalnum() or ch == " ").strip()
        seed = int.from_bytes(hashlib.sha256(norm.encode()).digest()[:4], "big")
        v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return out


def chat(q: str) -> dict:
    return {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": q}]}


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with migrated(request.param, tmp_path) as db:
        yield db.settings


async def test_replicas_share_entries_through_the_database(store_url: StorageSettings) -> None:
    cfg = SemanticCacheSettings(enabled=True, backend="sql")
    a_engine, b_engine = create_engine(store_url), create_engine(store_url)
    a = SemanticCache(cfg, fake_embed, store=SemanticStore(a_engine))
    b = SemanticCache(cfg, fake_embed, store=SemanticStore(b_engine))
    try:
        probe = await a.probe("team:x", "chat", "chat", chat("What is the boiling point of water?"))
        assert probe is not None
        a.remember(probe, "exact-key-1", time.time() + 60)
        await a.drain()
        assert await b.sync() == 1
        seen = await b.probe("team:x", "chat", "chat", chat("what is the boiling point of water"))
        assert seen is not None
        match = b.match(seen, 0.75)
        assert match is not None and match.candidate.key == "exact-key-1"
        # Another tenant's partition never sees it.
        other = await b.probe("team:y", "chat", "chat", chat("What is the boiling point of water?"))
        assert other is not None and b.match(other, 0.75) is None
        assert await b.sync() == 0  # nothing new
    finally:
        await a_engine.dispose()
        await b_engine.dispose()
