"""What this replica knows about each deployment right now.

Circuit breaker state, Retry-After cooldowns, in-flight count, latency EWMA and the
RPM/TPM/concurrency windows. Breaker transitions are published to the shared state and
a background sync adopts other replicas' trips, so a provider one replica found dead is
avoided by all within ``state.sync_interval_s`` (plus one round trip).

Latency is time to the first byte of the answer (a stream's first chunk, a non-streamed
answer's arrival). A deployment's *current* latency is its EWMA or, when calls are
waiting on it and it has answered nothing for longer, the time since it last answered:
a hung deployment looks slower every second, before any timeout fires.
:meth:`DeploymentHealth.route_around_slow` moves a deployment much slower than its peers
to the end of every plan, whatever the alias's strategy, and lets one probe request
through every ``PROBE_EVERY_S`` so it is noticed when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from interlock.providers.registry import Deployment
from interlock.resilience import breaker
from interlock.resilience.breaker import BreakerConfig, BreakerState, CircuitState
from interlock.routing.loop import Periodic
from interlock.routing.strategies import SLOW_GAP_S, is_slow
from interlock.settings import BreakerSettings, Settings
from interlock.state.base import BreakerSnapshot, SharedState
from interlock.telemetry.metrics import Metrics

log = logging.getLogger("interlock.events")

_STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
_EWMA_ALPHA = 0.3
# A latency sample older than this no longer counts, so a recovered (or never tried)
# deployment gets explored again by least-latency routing.
_LATENCY_STALE_S = 30.0
# A deployment routed around as slow gets one probe request at most this often (and
# only when none of its calls is waiting), so its recovery is noticed.
PROBE_EVERY_S = 5.0


def breaker_config(s: BreakerSettings) -> BreakerConfig:
    return BreakerConfig(**s.model_dump())


@dataclass(slots=True)
class DeploymentState:
    dep: Deployment
    cfg: BreakerConfig
    breaker: BreakerState = field(default_factory=BreakerState)
    changed_at: float = 0.0  # wall clock of the last local breaker transition
    cooldown_until: float = 0.0
    in_flight: int = 0
    ewma_s: float | None = None
    sampled_at: float = 0.0
    starts: deque[float] = field(default_factory=deque)  # request start times, last 60 s
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens), last 60 s
    tokens_sum: int = 0
    waiting: int = 0  # calls without a first byte yet
    answered_at: float = 0.0  # last first byte or answer (or when `waiting` left 0)
    slow: bool = False  # routed around (see route_around_slow); hysteresis keeps it
    probed_at: float = 0.0

    def _trim(self, now: float) -> None:
        horizon = now - 60.0
        while self.starts and self.starts[0] <= horizon:
            self.starts.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.tokens_sum -= self.tokens.popleft()[1]

    def capacity_wait(self, now: float, tokens: int) -> float:
        """0 if a request fits now, else seconds until it may (RPM/TPM/concurrency)."""
        s = self.dep.settings
        self._trim(now)
        if s.max_concurrency is not None and self.in_flight >= s.max_concurrency:
            return 0.05
        if s.rpm is not None and len(self.starts) >= s.rpm:
            return max(0.0, self.starts[0] + 60.0 - now)
        if s.tpm is not None and self.tokens and self.tokens_sum + tokens > s.tpm:
            return max(0.0, self.tokens[0][0] + 60.0 - now)
        return 0.0

    def latency(self, now: float) -> float | None:
        """The current time to first byte: the EWMA, or longer while calls wait on a
        deployment that has answered nothing for longer than that. None: unknown."""
        stalled = now - self.answered_at if self.waiting else 0.0
        if self.ewma_s is None or now - self.sampled_at > _LATENCY_STALE_S:
            return stalled or None
        return max(self.ewma_s, stalled)

    def _sample(self, seconds: float, now: float) -> None:
        if self.slow:
            # A probe of a deployment routed around: older samples are stale evidence.
            self.ewma_s = None
        self.ewma_s = (
            seconds
            if self.ewma_s is None
            else _EWMA_ALPHA * seconds + (1 - _EWMA_ALPHA) * self.ewma_s
        )
        self.sampled_at = now


class DeploymentHealth:
    def __init__(
        self,
        settings: Settings,
        deployments: dict[str, Deployment],
        shared: SharedState,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        default = settings.resilience.breaker
        self._states = {
            name: DeploymentState(dep, breaker_config(dep.settings.breaker or default))
            for name, dep in deployments.items()
        }
        self._shared = shared
        self._metrics = metrics
        self._clock = clock
        self._loop = Periodic("breaker sync", self.sync_once, settings.state.sync_interval_s)
        self._pending: set[asyncio.Task[None]] = set()

    def state(self, name: str) -> DeploymentState:
        return self._states[name]

    def states(self) -> list[DeploymentState]:
        return list(self._states.values())

    # -- decisions --------------------------------------------------------------

    def unavailable_for(self, name: str, now: float, tokens: int = 0) -> float:
        """0 if the deployment can take a call now, else how long until it might."""
        st = self._states[name]
        if not breaker.is_available(st.cfg, st.breaker, now):
            if st.breaker.state is CircuitState.OPEN:
                return max(0.01, st.breaker.open_until - now)
            return st.cfg.probe_timeout_s
        if st.cooldown_until > now:
            return st.cooldown_until - now
        return st.capacity_wait(now, tokens)

    def acquire(self, name: str, tokens: int = 0) -> bool:
        """Take a slot for one call (a half-open probe slot when probing)."""
        st = self._states[name]
        now = self._clock()
        ok, new = breaker.allow(st.cfg, st.breaker, now)
        self._set(st, new, now)
        if not ok:
            return False
        st.in_flight += 1
        if not st.waiting:
            st.answered_at = now  # the stall clock starts with the first waiting call
        st.waiting += 1
        self._metrics.upstream_busy(name, 1)
        st._trim(now)
        st.starts.append(now)
        if tokens:
            st.tokens.append((now, tokens))
            st.tokens_sum += tokens
        return True

    def release(
        self,
        name: str,
        *,
        ok: bool,
        duration_s: float,
        counts_as_failure: bool,
        retry_after_s: float | None = None,
        streamed: bool = False,
    ) -> None:
        """The outcome of an acquired call. ``ok`` False with counts_as_failure False is a
        failure that says nothing about the deployment's health (a client error, a 429).
        ``streamed``: the call reported its first byte (:meth:`first_byte`) already."""
        st = self._states[name]
        now = self._clock()
        if st.in_flight > 0:
            self._metrics.upstream_busy(name, -1)
        st.in_flight = max(0, st.in_flight - 1)
        if retry_after_s is not None:
            st.cooldown_until = max(st.cooldown_until, now + retry_after_s)
        healthy = ok or not counts_as_failure
        if not streamed:
            st.waiting = max(0, st.waiting - 1)
            if healthy:
                st.answered_at = now  # it answered (a failure of its own is no answer)
            # A success is a latency sample; so is a failure slower than the estimate
            # (a timeout), which can only raise it.
            if ok or (counts_as_failure and duration_s > (st.ewma_s or 0.0)):
                st._sample(duration_s, now)
        new = breaker.record(st.cfg, st.breaker, now, ok=healthy, duration_s=duration_s)
        self._set(st, new, now)

    def first_byte(self, name: str, seconds: float) -> None:
        """A streamed call's first chunk arrived ``seconds`` after it started: that is
        its latency sample (its release, at the stream's end, passes ``streamed``)."""
        st = self._states[name]
        now = self._clock()
        st.waiting = max(0, st.waiting - 1)
        st.answered_at = now
        st._sample(seconds, now)

    def route_around_slow(self, deps: list[Deployment]) -> list[Deployment]:
        """``deps`` (already in the strategy's order) with deployments much slower than
        their peers moved to the end, order kept otherwise. A slow deployment with no
        call waiting on it goes first once per ``PROBE_EVERY_S``: one request measures
        whether it recovered (if it did not, that request fails over at its timeout)."""
        if len(deps) < 2:
            return deps
        now = self._clock()
        states = [self._states[d.name] for d in deps]
        lat = [st.latency(now) for st in states]
        for i, st in enumerate(states):
            peers = [
                x for j, x in enumerate(lat) if j != i and x is not None and not states[j].slow
            ]
            # No peer measured yet: compare with its own usual latency (a hang shows).
            ref = min(peers) if peers else st.ewma_s
            was = st.slow
            st.slow = is_slow(lat[i], ref, was)
            if st.slow and not was:
                st.probed_at = now  # its first probe comes PROBE_EVERY_S from now
            if st.slow != was:
                log.info(
                    "deployment %s %s (latency %.3fs, peers %s)",
                    st.dep.name,
                    "routed around as slow" if st.slow else "no longer slow",
                    lat[i] or 0.0,
                    "unknown" if ref is None else f"{ref:.3f}s",
                    extra={"event": "slow_deployment", "deployment": st.dep.name},
                )
        fast = [d for d, st in zip(deps, states, strict=True) if not st.slow]
        slow = [d for d, st in zip(deps, states, strict=True) if st.slow]
        known = [x for x, st in zip(lat, states, strict=True) if x is not None and not st.slow]
        best = min(known) if known else None
        for d, x, st in zip(deps, lat, states, strict=True):
            # Probe a slow deployment (recovered?), or an unmeasured one while the best
            # measured is itself slow (a peer never tried cannot be compared with).
            wanted = st.slow or (x is None and best is not None and best > SLOW_GAP_S)
            if wanted and not st.waiting and now - st.probed_at >= PROBE_EVERY_S:
                st.probed_at = now
                return [d, *(y for y in fast + slow if y is not d)]
        return fast + slow if slow else deps

    def reset(self, name: str) -> None:
        """Operator action: close the breaker and forget cooldown and latency history."""
        st = self._states[name]
        st.cooldown_until = 0.0
        st.ewma_s = None
        st.slow = False
        self._set(st, BreakerState(), self._clock())

    def describe(self, name: str) -> dict[str, object]:
        st = self._states[name]
        now = self._clock()
        return {
            "deployment": name,
            "provider": st.dep.provider,
            "model": st.dep.target.model,
            "circuit": st.breaker.state.value,
            "open_for_s": round(max(0.0, st.breaker.open_until - now), 3)
            if st.breaker.state is CircuitState.OPEN
            else 0.0,
            "trips": st.breaker.trips,
            "cooldown_s": round(max(0.0, st.cooldown_until - now), 3),
            "in_flight": st.in_flight,
            "latency_ewma_s": st.latency(now),
            "routed_around_as_slow": st.slow,
        }

    def open_ratio(self) -> float:
        if not self._states:
            return 0.0
        opened = sum(1 for s in self._states.values() if s.breaker.state is CircuitState.OPEN)
        return opened / len(self._states)

    # -- transitions and sharing -------------------------------------------------

    def _set(self, st: DeploymentState, new: BreakerState, now: float) -> None:
        old = st.breaker.state
        st.breaker = new
        if new.state is old:
            return
        st.changed_at = now
        name = st.dep.name
        self._metrics.circuit_transition(name, new.state.value, _STATE_VALUE[new.state])
        log.info(
            "circuit %s -> %s",
            old.value,
            new.state.value,
            extra={"event": "circuit_transition", "deployment": name, "to": new.state.value},
        )
        if new.state is not CircuitState.HALF_OPEN:
            snap = BreakerSnapshot(new.state.value, new.open_until, new.trips, now)
            task = asyncio.get_running_loop().create_task(self._shared.publish_breaker(name, snap))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def sync_once(self) -> None:
        names = list(self._states)
        remote = await self._shared.fetch_breakers(names)
        if not remote:
            return
        now = self._clock()
        for name, snap in remote.items():
            st = self._states[name]
            if snap.updated_at <= st.changed_at:
                continue
            if (
                snap.state == "open"
                and snap.open_until > now
                and st.breaker.state is not CircuitState.OPEN
            ):
                # Keep what this replica knows of its own calls' order (breaker.record).
                adopted = BreakerState(
                    CircuitState.OPEN,
                    snap.open_until,
                    snap.trips,
                    last_ok_started=st.breaker.last_ok_started,
                    last_fail_started=st.breaker.last_fail_started,
                )
                self._set(st, adopted, snap.updated_at)
            elif snap.state == "closed" and st.breaker.state is CircuitState.OPEN:
                self._set(
                    st,
                    BreakerState(
                        last_ok_started=st.breaker.last_ok_started,
                        last_fail_started=st.breaker.last_fail_started,
                    ),
                    snap.updated_at,
                )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        for task in list(self._pending):
            task.cancel()
