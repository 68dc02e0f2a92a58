"""Reconcile ``replica_lost`` ledger rows with what the provider says it billed.

A request in flight on a process that died is recorded, when its spool is replayed, at its
worst case (spend/ledger.py): the ledger never reads below what the provider could have
billed. So is an attempt the gateway abandoned that hung past its bound (``abandoned_hung``,
gateway/abandoned.py); both are "lost rows" here (storage.ledger.WORST_CASE_OUTCOMES). Where a provider publishes its usage (opt-in per provider,
``providers.<name>.usage_api``; OpenAI's organization usage API, per minute and model),
this module replaces that worst case by what was billed:

1. **Islands.** Each lost row could have been billed from its start until the request
   could still run (``server.request_timeout_s``). Those spans, widened to whole minutes
   plus a minute either side, are merged into islands: stretches of time compared as one.
2. **Remainder.** Per island and per (provider, upstream model): the provider's usage
   (tokens × the deployment's price, as the gateway prices it) minus the cost of the
   ledger's own records of that model's deployments in the island. What is left is what
   no record explains.
3. **Attribution.** Each model's remainder is split among the island's lost rows that
   could have reached that model, in proportion to their reserved worst cases, none above
   its own worst case (a provider never bills more than that; what is left over is
   traffic the ledger cannot explain, e.g. another user of the same organization, and is
   reported, not attributed). A lost row that gets nothing was never billed.
4. The rows are rewritten (cost, tokens, provider, the deployment when only one model
   explains it; the outcome stays) and each (island, model) comparison
   goes to ``ledger_reconcile``.

Re-running is harmless: lost rows are always recomputed from their reserved worst case
and the records, never from an earlier result. Rows that could have reached a deployment
whose provider has no usage API keep their worst case. Budget counters are not changed:
the hold was charged at the worst case and stays so until the window ends (the counter
reads high, never low).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import aiohttp

from interlock.settings import Settings, UsageApiSettings
from interlock.spend.cost import cost_of
from interlock.spend.prices import Price, PriceTable, UnknownPricePolicy, resolve_price
from interlock.storage.ledger import ABANDONED_HUNG, LedgerStore
from interlock.types import Usage

log = logging.getLogger("interlock.reconcile")

_Q = Decimal("0.0000000001")  # the ledger's precision (Numeric(20, 10))
_MINUTE = 60


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One provider bucket: usage of one model in one minute."""

    minute: int  # bucket start, Unix seconds
    model: str
    input_tokens: int  # including cached
    cached_tokens: int
    output_tokens: int
    requests: int


# (start, end) in Unix seconds, whole minutes -> the provider's usage in between.
UsageFetch = Callable[[int, int], Awaitable[list[UsageRow]]]


def usage_url(base_url: str | None, cfg: UsageApiSettings) -> str:
    """The usage API's root: the setting, else the provider's base URL up to ``/v1``."""
    if cfg.url:
        return cfg.url.rstrip("/")
    if base_url:
        root = base_url.rstrip("/")
        return root[: root.index("/v1") + 3] if "/v1" in root else root + "/v1"
    return "https://api.openai.com/v1"


class OpenAIUsage:
    """``GET {url}/organization/usage/completions`` and ``…/embeddings`` (1-minute buckets,
    grouped by model, every page), as published in openai/openai-openapi."""

    def __init__(
        self, url: str, cfg: UsageApiSettings, models: list[str], *, timeout_s: float = 30.0
    ) -> None:
        self._url = url
        self._cfg = cfg
        self._models = models
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __call__(self, start: int, end: int) -> list[UsageRow]:
        key = self._cfg.admin_key.get_secret_value() if self._cfg.admin_key else ""
        headers = {"Authorization": f"Bearer {key}"}
        out: list[UsageRow] = []
        async with aiohttp.ClientSession(timeout=self._timeout, headers=headers) as session:
            for family in ("completions", "embeddings"):
                page: str | None = None
                while True:
                    params: list[tuple[str, str]] = [
                        ("start_time", str(start)),
                        ("end_time", str(end)),
                        ("bucket_width", "1m"),
                        ("group_by", "model"),
                        ("limit", "1440"),
                    ]
                    params += [("models", m) for m in self._models]
                    params += [("api_key_ids", k) for k in self._cfg.api_key_ids]
                    params += [("project_ids", p) for p in self._cfg.project_ids]
                    if page:
                        params.append(("page", page))
                    url = f"{self._url}/organization/usage/{family}"
                    async with session.get(url, params=params) as resp:
                        if resp.status != 200:
                            raise ReconcileError(
                                f"{url} answered {resp.status}: {(await resp.text())[:200]}"
                            )
                        body = await resp.json()
                    out += _rows(body)
                    page = body.get("next_page") if body.get("has_more") else None
                    if not page:
                        break
        return out


