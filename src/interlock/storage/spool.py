"""Append-only local spool files: durable before the database, replayed after.

Each process appends JSON lines to its own file (one ``os.write`` per record on an
O_APPEND descriptor, so a record survives the process being killed the moment after)
and holds an exclusive ``flock`` on it while alive. A checkpoint next to each file says
how many bytes are already in the database. A file nobody holds a lock on belongs to a
dead process: whoever finds it replays it from its checkpoint and deletes it. Replays
can repeat the last batch, so the consumer must be idempotent (the ledger is, by
request id). The writer decides what the checkpoint may pass: the ledger keeps it at or
before every line it still needs on a replay (an open intent, a pending settlement).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import orjson

from interlock.storage.files import private_dir, write_private

_SUFFIX = ".jsonl"


class SpoolFile:
    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self.fd = fd  # held (locked) by this process when not None

    @property
    def checkpoint_path(self) -> Path:
        return self.path.with_suffix(".ckpt")

    def committed(self) -> int:
        try:
            return int(self.checkpoint_path.read_text() or "0")
        except (OSError, ValueError):
            return 0

    def commit(self, offset: int) -> None:
        write_private(self.checkpoint_path, str(offset).encode())  # 0600, atomic

    def read(self, max_records: int, start: int | None = None) -> tuple[list[Any], int]:
        """Records after ``start`` (default: the checkpoint), at most ``max_records``, and
        the offset after them."""
        lines, offset = self.read_at(max_records, start)
        return [obj for _, obj in lines], offset

    def read_at(
        self, max_records: int, start: int | None = None
    ) -> tuple[list[tuple[int, Any]], int]:
        """Like :meth:`read`, each record with the offset its line starts at."""
        start = self.committed() if start is None else start
        out: list[tuple[int, Any]] = []
        offset = start
        with open(self.path, "rb") as fh:
            fh.seek(start)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a record still being written (or cut by a crash): not yet
                at = offset
                offset += len(line)
                try:
                    out.append((at, orjson.loads(line)))
                except orjson.JSONDecodeError:
                    continue  # a torn line from a crash: nothing to recover from it
                if len(out) >= max_records:
                    break
        return out, offset

    @property
    def owner(self) -> str:
        """The process that wrote the file (its pid, from ``<prefix>-<pid>-<ns>.jsonl``):
        a process's files are replayed together (an intent and its record may sit in
        two files around a rotation)."""
        parts = self.path.stem.split("-")
        return parts[-2] if len(parts) >= 3 else self.path.stem

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def release(self) -> None:
        """Give up the lock without deleting (another process may replay it later)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        for p in (self.path, self.checkpoint_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


class Spool:
    def __init__(self, directory: str | Path, prefix: str) -> None:
        self.dir = Path(directory)
        self.prefix = prefix
        self.current: SpoolFile | None = None

    def open(self) -> SpoolFile:
        private_dir(self.dir)
        path = self.dir / f"{self.prefix}-{os.getpid()}-{time.time_ns()}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.current = SpoolFile(path, fd)
        return self.current

    def append(self, record: Any) -> None:
        self.append_line(orjson.dumps(record))

    def append_line(self, line: bytes) -> None:
        self.append_raw(line + b"\n")

    def append_raw(self, data: bytes) -> None:
        """One newline-terminated record, one ``write`` (atomic for O_APPEND)."""
        if self.current is None or self.current.fd is None:
            self.open()
        assert self.current is not None and self.current.fd is not None
        os.write(self.current.fd, data)

    def rotate(self) -> SpoolFile | None:
        """Start a new file; return the old one (still locked) for its final drain."""
        old = self.current
        self.open()
        return old

    def orphans(self) -> list[SpoolFile]:
        """Spool files of processes that are gone (their lock is free), oldest first."""
        found: list[SpoolFile] = []
        mine = self.current.path if self.current else None
        for path in sorted(self.dir.glob(f"{self.prefix}-*{_SUFFIX}")):
            if path == mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process owns it
                continue
            found.append(SpoolFile(path, fd))
        return found

    def close(self) -> None:
        if self.current is not None and self.current.fd is not None:
            os.close(self.current.fd)
            self.current.fd = None
