"""The alert state machine: readings in, firing and resolved alerts out. No I/O.

Each (rule, instance, severity) is one alert: ``instance`` is "" for gateway-wide signals
and the budget id for daily spend. An alert fires when its signal passes the threshold
(for ``for_s`` if set), is not sent again while it stays firing (deduplication), and
resolves when the signal falls back. A resolved alert may not fire again until
``cooldown_s`` has passed, so a signal hovering at a threshold pages once, not every
evaluation. Warning and critical are separate alerts: a climbing signal fires warning
then critical, once each.

Signals with too little traffic in the window (``min_requests``) give no verdict: the
alert keeps its state rather than resolving on silence or firing on one slow request.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from interlock.alerts.readings import ALL, Reading, count_between, quantile
from interlock.alerts.rules import SEVERITIES, Rule, format_value


@dataclass(slots=True)
class Alert:
    id: str
    rule: str
    metric: str
    severity: str
    instance: str
    state: str  # firing | resolved
    value: float
    threshold: float
    summary: str
    started_at: str
    resolved_at: str | None = None
    route: str | None = None
    team: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Transition:
    alert: Alert
    state: str  # firing | resolved


@dataclass(slots=True)
class _Track:
    pending_since: float | None = None
    firing: Alert | None = None
    resolved_at: float | None = None


@dataclass(slots=True)
class _Verdict:
    value: float  # what is compared with the thresholds
    shown: float  # what the summary reports (p95 seconds for latency)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass
class AlertEngine:
    rules: list[Rule]
    cooldown_s: float
    min_requests: int
    baseline_window_s: float
    recent_max: int = 200
    history: deque[Reading] = field(default_factory=deque)
    recent: deque[Alert] = field(default_factory=deque)
    _tracks: dict[tuple[str, str, str], _Track] = field(default_factory=dict)

    # -- readings ------------------------------------------------------------------

    def add(self, reading: Reading) -> None:
        self.history.append(reading)
        keep = max((r.window_s for r in self.rules), default=0.0) + self.baseline_window_s
        while len(self.history) > 2 and self.history[1].at <= reading.at - keep:
            self.history.popleft()

    def _at_or_before(self, t: float) -> Reading | None:
        """The newest reading taken at or before ``t`` (None: history is too short)."""
        found = None
        for r in self.history:
            if r.at <= t + 1e-6:
                found = r
            else:
                break
        return found

    # -- signals ---------------------------------------------------------------------

    def _signals(self, rule: Rule, now: Reading) -> dict[str, _Verdict | None]:
        if rule.metric == "queue_depth":
            return {"": _Verdict(now.queue_depth, now.queue_depth)}
        if rule.metric == "daily_spend":
            return {
                b.budget: _Verdict(b.spent_usd / b.planned_usd, b.spent_usd)
                for b in now.budgets
                if b.window == "daily"
                and b.planned_usd
                and (rule.team is None or (b.scope == "team" and b.subject == rule.team))
            }
        old = self._at_or_before(now.at - rule.window_s) or (
            self.history[0] if self.history else None
        )
        if old is None or old is now:
            return {"": None}
        if rule.metric == "error_rate":
            if rule.team is not None:
                new_row = now.teams.get(rule.team, [0.0, 0.0])
                old_row = old.teams.get(rule.team, [0.0, 0.0])
            else:
                key = rule.route or ALL
                new_row = now.requests.get(key, [0.0, 0.0])
                old_row = old.requests.get(key, [0.0, 0.0])
            total, errors = new_row[0] - old_row[0], new_row[1] - old_row[1]
            if total < self.min_requests:
                return {"": None}
            return {"": _Verdict(errors / total, errors / total)}
        # latency_p95: the window's p95 against the baseline
        key = rule.route or ALL
        new_b, old_b = now.buckets.get(key, {}), old.buckets.get(key, {})
        if count_between(old_b, new_b) < self.min_requests:
            return {"": None}
        p95 = quantile(0.95, old_b, new_b)
        baseline = rule.baseline_s if rule.baseline_s is not None else self._baseline(key, old)
        if p95 is None or not baseline:
            return {"": None}
        return {"": _Verdict(p95 / baseline, p95)}

    def _baseline(self, route: str, window_start: Reading) -> float | None:
        """p95 over the history before the current window (so a spike cannot raise its
        own baseline), given enough requests there."""
        first = self._at_or_before(window_start.at - self.baseline_window_s) or self.history[0]
        if first is window_start:
            return None
        old_b, new_b = first.buckets.get(route, {}), window_start.buckets.get(route, {})
        if count_between(old_b, new_b) < self.min_requests:
            return None
        return quantile(0.95, old_b, new_b)

    # -- the state machine -------------------------------------------------------------

    def evaluate(self, now: float) -> list[Transition]:
        if not self.history:
            return []
        latest = self.history[-1]
        out: list[Transition] = []
        for rule in self.rules:
            signals = self._signals(rule, latest)
            # Instances that vanished (a budget deleted) resolve.
            for (name, instance, _sev), track in self._tracks.items():
                if name == rule.name and instance not in signals and track.firing is not None:
                    out.append(self._resolve(track, now))
            for instance, verdict in signals.items():
                if verdict is None:
                    continue
                for sev in SEVERITIES:
                    t = self._step(rule, instance, sev, verdict, now)
                    if t is not None:
                        out.append(t)
        return out

    def _step(
        self, rule: Rule, instance: str, sev: str, v: _Verdict, now: float
    ) -> Transition | None:
        track = self._tracks.setdefault((rule.name, instance, sev), _Track())
        over = v.value > rule.threshold(sev)
        if not over:
            track.pending_since = None
            return self._resolve(track, now) if track.firing is not None else None
        if track.firing is not None:
            track.firing.value = round(v.value, 6)  # still firing: deduplicated
            return None
        if track.pending_since is None:
            track.pending_since = now
        if now - track.pending_since < rule.for_s:
            return None
        if track.resolved_at is not None and now - track.resolved_at < self.cooldown_s:
            return None  # cooling down: the condition is back too soon to page again
        shown = (
            f"p95 {v.shown * 1000:.0f} ms, {format_value(rule.metric, v.value)}"
            if rule.metric == "latency_p95"
            else format_value(rule.metric, v.value)
        )
        where = f" (budget {instance})" if instance else ""
        track.firing = Alert(
            id="al_" + secrets.token_hex(8),
            rule=rule.name,
            metric=rule.metric,
            severity=sev,
            instance=instance,
            state="firing",
            value=round(v.value, 6),
            threshold=rule.threshold(sev),
            summary=f"{sev}: {rule.describe(sev)}{where}: now {shown}",
            started_at=_iso(now),
            route=rule.route,
            team=rule.team,
        )
        return Transition(track.firing, "firing")

    def _resolve(self, track: _Track, now: float) -> Transition:
        alert = track.firing
        assert alert is not None
        track.firing, track.pending_since, track.resolved_at = None, None, now
        alert.state, alert.resolved_at = "resolved", _iso(now)
        self.recent.append(alert)
        while len(self.recent) > self.recent_max:
            self.recent.popleft()
        return Transition(alert, "resolved")

    def active(self) -> list[Alert]:
        return [t.firing for t in self._tracks.values() if t.firing is not None]
