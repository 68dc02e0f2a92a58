"""The semantic index: partitions never mix, entries expire and are evicted, and a big
partition switches to an HNSW index without changing answers."""

from __future__ import annotations

import numpy as np

from interlock.cache.semantic import index as index_mod
from interlock.cache.semantic.index import SemanticIndex
from interlock.cache.semantic.text import subject


def unit(seed: int, ndim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(ndim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_search_stays_inside_its_partition() -> None:
    idx = SemanticIndex(8, max_entries=100)
    v = unit(1)
    idx.add("tenant-a", v, "q", "key-a", expires=1e12)
    assert [c.key for c in idx.search("tenant-a", v)] == ["key-a"]
    assert idx.search("tenant-b", v) == []


def test_nearest_first_and_expired_entries_vanish() -> None:
    now = [1000.0]
    idx = SemanticIndex(8, max_entries=100, clock=lambda: now[0])
    q = unit(1)
    near = q + 0.05 * unit(2)
    near /= np.linalg.norm(near)
    idx.add("p", unit(3), "far", "far", expires=2000)
    idx.add("p", near, "near", "near", expires=1500)
    found = idx.search("p", q)
    assert found[0].key == "near" and found[0].similarity > found[1].similarity
    now[0] = 1600
    assert [c.key for c in idx.search("p", q)] == ["far"]


def test_oldest_entries_are_evicted_past_max_entries() -> None:
    idx = SemanticIndex(8, max_entries=3)
    for i in range(5):
        idx.add("p", unit(i), f"t{i}", f"k{i}", expires=1e12)
    assert len(idx) == 3
    assert {c.key for c in idx.search("p", unit(0), k=10)} == {"k2", "k3", "k4"}


def test_re_adding_a_key_replaces_it() -> None:
    idx = SemanticIndex(8, max_entries=10)
    idx.add("p", unit(1), "old", "k", expires=1e12)
    idx.add("p", unit(2), "new", "k", expires=1e12)
    assert len(idx) == 1
    assert idx.search("p", unit(2))[0].text == "new"


def test_a_large_partition_moves_to_hnsw_with_the_same_nearest(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(index_mod, "ANN_FROM", 64)
    try:
        idx = SemanticIndex(16, max_entries=10_000)
        vecs = [unit(i, 16) for i in range(200)]
        for i, v in enumerate(vecs):
            idx.add("p", v, f"t{i}", f"k{i}", expires=1e12)
        part = idx._parts["p"]
        assert part.ann is not None  # switched
        for i in (0, 63, 64, 199):
            assert idx.search("p", vecs[i], k=1)[0].key == f"k{i}"
        for i in range(0, 200, 2):  # removals reach the HNSW index too
            idx._drop(idx._by_key[("p", f"k{i}")])
        assert idx.search("p", vecs[0], k=1)[0].key != "k0"
    finally:
        mp.undo()


def test_partition_covers_parameters_and_earlier_turns() -> None:
    def chat(*msgs: str, **params: object) -> dict:
        roles = ["system", "user", "assistant", "user"]
        messages = [
            {"role": roles[i if len(msgs) > 1 else 1], "content": m} for i, m in enumerate(msgs)
        ]
        return {"model": "m", "messages": messages, **params}

    base = subject("team:a", "chat", "chat", chat("be brief", "hello there"), "last_turn")
    assert base is not None and base.text == "hello there"
    same = subject("team:a", "chat", "chat", chat("be brief", "hi there"), "last_turn")
    assert same is not None and same.partition == base.partition
    for other in (
        subject("team:b", "chat", "chat", chat("be brief", "hello there"), "last_turn"),
        subject("team:a", "other", "chat", chat("be brief", "hello there"), "last_turn"),
        subject("team:a", "chat", "chat", chat("be verbose", "hello there"), "last_turn"),
        subject(
            "team:a", "chat", "chat", chat("be brief", "hello there", temperature=0.5), "last_turn"
        ),
    ):
        assert other is not None and other.partition != base.partition
    whole = subject("team:a", "chat", "chat", chat("be brief", "hello there"), "conversation")
    assert whole is not None and "system: be brief" in whole.text
    # Not matched by meaning: images, a last turn that is not the user's, huge prompts.
    image = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
        ],
    }
    assert subject("team:a", "chat", "chat", image, "last_turn") is None
    assert subject("team:a", "chat", "chat", chat("x" * 9000), "last_turn") is None
    assert subject("team:a", "e", "embeddings", {"input": "x"}, "last_turn") is None
