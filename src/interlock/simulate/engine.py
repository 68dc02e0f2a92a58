"""The event loop: requests through gateway CPU, limits, cache and deployments in
virtual time.

Per request: **arrive** → wait for a gateway core (``replicas`` FIFO servers, each
request costing ``1 / replica_rps`` s of CPU, ``stream_cost`` times that for a stream)
→ **admit** (rate limits, budgets) → cache hit (answered) or **route**: the first
deployment with room, else one wait for the soonest, else 429 → **done** after the
deployment's sampled service time, which frees its concurrency slot.

Queue depth is sampled at every arrival: requests waiting for a core plus requests
waiting for a deployment. Everything random (weighted picks, service-time noise,
overridden cache hits) comes from one seeded generator, so a run is repeatable and two
configurations are compared on the same draws.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from interlock.simulate.demand import Demand
from interlock.simulate.outcome import Served, SimResult, summarise
from interlock.simulate.routing import Candidate, DeploymentPlan, RoutePlan
from interlock.simulate.service import LatencyModel, default_model
from interlock.spend.cost import cost_of
from interlock.types import Usage

__all__ = ["SimOptions", "simulate"]

_WINDOW_S = 60.0
_BUSY_POLL_S = 0.05  # the executor's wait when only concurrency is in the way


@dataclass(frozen=True, slots=True)
class SimOptions:
    scale: float = 1.0
    replicas: int = 1
    replica_rps: float = 2100.0
    stream_cost: float = 1.95
    target_utilisation: float = 0.7
    cache_hit_rate: float | None = None  # None: the recorded hits (where the route caches)
    unconstrained: bool = False  # no quotas or limits: what the traffic would ask for
    seed: int = 0


@dataclass(slots=True)
class _Window:
    """A sliding minute of (time, tokens)."""

    events: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0

    def trim(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - _WINDOW_S:
            self.tokens -= self.events.popleft()[1]

    def add(self, now: float, tokens: int) -> None:
        self.events.append((now, tokens))
        self.tokens += tokens


@dataclass(slots=True)
class _DepState:
    plan: DeploymentPlan
    model: LatencyModel
    window: _Window = field(default_factory=_Window)
    in_flight: int = 0
    peak_in_flight: int = 0
    starts: list[tuple[float, int]] = field(default_factory=list)

    def wait(self, now: float, tokens: int, free: bool) -> float:
        """0 if a call fits now, else seconds until it may (as DeploymentState does)."""
        if free:
            return 0.0
        p, w = self.plan, self.window
        w.trim(now)
        if p.max_concurrency is not None and self.in_flight >= p.max_concurrency:
            return _BUSY_POLL_S
        if p.rpm is not None and len(w.events) >= p.rpm:
            return max(1e-6, w.events[0][0] + _WINDOW_S - now)
        if p.tpm is not None and w.events and w.tokens + tokens > p.tpm:
            return max(1e-6, w.events[0][0] + _WINDOW_S - now)
        return 0.0


class _Run:
    def __init__(
        self,
        demands: list[Demand],
        cand: Candidate,
        models: dict[str, LatencyModel],
        hit_model: LatencyModel,
        opts: SimOptions,
    ) -> None:
        self.demands, self.cand, self.opts, self.hit_model = demands, cand, opts, hit_model
        self.rng = random.Random(opts.seed)
        fallback = default_model(models)
        self.deps = {n: _DepState(p, models.get(n, fallback)) for n, p in cand.deployments.items()}
        self.limits: dict[str, _Window] = {}
        self.spent: dict[str, Decimal] = {}
        self.heap: list[tuple[float, int, int, int]] = []  # (time, seq, kind, request)
        self.seq = 0
        self.waiting = 0  # for a deployment
        self.served: list[Served] = [Served(d) for d in demands]

    # -- events ------------------------------------------------------------------------

    def push(self, at: float, kind: int, i: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, i))

    def run(self) -> list[Served]:
        cores = [0.0] * max(1, self.opts.replicas)
        queued: deque[float] = deque()  # start times of requests waiting for a core
        depth: list[int] = []
        for i, d in enumerate(self.demands):
            self.drain(d.at)
            while queued and queued[0] <= d.at:
                queued.popleft()
            cpu = (self.opts.stream_cost if d.stream else 1.0) / self.opts.replica_rps
            start = max(d.at, heapq.heappop(cores))
            heapq.heappush(cores, start + cpu)
            if start > d.at:
                queued.append(start)
            depth.append(len(queued) + self.waiting)
            self.served[i].queue_depth = depth[-1]
            self.push(start + cpu, _READY, i)
        self.drain(float("inf"))
        return self.served

    def drain(self, until: float) -> None:
        while self.heap and self.heap[0][0] <= until:
            at, _, kind, i = heapq.heappop(self.heap)
            if kind == _DONE:
                self.deps[self.served[i].deployment or ""].in_flight -= 1
            elif kind == _READY:
                self.ready(at, i)
            else:
                self.waiting -= 1
                self.dispatch(at, i, may_wait=False)

    # -- one request -----------------------------------------------------------------

    def ready(self, now: float, i: int) -> None:
        d, s = self.demands[i], self.served[i]
        route = self.cand.route(d)
        if route is None:
            s.refuse(now, "model_not_found")
            return
        dep_name = (route.primary or route.fallback)[0]
        price = self.cand.deployments[dep_name].price
        if price is None:
            s.refuse(now, "price_unknown")
            return
        cost = cost_of(Usage(d.prompt_tokens, d.completion_tokens, d.cached_tokens), price)
        hit = self.is_hit(d, route)
        refusal = (
            None if self.opts.unconstrained else self.admit(now, i, Decimal(0) if hit else cost)
        )
        if refusal is not None:
            s.refuse(now, refusal)
            return
        if hit:
            hit_ms = self.hit_model.sample(0, self.rng)
            s.finish(
                now + hit_ms / 1000, deployment=None, cost=Decimal(0), saved=cost, cache_hit=True
            )
            return
        s.route = route
        self.dispatch(now, i, may_wait=True)

    def admit(self, now: float, i: int, cost: Decimal) -> str | None:
        """None if admitted (counted, and ``cost`` reserved against its budgets), else the
        refusal code."""
        d = self.demands[i]
        windows: list[_Window] = []
        for rule in self.cand.rate_limits:
            key = rule.subject_of(d)
            if key is None:
                continue
            w = self.limits.setdefault(f"{key}:{id(rule)}", _Window())
            w.trim(now)
            if (rule.rpm is not None and len(w.events) >= rule.rpm) or (
                rule.tpm is not None and w.events and w.tokens + d.tokens > rule.tpm
            ):
                return "rate_limited"
            windows.append(w)
        charged: list[str] = []
        for rule in self.cand.budgets:
            key = rule.subject_of(d)
            if key is None or rule.limit_usd is None:
                continue
            if self.spent.get(key, Decimal(0)) + cost > rule.limit_usd:
                return "budget_exceeded"
            charged.append(key)
        for w in windows:
            w.add(now, d.tokens)
        for key in charged:
            self.spent[key] = self.spent.get(key, Decimal(0)) + cost
        self.served[i].reserved = (tuple(charged), cost)
        return None

    def is_hit(self, d: Demand, route: RoutePlan) -> bool:
        if self.opts.cache_hit_rate is not None:
            return route.cache and self.rng.random() < self.opts.cache_hit_rate
        return route.cache and d.cache_hit

    def order(self, route: RoutePlan) -> Iterator[str]:
        primary = list(route.primary)
        if route.weighted and len(primary) > 1:
            weights = [self.cand.deployments[n].weight for n in primary]
            picked: list[str] = []
            while primary:
                k = self.rng.choices(range(len(primary)), weights)[0] if sum(weights) else 0
                picked.append(primary.pop(k))
                weights.pop(k)
            primary = picked
        yield from primary
        yield from route.fallback

    def dispatch(self, now: float, i: int, *, may_wait: bool) -> None:
        d, s = self.demands[i], self.served[i]
        assert s.route is not None
        free = self.opts.unconstrained
        soonest: float | None = None
        for name in self.order(s.route):
            st = self.deps[name]
            if st.plan.price is None:
                continue
            wait = st.wait(now, d.tokens, free)
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            self.start(now, i, st)
            return
        if may_wait and soonest is not None and soonest <= self.cand.max_wait_s:
            self.waiting += 1
            self.push(now + soonest, _RETRY, i)
            return
        keys, cost = s.reserved
        for key in keys:  # released, as the gateway releases a reservation
            self.spent[key] -= cost
        s.refuse(now, "deployment_busy")

    def start(self, now: float, i: int, st: _DepState) -> None:
        d, s = self.demands[i], self.served[i]
        assert st.plan.price is not None
        st.window.add(now, d.tokens)
        st.starts.append((now, d.tokens))
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        done = now + st.model.sample(d.completion_tokens, self.rng) / 1000
        cost = cost_of(Usage(d.prompt_tokens, d.completion_tokens, d.cached_tokens), st.plan.price)
        s.finish(done, deployment=st.plan.name, cost=cost, saved=Decimal(0), cache_hit=False)
        self.push(done, _DONE, i)


_READY, _RETRY, _DONE = 0, 1, 2


def simulate(
    demands: list[Demand],
    span_s: float,
    cand: Candidate,
    models: dict[str, LatencyModel],
    hit_model: LatencyModel,
    opts: SimOptions,
) -> SimResult:
    """Run ``demands`` (already scaled, sorted by arrival) and summarise."""
    run = _Run(demands, cand, models, hit_model, opts)
    served = run.run()
    peaks = {name: st.starts for name, st in run.deps.items()}
    in_flight = {name: st.peak_in_flight for name, st in run.deps.items()}
    return summarise(served, span_s, cand, peaks, in_flight, opts)