def _rows(body: Any) -> list[UsageRow]:
    rows: list[UsageRow] = []
    for bucket in body.get("data") or ():
        minute = int(bucket["start_time"])
        for r in bucket.get("results") or ():
            model = r.get("model")
            if not isinstance(model, str):
                continue
            rows.append(
                UsageRow(
                    minute,
                    model,
                    int(r.get("input_tokens") or 0),
                    int(r.get("input_cached_tokens") or 0),
                    int(r.get("output_tokens") or 0),
                    int(r.get("num_model_requests") or 0),
                )
            )
    return rows


class ReconcileError(Exception):
    pass


@dataclass(slots=True)
class ProviderView:
    """What the gateway knows of one provider: its upstream models, their deployments and
    prices."""

    name: str
    fetch: UsageFetch
    deployments: dict[str, list[str]] = field(default_factory=dict)  # model -> names
    prices: dict[str, Price] = field(default_factory=dict)  # model -> price
    settle_delay_s: float = 0.0


@dataclass(slots=True)
class Line:
    """One (island, provider, model) comparison, as written to ``ledger_reconcile``."""

    provider: str
    model: str
    start: datetime
    end: datetime
    provider_requests: int
    provider_usd: Decimal
    ledger_usd: Decimal
    lost_rows: int
    lost_before_usd: Decimal
    lost_after_usd: Decimal
    unattributed_usd: Decimal

    def row(self, ran_at: datetime) -> dict[str, Any]:
        return {
            "ran_at": ran_at,
            "provider": self.provider,
            "model": self.model,
            "start_at": self.start,
            "end_at": self.end,
            "provider_requests": self.provider_requests,
            "provider_usd": self.provider_usd,
            "ledger_usd": self.ledger_usd,
            "lost_rows": self.lost_rows,
            "lost_before_usd": self.lost_before_usd,
            "lost_after_usd": self.lost_after_usd,
            "unattributed_usd": self.unattributed_usd,
        }


@dataclass(slots=True)
class Report:
    lines: list[Line] = field(default_factory=list)
    rewritten: int = 0
    before_usd: Decimal = Decimal(0)
    after_usd: Decimal = Decimal(0)
    skipped: int = 0  # lost rows left at their worst case (see the module docstring)


