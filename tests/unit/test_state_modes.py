"""State files are private whatever the umask: files 0600, directories 0700.

A real `interlock serve` under umask 022 writes everything it keeps (SQLite database and
its -wal/-shm, the key-hash and webhook secrets, ledger spool and checkpoint, alert
lock and state, the roll-up lock); none of it may be readable by other users. A state
directory an older version left open is tightened at start, with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from interlock.storage.files import private_dir, private_file, secure_state, write_private
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def loose(root: Path) -> list[str]:
    """Everything under ``root`` (and root) that the group or others can access."""
    out = [str(root)] if mode(root) & 0o077 else []
    for base, dirs, files in os.walk(root):
        out += [f"{base}/{n} {mode(Path(base) / n):o}" for n in dirs + files
                if mode(Path(base) / n) & 0o077]  # fmt: skip
    return out


def test_helpers_set_modes_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    d = private_dir(tmp_path / "a" / "state")
    assert mode(d) == 0o700
    assert mode(private_file(d / "db")) == 0o600
    write_private(d / "state.json", b"{}")
    assert mode(d / "state.json") == 0o600 and (d / "state.json").read_bytes() == b"{}"
    assert sorted(p.name for p in d.iterdir()) == ["db", "state.json"]  # no temp left


def test_secure_state_tightens_what_is_open_and_warns(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True)
    os.chmod(state, 0o755)
    (state / "key_hash_secret").write_text("x")
    (state / "spool" / "ledger-1.jsonl").write_text("{}")
    db = tmp_path / "other" / "interlock.db"
    db.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_text("")
    os.chmod(db.parent, 0o755)  # not under state_dir and not ours to close: left alone
    with caplog.at_level(logging.WARNING, logger="interlock.storage"):
        changed = secure_state(str(state), str(db))
    assert loose(state) == []
    assert all(mode(Path(f"{db}{s}")) == 0o600 for s in ("", "-wal", "-shm"))
    assert mode(db.parent) == 0o755
    assert len(changed) == 7
    assert "made private" in caplog.text
    caplog.clear()
    assert secure_state(str(state), str(db)) == [] and caplog.text == ""


def test_a_gateway_under_umask_022_keeps_its_state_private(
    sim_url: str, tmp_path: Path, umask_022: None
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)  # an older version's directory, readable by everyone
    stray = state / "old-spool.jsonl"
    stray.write_text("{}")
    cfg = sim_config(sim_url, state, alerts={"interval_s": 0.2})
    gw = GatewayProcess(cfg, tmp_path / "work").start()
    try:
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=gw.url, headers=admin, timeout=30) as c:
            body = {"model": "chat", "messages": [{"role": "user", "content": "modes"}]}
            assert c.post("/v1/chat/completions", json=body).status_code == 200
            job = {"endpoint": "/v1/chat/completions", "body": body}
            assert c.post("/v1/jobs", json=job).status_code == 202
            deadline = time.monotonic() + 10
            while not (state / "alerts-state.json").exists() or not list(state.glob("spool/*")):
                assert time.monotonic() < deadline, sorted(p.name for p in state.rglob("*"))
                time.sleep(0.1)
            time.sleep(1.5)  # the ledger flusher writes its checkpoint
            running = {p.name for p in state.rglob("*")}
            assert loose(state) == []
    finally:
        gw.stop()
    assert {"interlock.db", "interlock.db-wal", "interlock.db-shm", "key_hash_secret",
            "webhook_secret", "alerts-state.json", "alerts.lock"} <= running, running  # fmt: skip
    assert any(n.endswith(".ckpt") for n in running), running
    assert loose(state) == []
    assert "made private" in gw.output() and "old-spool.jsonl" in gw.output()
