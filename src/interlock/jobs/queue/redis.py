"""The job queue on Redis (cluster mode): one Lua script per state change.

A script runs alone on the server, so the read-check-write of every transition (lease,
complete, fail, cancel, …) is atomic across replicas in one round trip. Keys, under a
configurable prefix ``P``:

* ``P job:<id>``    hash: the job's fields as strings (JSON for dicts), absent when None
* ``P ready``       zset of runnable queued jobs, score ``(100 - priority) · 2^40 + seq``:
                    the lowest score is the highest priority, then the oldest (FIFO)
* ``P delayed``     zset of queued jobs whose ``run_at`` is in the future (backoff,
                    scheduled), by ``run_at``; moved to ``ready`` when due
* ``P readyat``     zset of ``ready`` members by ``run_at`` (oldest waiting job, metrics)
* ``P qdeadline``   zset of queued jobs that have a deadline, by deadline
* ``P running``     zset of leased jobs by ``lease_until`` (reclaim scans the expired)
* ``P dead``        zset of dead letters by ``seq``
* ``P owner:<key>`` zset of one owner's jobs by ``seq`` (``list``)
* ``P idem:<len>:<owner>:<key>``  the job id for an Idempotency-Key (set once)
* ``P depth``, ``P tdepth``  hashes: queued count per priority, per tenant (depth limits)
* ``P seq``         the enqueue counter

Time comes from the injected clock and travels as script arguments (replica clocks are
assumed NTP-synchronised; leases are seconds long). Durability is Redis's: use AOF
(``appendfsync everysec`` loses at most a second on a crash) or the SQL backends.

For Redis Cluster, put a hash tag in the prefix (``"{interlock:jobs}:"``): the scripts
touch keys they discover (job hashes), which is only possible within one slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from interlock.jobs.queue.base import (
    PRIORITY_MAX,
    Clock,
    Job,
    JobNotFound,
    JobStatus,
    QueueDepth,
    QueueFull,
    QueueLimits,
    QueueUnavailable,
    check_webhook_state,
    deadline_error,
    decimal_text,
    dumps,
    lease_lost_error,
    loads_dict,
    prepare,
    system_clock,
)

# Shared by every script: ARGV[1] is the prefix; KEYS[1] (``P seq``) only routes the call.
_LIB = f"""
local P = ARGV[1]
local function jk(id) return P .. 'job:' .. id end
local function tenant_of(k)
  return redis.call('HGET', k, 'team') or redis.call('HGET', k, 'owner')
end
local function count(hash, fieldname, by)
  local v = redis.call('HINCRBY', P .. hash, fieldname, by)
  if v <= 0 then redis.call('HDEL', P .. hash, fieldname) end
end
local function unqueue(id, k)
  redis.call('ZREM', P .. 'ready', id)
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('ZREM', P .. 'readyat', id)
  redis.call('ZREM', P .. 'qdeadline', id)
  count('depth', redis.call('HGET', k, 'priority'), -1)
  count('tdepth', tenant_of(k), -1)
end
local function enqueue_at(id, k, run_at, now)
  redis.call('HSET', k, 'status', 'queued', 'run_at', run_at)
  if tonumber(run_at) <= tonumber(now) then
    redis.call('ZADD', P .. 'ready', redis.call('HGET', k, 'qscore'), id)
    redis.call('ZADD', P .. 'readyat', run_at, id)
  else
    redis.call('ZADD', P .. 'delayed', run_at, id)
  end
  local dl = redis.call('HGET', k, 'deadline')
  if dl then redis.call('ZADD', P .. 'qdeadline', dl, id) end
  count('depth', redis.call('HGET', k, 'priority'), 1)
  count('tdepth', tenant_of(k), 1)
