"""The degradation controller: measures the signals, runs the ladder, agrees with peers.

Every ``evaluate_every_s`` it turns recent outcomes into signals (upstream error rate,
share of open circuits, p95 latency against the SLO, queue depth, budget burn), steps
the pure ladder in :mod:`interlock.resilience.degradation`, reports its level to the
shared state and reads the cluster's: the effective level is the operator's forced
level if one is set anywhere, else the worst level any live replica reports — so all
replicas agree within one evaluation.

What it hears (docs/decisions.md, "Only upstream failures move shared state"): the
gateway's request path reports each request that was routed to an upstream, once, when
its outcome is known — :meth:`served` with the upstream latency, or :meth:`failed` with
the error. A failure counts only when the error blames the upstream
(:attr:`interlock.errors.InterlockError.blames_upstream`); client errors, a client's own
deadline, disconnects, internal errors and the gateway's own refusals are not outcomes
at all, so they neither raise the error rate nor dilute it. The latency is the time from
routing to the answer (non-streaming) or to the first chunk (streaming): what the
upstreams took, not what a slow client or a long stream took.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

from interlock.errors import InterlockError
from interlock.resilience.degradation import (
    LadderConfig,
    LadderState,
    Level,
    Thresholds,
    evaluate,
    force,
)
from interlock.routing.health import DeploymentHealth
from interlock.routing.loop import Periodic
from interlock.settings import DegradationSettings
from interlock.state.base import SharedState
from interlock.telemetry.metrics import Metrics

log = logging.getLogger("interlock.events")


def ladder_config(s: DegradationSettings) -> LadderConfig:
    signals = {name: Thresholds(t.limited, t.cached, t.minimal) for name, t in s.signals.items()}
    return LadderConfig(signals, s.down_after_s, s.up_after_s, s.recover_ratio)


class DegradationController:
    def __init__(
        self,
        cfg: DegradationSettings,
        health: DeploymentHealth,
        shared: SharedState,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._ladder = ladder_config(cfg)
        self._health = health
        self._shared = shared
        self._metrics = metrics
        self._clock = clock
        self._replica = uuid.uuid4().hex[:12]
        self.state = LadderState()
        if cfg.mode != "auto":
            self.state = force(self.state, Level.parse(cfg.mode), clock())
        self._cluster_forced: Level | None = None
        self._cluster_worst = Level.FULL
        # (when, failed, upstream latency or None for a failure)
        self._outcomes: deque[tuple[float, bool, float | None]] = deque(maxlen=20_000)
        self.queue_depth: Callable[[], float] = lambda: 0.0
        self.budget_burn: Callable[[], float] = lambda: 0.0
        self.signals: dict[str, float] = {}
        self._loop = Periodic("degradation evaluation", self.tick, cfg.evaluate_every_s)
        self.effective = self.state.effective
        self.label = self.effective.label.encode()

    def served(self, upstream_s: float) -> None:
        """A request an upstream answered, ``upstream_s`` after it was routed."""
        self._outcomes.append((self._clock(), False, upstream_s))

    def failed(self, err: InterlockError) -> None:
        """A routed request that ended in ``err``: counted only if it blames the upstream.
        (The ladder's own refusals, ``degraded`` and ``circuit_open``, do not, or a
        degraded gateway would keep itself degraded.)"""
        if err.blames_upstream:
            self._outcomes.append((self._clock(), True, None))

    def measure(self, now: float) -> dict[str, float]:
        horizon = now - self._cfg.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()
        n = len(self._outcomes)
        signals = {
            "open_circuit_ratio": self._health.open_ratio(),
            "queue_depth": float(self.queue_depth()),
            "budget_burn": float(self.budget_burn()),
        }
        if n >= self._cfg.min_requests:
            signals["error_rate"] = sum(1 for o in self._outcomes if o[1]) / n
            lat = sorted(o[2] for o in self._outcomes if o[2] is not None)
            if self._cfg.latency_slo_s and lat:
                p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
                signals["latency_ratio"] = p95 / self._cfg.latency_slo_s
        return signals

    def _update(self) -> None:
        local = self.state.effective
        if self._cluster_forced is not None:
            eff = self._cluster_forced
        elif self.state.forced is not None:
            eff = local
        else:
            eff = max(local, self._cluster_worst)
        if eff is not self.effective:
            log.warning(
                "degradation level %s -> %s (%s)",
                self.effective.label,
                eff.label,
                self.state.reason,
                extra={"event": "degradation_level", "from": self.effective.label, "to": eff.label},
            )
            self._metrics.degradation_level.set(int(eff))
        self.effective = eff
        self.label = eff.label.encode()

    async def tick(self) -> None:
        now = self._clock()
        self.signals = self.measure(now)
        self.state = evaluate(self._ladder, self.state, self.signals, now)
        await self._shared.report_level(
            self._replica, int(self.state.level), ttl_s=max(3.0, 3 * self._cfg.evaluate_every_s)
        )
        cluster = await self._shared.cluster_levels()
        if cluster is not None:
            forced, worst = cluster
            self._cluster_forced = Level.parse(forced) if forced else None
            self._cluster_worst = Level(worst)
            # The shared override is authoritative: an operator's "auto" on any replica
            # releases a level forced on another.
            if self._cluster_forced != self.state.forced:
                self.state = force(self.state, self._cluster_forced, now)
        self._update()

    async def set_forced(self, level: Level | None) -> bool:
        """Operator override for every replica (None hands control back to the signals)."""
        self.state = force(self.state, level, self._clock())
        shared = await self._shared.set_forced_level(level.label if level is not None else None)
        self._cluster_forced = level
        self._update()
        return shared

    async def start(self) -> None:
        if self.state.forced is not None:
            # A level set in the configuration is an override like the admin API's.
            await self._shared.set_forced_level(self.state.forced.label)
            self._cluster_forced = self.state.forced
            self._update()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
