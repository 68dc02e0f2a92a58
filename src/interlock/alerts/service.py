"""The alert loop: read the metrics, evaluate the rules, deliver what changed.

With ``serve --workers N`` every process runs this service, but only the one holding an
exclusive lock on ``<state_dir>/alerts.lock`` evaluates: it reads the metrics of *all*
processes (the multiprocess collector, as ``/metrics`` does), so one verdict covers all
traffic and each alert is delivered once. It also publishes the budget gauges and writes
active and recent alerts to ``<state_dir>/alerts-state.json``, which any process serves
on ``GET /admin/alerts``. When the leader exits, its lock is released and another process
takes over on its next tick (the new leader starts with an empty window).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from interlock.alerts.engine import AlertEngine, Transition
from interlock.alerts.readings import BudgetReading, read
from interlock.alerts.rules import rules_from
from interlock.alerts.sinks import LogSink, Sink, SlackSink, WebhookSink
from interlock.settings import AlertSettings
from interlock.storage.files import private_dir, write_private
from interlock.telemetry.metrics import Metrics
from interlock.webhooks import WebhookSender

log = logging.getLogger("interlock.alerts")

BudgetSource = Callable[[], Awaitable[list[BudgetReading]]]

__all__ = ["AlertService", "BudgetReading"]


class AlertService:
    def __init__(
        self,
        cfg: AlertSettings,
        metrics: Metrics,
        budgets: BudgetSource,
        state_dir: str,
        *,
        default_secret: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self._metrics = metrics
        self._budgets = budgets
        self._state_dir = Path(state_dir)
        self._default_secret = default_secret
        self._clock = clock
        self.engine = AlertEngine(
            rules_from(cfg), cfg.cooldown_s, cfg.min_requests, cfg.baseline_window_s, cfg.recent
        )
        self._sinks: list[Sink] | None = None
        self._senders: list[WebhookSender] = []
        self._lock_fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self.evaluated_at: float | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._deliveries:
            # Give in-flight deliveries a moment, then give up on them.
            _done, pending = await asyncio.wait(self._deliveries, timeout=5.0)
            for t in pending:
                t.cancel()
        for sender in self._senders:
            await sender.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock for another process
            self._lock_fd = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:
                log.warning("alert evaluation failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.cfg.interval_s)

    def _lead(self) -> bool:
        if self._lock_fd is not None:
            return True
        private_dir(self._state_dir)
        fd = os.open(self._state_dir / "alerts.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    @property
    def leader(self) -> bool:
        return self._lock_fd is not None

    # -- one evaluation ------------------------------------------------------------------

    async def tick(self) -> list[Transition]:
        if not self._lead():
            return []
        budgets = await self._budgets()
        for b in budgets:
            labels = (b.budget, b.scope, b.subject or "", b.window)
            self._metrics.set_budget(labels, b.spent_usd, b.remaining_usd, b.planned_usd)
        if not self.cfg.enabled:
            return []
        now = self._clock()
        self.engine.add(read(self._metrics.collect(), now, budgets))
        transitions = self.engine.evaluate(now)
        self.evaluated_at = now
        for t in transitions:
            a = t.alert
            self._metrics.set_alert(a.rule, a.severity, t.state == "firing", changed=True)
            for sink in self._sinks_now():
                task = asyncio.get_running_loop().create_task(self._deliver(sink, t))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        self._write_state()
        return transitions

    def _sinks_now(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = []
            for s in self.cfg.sinks:
                if s.kind == "log":
                    self._sinks.append(LogSink())
                    continue
                assert s.url is not None
                secret = s.secret.get_secret_value() if s.secret is not None else None
                if secret is None and self._default_secret is not None:
                    secret = self._default_secret()
                sender = WebhookSender(
                    secret=secret or "",
                    timeout_s=self.cfg.timeout_s,
                    max_attempts=self.cfg.max_attempts,
                    base_delay_s=0.5,
                    max_delay_s=10.0,
                    max_total_s=60.0,
                    allow=self.cfg.allow_hosts,
                )
                self._senders.append(sender)
                sink = SlackSink(sender, s.url) if s.kind == "slack" else WebhookSink(sender, s.url)
                self._sinks.append(sink)
        return self._sinks

    async def _deliver(self, sink: Sink, t: Transition) -> None:
        try:
            ok = await sink.send(t.alert, t.state)
        except Exception as exc:
            ok = False
            log.warning("alert delivery failed (%s)", type(exc).__name__)
        if not ok:
            log.warning("alert %s (%s) was not delivered to a sink", t.alert.id, t.state)

    # -- what GET /admin/alerts shows --------------------------------------------------

    def view(self) -> dict[str, Any]:
        """Active and recent alerts: this process's if it leads, else the leader's file."""
        if not self.leader:
            try:
                data: dict[str, Any] = orjson.loads(self._state_file().read_bytes())
                data["leader"] = False
                return data
            except (OSError, orjson.JSONDecodeError):
                return {"active": [], "recent": [], "evaluated_at": None, "leader": False}
        return {**self._state(), "leader": True}

    def _state(self) -> dict[str, Any]:
        return {
            "active": [a.to_dict() for a in self.engine.active()],
            "recent": [a.to_dict() for a in reversed(self.engine.recent)],
            "evaluated_at": self.evaluated_at,
            "rules": [
                {
                    "name": r.name,
                    "metric": r.metric,
                    "warning": r.warning,
                    "critical": r.critical,
                    "window_s": r.window_s,
                    "route": r.route,
                    "team": r.team,
                    "baseline_s": r.baseline_s,
                }
                for r in self.engine.rules
            ],
        }

    def _state_file(self) -> Path:
        return self._state_dir / "alerts-state.json"

    def _write_state(self) -> None:
        write_private(self._state_file(), orjson.dumps(self._state()))  # 0600, atomic