end
local function bury(id, k, err, now)
  redis.call('HSET', k, 'status', 'failed', 'dead', '1', 'error', err, 'finished_at', now,
             'result_run', redis.call('HGET', k, 'runs') or '0')
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZADD', P .. 'dead', redis.call('HGET', k, 'seq'), id)
end
local PRIORITY_MAX = {PRIORITY_MAX}
"""

# ARGV: P, now, idem, owner, priority, tenant, max_priority_depth, max_tenant_depth,
#       id, run_at, field, value, …   → {1, id} | {0, existing id} | {-1, scope}
_ENQUEUE = (
    _LIB
    + """
local now, idem, owner, prio, tenant = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local id = ARGV[9]
local ik = nil
if idem ~= '' then
  ik = P .. 'idem:' .. #owner .. ':' .. owner .. ':' .. idem
  local existing = redis.call('GET', ik)
  if existing then return {0, existing} end
end
if ARGV[7] ~= '' then
  if tonumber(redis.call('HGET', P .. 'depth', prio) or '0') >= tonumber(ARGV[7]) then
    return {-1, 'priority'}
  end
end
if ARGV[8] ~= '' then
  if tonumber(redis.call('HGET', P .. 'tdepth', tenant) or '0') >= tonumber(ARGV[8]) then
    return {-1, 'tenant'}
  end
end
local seq = redis.call('INCR', KEYS[1])
local k = jk(id)
local qscore = string.format('%.0f', (PRIORITY_MAX - tonumber(prio)) * 1099511627776 + seq)
redis.call('HSET', k, 'seq', seq, 'qscore', qscore, unpack(ARGV, 11))
enqueue_at(id, k, ARGV[10], now)
redis.call('ZADD', P .. 'owner:' .. owner, seq, id)
if ik then redis.call('SET', ik, id) end
return {1, id}
"""
)

# ARGV: P, now   → number of jobs reclaimed or buried
_RECLAIM_FN = """
local function reclaim(now, batch, lost)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. now,
                             'LIMIT', 0, batch)
  for _, id in ipairs(expired) do
    local k = jk(id)
    redis.call('ZREM', P .. 'running', id)
    local attempts = tonumber(redis.call('HGET', k, 'attempts'))
    if attempts >= tonumber(redis.call('HGET', k, 'max_attempts')) then
      bury(id, k, lost, now)
    else
      redis.call('HDEL', k, 'lease_until')
      enqueue_at(id, k, now, now)
    end
  end
  return #expired
end
"""

_RECLAIM = _LIB + _RECLAIM_FN + "return reclaim(ARGV[2], tonumber(ARGV[3]), ARGV[4])\n"

# ARGV: P, now, worker, n, lease_until, batch, lease-lost error, deadline error
#   → list of HGETALL replies of the leased jobs
_LEASE = (
    _LIB
    + _RECLAIM_FN
    + """
