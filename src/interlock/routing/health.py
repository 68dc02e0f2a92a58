"""What this replica knows about each deployment right now.

Circuit breaker state, Retry-After cooldowns, in-flight count, latency EWMA and the
RPM/TPM/concurrency windows. Breaker transitions are published to the shared state and
a background sync adopts other replicas' trips, so a provider one replica found dead is
avoided by all within ``state.sync_interval_s`` (plus one round trip).
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
from interlock.settings import BreakerSettings, Settings
from interlock.state.base import BreakerSnapshot, SharedState
from interlock.telemetry.metrics import Metrics

log = logging.getLogger("interlock.events")

_STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
_EWMA_ALPHA = 0.3
# A latency sample older than this no longer counts, so a recovered (or never tried)
# deployment gets explored again by least-latency routing.
_LATENCY_STALE_S = 30.0


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
        if self.ewma_s is None or now - self.sampled_at > _LATENCY_STALE_S:
            return None
        return self.ewma_s


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
    ) -> None:
        """The outcome of an acquired call. ``ok`` False with counts_as_failure False is a
        failure that says nothing about the deployment's health (a client error, a 429)."""
        st = self._states[name]
        now = self._clock()
        if st.in_flight > 0:
            self._metrics.upstream_busy(name, -1)
        st.in_flight = max(0, st.in_flight - 1)
        if retry_after_s is not None:
            st.cooldown_until = max(st.cooldown_until, now + retry_after_s)
        healthy = ok or not counts_as_failure
        if ok:
            st.ewma_s = (
                duration_s
                if st.ewma_s is None
                else _EWMA_ALPHA * duration_s + (1 - _EWMA_ALPHA) * st.ewma_s
            )
            st.sampled_at = now
        new = breaker.record(st.cfg, st.breaker, now, ok=healthy, duration_s=duration_s)
        self._set(st, new, now)

    def reset(self, name: str) -> None:
        """Operator action: close the breaker and forget cooldown and latency history."""
        st = self._states[name]
        st.cooldown_until = 0.0
        st.ewma_s = None
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
                self._set(
                    st,
                    BreakerState(CircuitState.OPEN, snap.open_until, snap.trips),
                    snap.updated_at,
                )
            elif snap.state == "closed" and st.breaker.state is CircuitState.OPEN:
                self._set(st, BreakerState(), snap.updated_at)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        for task in list(self._pending):
            task.cancel()
