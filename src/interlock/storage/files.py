"""State on disk is private to the user running Interlock: files 0600, directories 0700.

``state_dir`` holds the key-hash secret, the webhook secret, spooled ledger records
(prompts' metadata, key ids, costs), alert state and the SQLite database; none of it is
for other users of the machine. Modes are set when a file is created (``os.open`` with an
explicit mode, never the process umask's default), and :func:`secure_state` tightens
what an older version, or another tool, left readable: at start, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("interlock.storage")

FILE_MODE = 0o600
DIR_MODE = 0o700
_LOOSE = 0o077  # any permission for the group or others


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` whose last directory is 0700 (a new one; an existing one is left to
    :func:`secure_state`, which warns). Parents it creates keep the usual mode."""
    p = Path(path)
    if not p.is_dir():
        p.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process got there first
            p.mkdir(mode=DIR_MODE)
            os.chmod(p, DIR_MODE)  # mkdir's mode is masked by the umask
    return p


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist (it is never truncated)."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return p


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 from the first byte."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, p)


def _tighten(path: Path, st: os.stat_result, mode: int) -> bool:
    """chmod ``path`` to ``mode`` if it is ours and looser; True when it was changed."""
    if not st.st_mode & _LOOSE or st.st_uid != os.geteuid():
        return False
    if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return False  # a sticky, shared directory (e.g. /tmp) is not Interlock's to close
    try:
        os.chmod(path, mode)
    except OSError:
        return False
    return True


def _tighten_if(path: Path, kind: Callable[[int], bool], mode: int, changed: list[str]) -> None:
    """Tighten ``path`` to ``mode`` if it is of ``kind`` (a link never is: lstat) and note
    it in ``changed``; a path that is gone or unreadable is left alone."""
    with contextlib.suppress(OSError):
        st = path.lstat()
        if kind(st.st_mode) and _tighten(path, st, mode):
            changed.append(str(path))


def secure_state(state_dir: str, sqlite_path: str | None = None) -> list[str]:
    """Tighten ``state_dir`` (0700), everything under it (files 0600, directories 0700)
    and the SQLite database with its ``-wal``/``-shm``/``-journal`` files. Returns what
    was changed, and logs one warning naming it. The Prometheus multiprocess directory
    (0700 itself) is left alone inside: its files are metrics, rewritten constantly."""
    changed: list[str] = []
    skip = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    root = private_dir(state_dir)  # created 0700 now if missing, before anything goes in
    if root.is_dir():
        if _tighten(root, root.stat(), DIR_MODE):
            changed.append(str(root))
        for base, dirs, files in os.walk(root):
            here = Path(base)
            for name in dirs:
                _tighten_if(here / name, stat.S_ISDIR, DIR_MODE, changed)
            if skip and os.path.abspath(base) == os.path.abspath(skip):
                dirs[:] = []
                continue
            for name in files:
                _tighten_if(here / name, stat.S_ISREG, FILE_MODE, changed)
    if sqlite_path:
        for suffix in ("", "-wal", "-shm", "-journal"):
            _tighten_if(Path(sqlite_path + suffix), stat.S_ISREG, FILE_MODE, changed)
    if changed:
        shown = ", ".join(sorted(set(changed))[:5])
        more = f" and {len(set(changed)) - 5} more" if len(set(changed)) > 5 else ""
        log.warning(
            "state files were readable by other users; made private (files 0600, "
            "directories 0700): %s%s",
            shown,
            more,
        )
    return changed