local now, worker, n, till = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local batch, late_err = tonumber(ARGV[6]), ARGV[8]
reclaim(now, batch, ARGV[7])
local function expire(id, k)
  unqueue(id, k)
  redis.call('HSET', k, 'status', 'failed', 'error', late_err, 'finished_at', now)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now,
                               'LIMIT', 0, batch)) do
  local k = jk(id)
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('ZADD', P .. 'ready', redis.call('HGET', k, 'qscore'), id)
  redis.call('ZADD', P .. 'readyat', redis.call('HGET', k, 'run_at'), id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'qdeadline', '-inf', now,
                               'LIMIT', 0, batch)) do
  expire(id, jk(id))
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'ready', 0, n - 1)) do
  local k = jk(id)
  local dl = redis.call('HGET', k, 'deadline')
  if dl and tonumber(dl) <= tonumber(now) then
    expire(id, k)
  else
    unqueue(id, k)
    redis.call('HINCRBY', k, 'attempts', 1)
    if not redis.call('HGET', k, 'runs') then
      -- Stored before runs existed: its attempts (reset by a requeue) numbered its runs,
      -- up to max_attempts; the next run's number starts above any of them.
      local base = '0'
      if redis.call('HGET', k, 'started_at') then base = redis.call('HGET', k, 'max_attempts') end
      redis.call('HSET', k, 'runs', base)
    end
    -- The run's number, in the same script as the lease: never shared by two runs.
    redis.call('HINCRBY', k, 'runs', 1)
    redis.call('HSET', k, 'status', 'running', 'worker', worker, 'lease_until', till,
               'started_at', now)
    redis.call('ZADD', P .. 'running', till, id)
    out[#out + 1] = redis.call('HGETALL', k)
  end
end
return out
"""
)

# ARGV: P, id, worker, lease_until   → 1 | 0
_HEARTBEAT = (
    _LIB
    + """
local id, worker, till = ARGV[2], ARGV[3], ARGV[4]
local k = jk(id)
if redis.call('HGET', k, 'status') ~= 'running' or redis.call('HGET', k, 'worker') ~= worker then
  return 0
end
redis.call('HSET', k, 'lease_until', till)
redis.call('ZADD', P .. 'running', till, id)
return 1
"""
)

# ARGV: P, id, worker, now, result, cost ('' = none), status_code ('' = none),
#       run ('' = the latest)  → 1 | 0
_COMPLETE = (
    _LIB
    + """
local id, worker, now = ARGV[2], ARGV[3], ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'status')
if st == 'queued' or st == 'running' then
  if st == 'queued' then unqueue(id, k) end
  redis.call('ZREM', P .. 'running', id)
  redis.call('HDEL', k, 'lease_until')
  redis.call('HSET', k, 'status', 'succeeded', 'result', ARGV[5], 'worker', worker,
             'finished_at', now)
  if ARGV[6] ~= '' then redis.call('HSET', k, 'cost_usd', ARGV[6]) end
  if ARGV[7] ~= '' then redis.call('HSET', k, 'status_code', ARGV[7]) end
  local run = ARGV[8]
  if run == '' then run = redis.call('HGET', k, 'runs') or '0' end
  redis.call('HSET', k, 'result_run', run)
  return 1
end
if st == 'succeeded' then redis.call('HINCRBY', k, 'duplicate_completions', 1) end
return 0
"""
)

# ARGV: P, id, worker, now, error, retryable ('1'/'0'), run_at  → new status ('' = no job)
_FAIL = (
    _LIB
    + """
local id, worker, now, err = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local k = jk(id)
local st = redis.call('HGET', k, 'status')
if not st then return '' end
if st ~= 'running' or redis.call('HGET', k, 'worker') ~= worker then return st end
redis.call('ZREM', P .. 'running', id)
redis.call('HDEL', k, 'lease_until')
redis.call('HSET', k, 'error', err, 'result_run', redis.call('HGET', k, 'runs') or '0')
local attempts = tonumber(redis.call('HGET', k, 'attempts'))
if ARGV[6] == '1' and attempts < tonumber(redis.call('HGET', k, 'max_attempts')) then
  enqueue_at(id, k, ARGV[7], now)
  return 'queued'
end
bury(id, k, err, now)
return 'failed'
"""
)

# ARGV: P, id, owner, now   → 1 if the job exists and is the owner's
_CANCEL = (
    _LIB
    + """
local id, owner, now = ARGV[2], ARGV[3], ARGV[4]
local k = jk(id)
if redis.call('HGET', k, 'owner') ~= owner then return 0 end
local st = redis.call('HGET', k, 'status')
if st == 'queued' then unqueue(id, k) end
if st == 'queued' or st == 'running' then
  redis.call('ZREM', P .. 'running', id)
  redis.call('HDEL', k, 'lease_until')
  redis.call('HSET', k, 'status', 'cancelled', 'finished_at', now)
end
return 1
"""
)

# ARGV: P, id, now   → 1 | 0
_REQUEUE = (
    _LIB
    + """
local id, now = ARGV[2], ARGV[3]
local k = jk(id)
if redis.call('HGET', k, 'status') ~= 'failed' or redis.call('HGET', k, 'dead') ~= '1' then
  return 0