def _utc(d: datetime) -> datetime:
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def _floor(ts: float) -> int:
    return int(ts // _MINUTE) * _MINUTE


def islands(
    lost: list[dict[str, Any]], reach_s: float, margin_s: int = _MINUTE
) -> list[tuple[int, int, list[dict[str, Any]]]]:
    """Merge each lost row's span [start − margin, start + reach + margin), in whole
    minutes, into islands: (start, end, rows) in Unix seconds. A row's own ``reach_s``
    (an abandoned attempt's) replaces ``reach_s``."""
    spans = []
    for r in sorted(lost, key=lambda r: _utc(r["created_at"])):
        t = _utc(r["created_at"]).timestamp()
        end = _floor(t + r.get("reach_s", reach_s)) + _MINUTE + margin_s
        spans.append((_floor(t) - margin_s, end, r))
    out: list[tuple[int, int, list[dict[str, Any]]]] = []
    for s, e, r in spans:
        if out and s <= out[-1][1]:
            ps, pe, rows = out[-1]
            out[-1] = (ps, max(pe, e), [*rows, r])
        else:
            out.append((s, e, [r]))
    return out


def _room(cap: Decimal | None) -> bool:
    return cap is None or cap > 0


def split(
    amount: Decimal, weights: dict[str, Decimal], caps: dict[str, Decimal | None]
) -> tuple[dict[str, Decimal], Decimal]:
    """Split ``amount`` over ``weights`` proportionally, none above its cap (water-filling:
    what a capped row cannot take goes to the others). Returns the shares (exact to
    1e-10, summing to at most ``amount``) and what was left over."""
    shares: dict[str, Decimal] = {}
    open_ = {k for k, w in weights.items() if w > 0 and _room(caps[k])}
    left = amount
    while left > 0 and open_:
        total = sum(weights[k] for k in open_)
        capped = set()
        for k in sorted(open_):
            want = left * weights[k] / total
            cap = caps[k]
            if cap is not None and shares.get(k, Decimal(0)) + want >= cap:
                capped.add(k)
        if capped:
            for k in capped:
                cap = caps[k]
                assert cap is not None
                give = cap - shares.get(k, Decimal(0))
                shares[k] = cap
                left -= give
            open_ -= capped
            continue
        given = Decimal(0)
        keys = sorted(open_)
        for k in keys:
            share = (left * weights[k] / total).quantize(_Q, rounding=ROUND_DOWN)
            shares[k] = shares.get(k, Decimal(0)) + share
            given += share
        # The rounding residue (under 1e-10 per row) goes to the first row with room.
        residue = left - given
        for k in keys:
            cap = caps[k]
            if residue <= 0 or cap is None or shares[k] + residue <= cap:
                shares[k] += residue
                given += residue
                break
        left -= given
        break
    return shares, max(left, Decimal(0))


async def reconcile(
    store: LedgerStore,
    providers: list[ProviderView],
    reach: dict[str, set[tuple[str, str]]],
    start: datetime,
    end: datetime,
    *,
    reach_s: float,
    abandoned_reach_s: float = 0.0,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Report:
    """Reconcile the lost rows created in [start, end) against ``providers``' usage.

    ``reach``: alias -> every (provider, upstream model) a request for it could have
    been sent to (deployments, fallbacks, tiers); a provider not in ``providers`` there
    keeps the row at its worst case. ``reach_s``: how long after its row's time a lost
    request may have been billed; ``abandoned_reach_s``: the same for an abandoned
    attempt that hung (``abandoned_hung``, timed from its start), if longer.
    """
    now = now or datetime.now(UTC)
    report = Report()
    views = {p.name: p for p in providers}
    lost = await store.lost_between(start, end)
    usable = []
    for r in lost:
        if r.get("outcome") == ABANDONED_HUNG:
            r["reach_s"] = max(reach_s, abandoned_reach_s)
        targets = reach.get(r["model"] or "", set())
        if not targets or any(p not in views for p, _ in targets):
            report.skipped += 1
            continue
        delay = max(views[p].settle_delay_s for p, _ in targets)
        if _utc(r["created_at"]).timestamp() + r.get("reach_s", reach_s) + delay > now.timestamp():
            report.skipped += 1  # the provider may not have reported it yet: later
            continue
        usable.append(r)
    updates: list[dict[str, Any]] = []
    for i_start, i_end, rows in islands(usable, reach_s):
        lines, ups = await _island(store, views, reach, i_start, i_end, rows)
        report.lines += lines
        updates += ups
        for r, u in zip(rows, ups, strict=True):
            report.before_usd += Decimal(str(r["cost_usd"]))
            report.after_usd += u["cost_usd"]
    report.rewritten = len(updates)
    if not dry_run and (updates or report.lines):
        await store.rewrite_lost(updates, [line.row(now) for line in report.lines])
    return report


async def _island(
    store: LedgerStore,
    views: dict[str, ProviderView],
    reach: dict[str, set[tuple[str, str]]],
    i_start: int,
    i_end: int,
    rows: list[dict[str, Any]],
) -> tuple[list[Line], list[dict[str, Any]]]:
    start_dt = datetime.fromtimestamp(i_start, UTC)
    end_dt = datetime.fromtimestamp(i_end, UTC)
    caps: dict[str, Decimal | None] = {}
    weights: dict[str, Decimal] = {}
    for r in rows:
        reserved = r["reserved_usd"]
        reserved = Decimal(str(reserved)) if reserved is not None else Decimal(0)
        caps[r["request_id"]] = reserved if reserved > 0 else None
        weights[r["request_id"]] = reserved if reserved > 0 else Decimal(1)
    got: dict[str, Decimal] = {k: Decimal(0) for k in caps}
    tokens: dict[str, list[int]] = {k: [0, 0] for k in caps}
    models_of: dict[str, set[tuple[str, str]]] = {k: set() for k in caps}
    lines: list[Line] = []
    wanted = {t for r in rows for t in reach[r["model"]]}
    for pname in sorted({p for p, _ in wanted}):
        view = views[pname]
        usage: dict[str, list[int]] = {}
        for u in await view.fetch(i_start, i_end):
            agg = usage.setdefault(u.model, [0, 0, 0, 0])
            agg[0] += u.input_tokens
            agg[1] += u.cached_tokens
            agg[2] += u.output_tokens
            agg[3] += u.requests
        names = [d for ds in view.deployments.values() for d in ds]
        known = await store.known_between(start_dt, end_dt, names)
        for model in sorted(view.deployments):
            inp, cached, out, reqs = usage.get(model, [0, 0, 0, 0])
            price = view.prices.get(model)
            billed = cost_of(Usage(inp, out, cached), price) if price is not None else Decimal(0)
            mine = [known[d] for d in view.deployments[model] if d in known]
            ledger_usd = sum((k[0] for k in mine), Decimal(0))
            eligible = [r["request_id"] for r in rows if (pname, model) in reach[r["model"]]]
            if not eligible and not reqs:
                continue
            remainder = billed - ledger_usd
            left_caps: dict[str, Decimal | None] = {}
            for k in eligible:
                cap = caps[k]
                left_caps[k] = None if cap is None else cap - got[k]
            shares, left = (
                split(remainder, {k: weights[k] for k in eligible}, left_caps)
                if remainder > 0
                else ({}, remainder)
            )
            d_in = max(0, inp - sum(k[1] for k in mine))
            d_out = max(0, out - sum(k[2] for k in mine))
            for k, share in shares.items():
                got[k] += share
                if share > 0:
                    models_of[k].add((pname, model))
                    frac = share / remainder
                    tokens[k][0] += int(d_in * frac)
                    tokens[k][1] += int(d_out * frac)
            before = sum(
                (Decimal(str(r["cost_usd"])) for r in rows if r["request_id"] in eligible),
                Decimal(0),
            )
            after = sum(shares.values(), Decimal(0))
            lines.append(
                Line(
                    pname,
                    model,
                    start_dt,
                    end_dt,
                    reqs,
                    billed,
                    ledger_usd,
                    len(eligible),
                    before,
                    after,
                    left,
                )
            )
    updates: list[dict[str, Any]] = []
    for r in rows:
        k = r["request_id"]
        upd: dict[str, Any] = {
            "request_id": k,
            "cost_usd": got[k],
            "prompt_tokens": tokens[k][0],
            "completion_tokens": tokens[k][1],
        }
        if len(models_of[k]) == 1:
            ((pname, model),) = models_of[k]
            upd["provider"] = pname
            upd["deployment"] = views[pname].deployments[model][0]
        updates.append(upd)
    return lines, updates


# -- from the configuration ---------------------------------------------------------------


def views_from(settings: Settings, table: PriceTable | None = None) -> list[ProviderView]:
    """One view per provider with ``usage_api`` set."""
    table = table or PriceTable.load()
    u = settings.spend.unknown_price
    policy = UnknownPricePolicy(
        u.action, Decimal(str(u.input_per_mtok)), Decimal(str(u.output_per_mtok))
    )
    views = []
    for pname, p in settings.providers.items():
        if p.usage_api is None:
            continue
        view = ProviderView(pname, _noop, settle_delay_s=p.usage_api.settle_delay_s)
        for dname, d in settings.deployments.items():
            if d.provider != pname:
                continue
            view.deployments.setdefault(d.model, []).append(dname)
            price = resolve_price(d, p.kind, table, policy, deployment=dname).price
            if price is not None:
                view.prices.setdefault(d.model, price)
        url = usage_url(p.base_url, p.usage_api)
        view.fetch = OpenAIUsage(url, p.usage_api, sorted(view.deployments))
        views.append(view)
    return views


async def _noop(start: int, end: int) -> list[UsageRow]:
    return []


def reach_from(settings: Settings) -> dict[str, set[tuple[str, str]]]:
    """alias -> every (provider, upstream model) its requests may be sent to."""

    def walk(alias: str, seen: set[str]) -> set[tuple[str, str]]:
        spec = settings.models.get(alias)
        if spec is None or alias in seen:
            return set()
        seen.add(alias)
        out: set[tuple[str, str]] = set()
        for name in spec.deployments:
            d = settings.deployments.get(name)
            if d is not None:
                out.add((d.provider, d.model))
        for fb in spec.fallbacks:
            for other in fb.models:
                out |= walk(other, seen)
        if spec.tiers is not None:
            t = spec.tiers
            names = [t.small, t.medium, t.large, *(s.model for s in t.specialized.values())]
            for tier_alias in names:
                if tier_alias:
                    out |= walk(tier_alias, seen)
        return out

    return {alias: walk(alias, set()) for alias in settings.models}


def abandoned_reach(settings: Settings) -> float:
    """How long after its start an abandoned attempt may have been billed: it runs on for
    at most its deployment's ``timeouts.total_s`` (gateway/abandoned.py)."""
    return max((d.timeouts.total_s for d in settings.deployments.values()), default=0.0)


def default_until(settings: Settings, now: datetime | None = None) -> datetime:
    """Lost rows younger than this may still be reported late by their provider."""
    now = now or datetime.now(UTC)
    delays = [p.usage_api.settle_delay_s for p in settings.providers.values() if p.usage_api]
    return now - timedelta(seconds=settings.server.request_timeout_s + max(delays, default=0))
