"""The Batch API's rules: uploads, batch creation, reads and cancels, owner by owner.

* Tenant isolation is by key, as for jobs: a file or batch of another key is "not
  found" (404), never "forbidden", so an id reveals nothing.
* Uploads are bounded three ways (``jobs.batch``): bytes per file, requests per file,
  and bytes stored per key (uploads and output files together), because the files live
  in the shared database.
* Only ``purpose: batch`` is accepted: this is a batch gateway, not a file store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from interlock.errors import InvalidRequest, NotFound
from interlock.jobs.batch import lines
from interlock.jobs.batch.store import (
    Batch,
    BatchStore,
    FileRecord,
    new_batch_id,
    new_file_id,
)
from interlock.jobs.queue.base import Clock
from interlock.settings import JobBatchSettings

BATCH_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})
WINDOWS = {"24h": 24 * 3600.0}
MAX_LIST = 100
MAX_METADATA_PAIRS = 16


class FileNotFound(NotFound):
    code = "file_not_found"


class BatchNotFound(NotFound):
    code = "batch_not_found"


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def page_limit(raw: str | None, default: int = 20) -> int:
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_LIST:
        raise _bad(f"'limit' must be an integer between 1 and {MAX_LIST}", "limit")
    return n


def _metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 string pairs, keys ≤ 64, values ≤ 512 chars."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        raise _bad(
            f"'metadata' must be an object of at most {MAX_METADATA_PAIRS} pairs", "metadata"
        )
    for k, v in value.items():
        if len(k) > 64 or not isinstance(v, str) or len(v) > 512:
            raise _bad(
                "'metadata' keys must be at most 64 characters and values strings of at most 512",
                "metadata",
            )
    return value


class BatchService:
    """Files and batches of one owner at a time; the driver runs what is created here."""

    def __init__(
        self, store: BatchStore, settings: JobBatchSettings, *, clock: Clock = time.time
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock

    # -- files ---------------------------------------------------------------------

    async def upload(
        self,
        owner: str,
        purpose: str | None,
        filename: str | None,
        content: bytes,
        check: lines.LineCheck | None,
    ) -> FileRecord:
        if purpose != "batch":
            raise _bad(
                "'purpose' must be \"batch\" (the only purpose this gateway stores)", "purpose"
            )
        s = self.settings
        if len(content) > s.max_file_bytes:
            raise InvalidRequest(
                f"the file is larger than {s.max_file_bytes} bytes (jobs.batch.max_file_bytes)",
                code="file_too_large",
                param="file",
                status=413,
            )
        # Checking 50,000 lines takes a while: off the event loop, so other requests
        # are not held up (the check only reads configuration).
        parsed = await asyncio.to_thread(lines.parse, content, max_lines=s.max_lines, check=check)
        if await self.store.stored_bytes(owner) + len(content) > s.max_stored_bytes_per_key:
            raise _bad(
                f"this key already stores files close to its limit of "
                f"{s.max_stored_bytes_per_key} bytes (jobs.batch.max_stored_bytes_per_key); "
                "delete some first",
                "file",
                "storage_limit_exceeded",
            )
        rec = FileRecord(
            id=new_file_id(),
            owner=owner,
            purpose="batch",
            filename=(filename or "batch.jsonl")[:255],
            bytes=len(content),
            lines=len(parsed),
            created_at=self._clock(),
        )
        return await self.store.add_file(rec, content)

    async def get_file(self, owner: str, file_id: str) -> FileRecord:
        rec = await self.store.get_file(file_id)
        if rec is None or rec.owner != owner:
            raise FileNotFound(f"no file with id '{file_id[:64]}'", param="file_id")
        return rec

    async def content(self, owner: str, file_id: str) -> tuple[FileRecord, bytes]:
        rec = await self.get_file(owner, file_id)
        data = await self.store.file_content(file_id)
        if data is None:  # deleted in between
            raise FileNotFound(f"no file with id '{file_id[:64]}'", param="file_id")
        return rec, data

    async def list_files(
        self,
        owner: str,
        purpose: str | None,
        limit: str | None,
        after: str | None,
        order: str | None,
    ) -> tuple[list[FileRecord], bool]:
        n = page_limit(limit)
        if order not in (None, "", "asc", "desc"):
            raise _bad("'order' must be 'asc' or 'desc'", "order")
        found = await self.store.list_files(
            owner, purpose or None, n + 1, after or None, order == "asc"
        )
        return found[:n], len(found) > n

    async def delete_file(self, owner: str, file_id: str) -> None:
        if not await self.store.delete_file(file_id, owner):
            raise FileNotFound(f"no file with id '{file_id[:64]}'", param="file_id")

    # -- batches -------------------------------------------------------------------

    async def create(self, owner: str, team: str | None, data: dict[str, Any]) -> Batch:
        for name in data:
            if name not in BATCH_FIELDS:
                raise _bad(f"unknown field '{name[:64]}'", name[:64], "unknown_field")
        endpoint = data.get("endpoint")
        if endpoint not in lines.ENDPOINTS:
            raise _bad(f"'endpoint' must be one of {list(lines.ENDPOINTS)}", "endpoint")
        window = data.get("completion_window")
        if not isinstance(window, str) or window not in WINDOWS:
            raise _bad(f"'completion_window' must be one of {list(WINDOWS)}", "completion_window")
        file_id = data.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise _bad("'input_file_id' must be the id of an uploaded file", "input_file_id")
        rec = await self.store.get_file(file_id)
        if rec is None or rec.owner != owner:
            raise FileNotFound(f"no file with id '{file_id[:64]}'", param="input_file_id")
        if rec.purpose != "batch":
            raise _bad('the input file\'s purpose must be "batch"', "input_file_id")
        now = self._clock()
        batch = Batch(
            id=new_batch_id(),
            owner=owner,
            team=team,
            endpoint=endpoint,
            input_file_id=file_id,
            completion_window=window,
            created_at=now,
            expires_at=now + WINDOWS[window],
            metadata=_metadata(data.get("metadata")),
        )
        return await self.store.add_batch(batch)

    async def get(self, owner: str, batch_id: str) -> Batch:
        batch = await self.store.get_batch(batch_id)
        if batch is None or batch.owner != owner:
            raise BatchNotFound(f"no batch with id '{batch_id[:64]}'", param="batch_id")
        return batch

    async def list(
        self, owner: str, limit: str | None, after: str | None
    ) -> tuple[list[Batch], bool]:
        n = page_limit(limit)
        found = await self.store.list_batches(owner, n + 1, after or None)
        return found[:n], len(found) > n

    async def cancel(self, owner: str, batch_id: str) -> Batch:
        """Ask the driver to stop the batch (``cancelling``); a batch that is finalizing
        or finished is returned as it is."""
        batch = await self.get(owner, batch_id)
        if batch.status in ("validating", "in_progress"):
            await self.store.set_status(
                batch_id, "cancelling", self._clock(), expect=("validating", "in_progress")
            )
            batch = await self.get(owner, batch_id)
        return batch