end
redis.call('ZREM', P .. 'dead', id)
redis.call('HSET', k, 'attempts', '0', 'dead', '0')  -- runs is kept: numbers go on
redis.call('HDEL', k, 'error', 'finished_at', 'lease_until', 'result_run')
enqueue_at(id, k, now, now)
return 1
"""
)

# ARGV: P, id, state ('' = none)  → 1 | 0
_WEBHOOK = (
    _LIB
    + """
local k = jk(ARGV[2])
if redis.call('EXISTS', k) == 0 then return 0 end
if ARGV[3] == '' then redis.call('HDEL', k, 'webhook_state')
else redis.call('HSET', k, 'webhook_state', ARGV[3]) end
return 1
"""
)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value: float) -> str:
    return repr(float(value))


def _opt_float(raw: str | None) -> float | None:
    return float(raw) if raw is not None else None


def _job(raw: Mapping[Any, Any] | list[Any]) -> Job:
    if isinstance(raw, list):  # a Lua HGETALL reply: field, value, field, value, …
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    h = {_s(k): _s(v) for k, v in raw.items()}
    cost = h.get("cost_usd")
    code = h.get("status_code")
    return Job(
        id=h["id"],
        seq=int(h["seq"]),
        owner=h["owner"],
        team=h.get("team"),
        endpoint=h["endpoint"],
        body=loads_dict(h["body"]) or {},
        callback_url=h.get("callback_url"),
        priority=int(h["priority"]),
        deadline=_opt_float(h.get("deadline")),
        metadata=loads_dict(h.get("metadata")) or {},
        idempotency_key=h.get("idempotency_key"),
        status=JobStatus(h["status"]),
        attempts=int(h.get("attempts", "0")),
        runs=int(h.get("runs", "0")),
        result_run=int(h["result_run"]) if "result_run" in h else None,
        max_attempts=int(h["max_attempts"]),
        run_at=float(h["run_at"]),
        lease_until=_opt_float(h.get("lease_until")),
        worker=h.get("worker"),
        result=loads_dict(h.get("result")),
        error=loads_dict(h.get("error")),
        status_code=int(code) if code is not None else None,
        cost_usd=Decimal(cost) if cost is not None else None,
        created_at=float(h["created_at"]),
        started_at=_opt_float(h.get("started_at")),
        finished_at=_opt_float(h.get("finished_at")),
        dead=h.get("dead") == "1",
        duplicate_completions=int(h.get("duplicate_completions", "0")),
        webhook_state=h.get("webhook_state"),
    )


def _fields(job: Job) -> list[str]:
    """The new job's hash fields (seq, qscore, status and run_at are set by the script)."""
    pairs: dict[str, str | None] = {
        "id": job.id,
        "owner": job.owner,
        "team": job.team,
        "endpoint": job.endpoint,
        "body": dumps(job.body),
        "callback_url": job.callback_url,
        "priority": str(job.priority),
        "deadline": _num(job.deadline) if job.deadline is not None else None,
        "metadata": dumps(job.metadata),
        "idempotency_key": job.idempotency_key,
        "attempts": "0",
        "runs": "0",
        "max_attempts": str(job.max_attempts),
        "created_at": _num(job.created_at),
        "dead": "0",
        "duplicate_completions": "0",
        "webhook_state": job.webhook_state,
    }
    out: list[str] = []
    for name, value in pairs.items():
        if value is not None:
            out += [name, value]
    return out


class RedisJobQueue:
    """:class:`~interlock.jobs.queue.base.JobQueue` on Redis.

    The client belongs to the caller (``close`` leaves it open); it may or may not decode
    responses. ``batch`` bounds how many expired leases, due or late jobs one ``lease``
    call moves, so one script never runs long and blocks the server.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str = "interlock:jobs:",
        *,
        limits: QueueLimits | None = None,
        clock: Clock = system_clock,
        batch: int = 500,
    ) -> None:
        self._r = client
        self._p = prefix
        self._limits = limits or QueueLimits()
        self._clock = clock
        self._batch = batch
        reg = client.register_script
        self._enqueue: AsyncScript = reg(_ENQUEUE)
        self._reclaim: AsyncScript = reg(_RECLAIM)
        self._lease: AsyncScript = reg(_LEASE)
        self._heartbeat: AsyncScript = reg(_HEARTBEAT)
        self._complete: AsyncScript = reg(_COMPLETE)
        self._fail: AsyncScript = reg(_FAIL)
        self._cancel: AsyncScript = reg(_CANCEL)
        self._requeue: AsyncScript = reg(_REQUEUE)
        self._webhook: AsyncScript = reg(_WEBHOOK)

    async def close(self) -> None:
        return None

    def _key(self, name: str) -> str:
        return self._p + name

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"job store unavailable: {type(exc).__name__}") from exc

    async def _run(self, script: AsyncScript, *args: str | int) -> Any:
        async with self._guard():
            return await script(keys=[self._key("seq")], args=[self._p, *args])

    # -- submit -------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> tuple[Job, bool]:
        new = prepare(job, self._clock())
        per_priority = self._limits.for_priority(new.priority)
        per_tenant = self._limits.max_depth_per_tenant
        reply = await self._run(
            self._enqueue,
            _num(new.created_at),
            new.idempotency_key or "",
            new.owner,
            str(new.priority),
            new.tenant,
            "" if per_priority is None else str(per_priority),
            "" if per_tenant is None else str(per_tenant),
            new.id,
            _num(new.run_at),
            *_fields(new),
        )
        outcome, detail = int(reply[0]), _s(reply[1])
        if outcome == -1:
            limit = per_priority if detail == "priority" else per_tenant
            raise QueueFull(detail, int(limit or 0), self._limits.retry_after_s)
        stored = await self.get(detail)
        if stored is None:  # pragma: no cover - the script just wrote or found it
            raise QueueUnavailable("enqueued job vanished")
        return stored, outcome == 1

    # -- work ---------------------------------------------------------------------------

    async def lease(self, worker_id: str, n: int, lease_s: float) -> list[Job]:
        if n <= 0:
            return []
        now = self._clock()
        replies = await self._run(
            self._lease,
            _num(now),
            worker_id,
            n,
            _num(now + lease_s),
            self._batch,
            dumps(lease_lost_error()),
            dumps(deadline_error()),
        )
        return [_job(r) for r in replies]

    async def reclaim(self) -> int:
        reply = await self._run(
            self._reclaim, _num(self._clock()), self._batch, dumps(lease_lost_error())
        )
        return int(reply)

    async def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        till = _num(self._clock() + lease_s)
        return int(await self._run(self._heartbeat, job_id, worker_id, till)) == 1

    async def complete(
        self,
        job_id: str,
        worker_id: str,
        result: dict[str, Any],
        cost_usd: str | Decimal | None = None,
        status_code: int | None = None,
        run: int | None = None,
    ) -> bool:
        reply = await self._run(
            self._complete,
            job_id,
            worker_id,
            _num(self._clock()),
            dumps(result),
            decimal_text(cost_usd) or "",
            "" if status_code is None else str(status_code),
            "" if run is None else str(run),
        )
        return int(reply) == 1

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retryable: bool,
        backoff_s: float = 0.0,
    ) -> JobStatus:
        now = self._clock()
        reply = _s(
            await self._run(
                self._fail,
                job_id,
                worker_id,
                _num(now),
                dumps(error),
                "1" if retryable else "0",
                _num(now + max(0.0, backoff_s)),
            )
        )
        if not reply:
            raise JobNotFound(f"no job {job_id}")
        return JobStatus(reply)

    # -- owner and operator actions -----------------------------------------------------

    async def cancel(self, job_id: str, owner: str) -> Job | None:
        if int(await self._run(self._cancel, job_id, owner, _num(self._clock()))) != 1:
            return None
        return await self.get(job_id)

    async def requeue(self, job_id: str) -> bool:
        return int(await self._run(self._requeue, job_id, _num(self._clock()))) == 1

    async def set_webhook_state(self, job_id: str, state: str | None) -> bool:
        check_webhook_state(state)
        return int(await self._run(self._webhook, job_id, state or "")) == 1

    # -- reads --------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        async with self._guard():
            raw = await self._r.hgetall(self._key("job:" + job_id))  # type: ignore[misc]
        return _job(raw) if raw else None

    async def _get_many(self, ids: list[Any]) -> list[Job]:
        if not ids:
            return []
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._key("job:" + _s(job_id)))
            raws = await pipe.execute()
        return [_job(raw) for raw in raws if raw]

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        async with self._guard():
            ids = await self._r.zrevrange(self._key("dead"), 0, limit - 1)
        return await self._get_many(ids)

    async def depth(self) -> QueueDepth:
        async with self._guard():
            raw = await self._r.hgetall(self._key("depth"))  # type: ignore[misc]
        by_priority = {int(_s(p)): int(_s(n)) for p, n in raw.items() if int(_s(n)) > 0}
        return {"total": sum(by_priority.values()), "by_priority": by_priority}

    async def oldest_age_s(self) -> float | None:
        now = self._clock()
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            pipe.zrange(self._key("readyat"), 0, 0, withscores=True)
            pipe.zrange(self._key("delayed"), 0, 0, withscores=True)
            ready, delayed = await pipe.execute()
        # Jobs whose backoff ended wait in ``delayed`` until the next lease moves them.
        scores = [float(pair[1]) for pair in [*ready, *delayed]]
        waiting = [s for s in scores if s <= now]
        return max(0.0, now - min(waiting)) if waiting else None

    async def pending_webhooks(self, finished_before: float, limit: int = 100) -> list[Job]:
        """Finished jobs whose webhook is still owed, finished at or before ``finished_before``.

        Redis keeps no index of these, so this SCANs the job hashes: it is meant for a
        worker's startup sweep and a slow periodic one, not for a hot path.
        """
        found: list[str] = []
        finished = {JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value}
        async with self._guard():
            cursor: int = 0
            while True:
                cursor, keys = await self._r.scan(cursor, match=self._key("job:*"), count=1000)
                if keys:
                    pipe = self._r.pipeline(transaction=False)
                    for k in keys:
                        pipe.hmget(k, "id", "status", "webhook_state", "finished_at")
                    for row in await pipe.execute():
                        jid, status, state, at = (_s(v) if v is not None else None for v in row)
                        if (
                            jid is not None
                            and state == "pending"
                            and status in finished
                            and at is not None
                            and float(at) <= finished_before
                        ):
                            found.append(jid)
                if cursor == 0 or len(found) >= limit:
                    break
        return await self._get_many(found[:limit])

    async def list(
        self,
        owner: str,
        status: JobStatus | str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> list[Job]:
        key = self._key("owner:" + owner)
        wanted = JobStatus(status) if status is not None else None
        out: list[Job] = []
        async with self._guard():
            top: str | float = "+inf"
            if after is not None:
                score = await self._r.zscore(key, after)
                if score is None:
                    return out
                top = f"({int(score)}"
        # A status filter skips rows, so read pages of ids until ``limit`` jobs match.
        page = max(limit, 50) if wanted is not None else limit
        while len(out) < limit:
            async with self._guard():
                rows: list[Any] = await self._r.zrevrangebyscore(
                    key, top, "-inf", start=0, num=page, withscores=True
                )
            if not rows:
                break
            for job in await self._get_many([row[0] for row in rows]):
                if wanted is None or job.status == wanted:
                    out.append(job)
            top = f"({int(rows[-1][1])}"
            if len(rows) < page:
                break
        return out[:limit]
