"""The alert state machine as a spec: thresholds, once-only firing, resolve, cooldown,
learned baselines, and the exported rules (no I/O)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from interlock.alerts.engine import AlertEngine
from interlock.alerts.export import expression, grafana_dashboard, metric_names, prometheus_rules
from interlock.alerts.readings import ALL, BudgetReading, Reading, quantile
from interlock.alerts.rules import Rule, rules_from
from interlock.cli.alerts_cmd import render_rules
from interlock.settings import AlertSettings
from interlock.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = [0.05, 0.1, 0.25, 0.5, 1.0, float("inf")]


def _engine(*rules: Rule, cooldown_s: float = 0.0) -> AlertEngine:
    return AlertEngine(list(rules), cooldown_s=cooldown_s, min_requests=10, baseline_window_s=60)


class Traffic:
    """Cumulative counters, advanced one step at a time like a real /metrics."""

    def __init__(self) -> None:
        self.t = 0.0
        self.total = 0.0
        self.errors = 0.0
        self.buckets = dict.fromkeys(BOUNDS, 0.0)
        self.depth = 0.0

    def step(self, n: int, errors: int = 0, latency: float = 0.04, dt: float = 10.0) -> Reading:
        self.t += dt
        self.total += n
        self.errors += errors
        for b in BOUNDS:
            if latency <= b:
                self.buckets[b] += n
        return Reading(self.t, requests={ALL: [self.total, self.errors]},
                       buckets={ALL: dict(self.buckets)}, queue_depth=self.depth)  # fmt: skip


def _run(engine: AlertEngine, reading: Reading) -> list[tuple[str, str, str]]:
    engine.add(reading)
    return [(t.alert.rule, t.alert.severity, t.state) for t in engine.evaluate(reading.at)]


def test_error_rate_fires_warning_then_critical_once_each_and_resolves() -> None:
    rule = Rule("errors", "error_rate", 0.01, 0.05, window_s=10)
    eng, tr = _engine(rule), Traffic()
    assert _run(eng, tr.step(100)) == []
    assert _run(eng, tr.step(100, errors=2)) == [("errors", "warning", "firing")]
    assert _run(eng, tr.step(100, errors=3)) == []  # still firing: not sent again
    assert _run(eng, tr.step(100, errors=10)) == [("errors", "critical", "firing")]
    assert _run(eng, tr.step(100, errors=10)) == []
    assert sorted(_run(eng, tr.step(100))) == [
        ("errors", "critical", "resolved"),
        ("errors", "warning", "resolved"),
    ]
    assert eng.active() == [] and len(eng.recent) == 2


def test_too_few_requests_give_no_verdict() -> None:
    eng, tr = _engine(Rule("errors", "error_rate", 0.01, 0.05, window_s=10)), Traffic()
    _run(eng, tr.step(100))
    assert _run(eng, tr.step(5, errors=5)) == []  # 5 < min_requests


def test_cooldown_keeps_a_flapping_signal_from_paging_again() -> None:
    eng, tr = _engine(Rule("q", "queue_depth", 10, 100, window_s=10), cooldown_s=60), Traffic()
    tr.depth = 20
    assert _run(eng, tr.step(0)) == [("q", "warning", "firing")]
    tr.depth = 0
    assert _run(eng, tr.step(0)) == [("q", "warning", "resolved")]
    tr.depth = 20
    assert _run(eng, tr.step(0)) == []  # back within the cooldown
    assert _run(eng, tr.step(0, dt=60)) == [("q", "warning", "firing")]


def test_latency_against_a_learned_baseline() -> None:
    eng, tr = _engine(Rule("lat", "latency_p95", 2, 5, window_s=10)), Traffic()
    for _ in range(6):  # a minute of 40 ms answers: the baseline
        assert _run(eng, tr.step(100, latency=0.04)) == []
    assert _run(eng, tr.step(100, latency=0.09)) == [("lat", "warning", "firing")]
    assert _run(eng, tr.step(100, latency=0.9)) == [("lat", "critical", "firing")]
    assert len(_run(eng, tr.step(100, latency=0.04))) == 2  # both resolve


def test_daily_spend_per_budget_and_team() -> None:
    rule = Rule("spend", "daily_spend", 1.2, 1.5, window_s=10, team="red")
    eng = _engine(rule)

    def budgets(spent: float) -> Reading:
        return Reading(0, budgets=[
            BudgetReading("b1", "team", "red", "daily", spent, 10.0),
            BudgetReading("b2", "team", "blue", "daily", 99.0, 10.0),  # another team's
        ])  # fmt: skip

    assert _run(eng, budgets(12.5)) == [("spend", "warning", "firing")]
    assert eng.active()[0].instance == "b1"
    assert _run(eng, budgets(16.0)) == [("spend", "critical", "firing")]


def test_quantile_interpolates_like_prometheus() -> None:
    old = dict.fromkeys(BOUNDS, 0.0)
    new = {0.05: 50.0, 0.1: 100.0, 0.25: 100.0, 0.5: 100.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, old, new) == 0.05
    assert abs((quantile(0.95, old, new) or 0) - 0.095) < 1e-9


def test_default_rules_are_the_seed_thresholds() -> None:
    got = {(r.metric, r.warning, r.critical) for r in rules_from(AlertSettings())}
    assert got == {
        ("latency_p95", 2, 5),
        ("error_rate", 0.01, 0.05),
        ("queue_depth", 1000, 10000),
        ("daily_spend", 1.2, 1.5),
    }


def _known_metrics() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():  # type: ignore[union-attr]
        names.add(family.name)
        names |= {s.name for s in family.samples}
        if family.type in ("histogram", "counter"):
            names |= {family.name + sfx for sfx in ("_bucket", "_count", "_sum", "_total")}
    return names


def test_exported_files_are_current_parse_and_name_real_metrics() -> None:
    cfg = AlertSettings()
    rules = rules_from(cfg)
    prom_path = ROOT / "deploy/prometheus/alerts.yml"
    graf_path = ROOT / "deploy/grafana/interlock-dashboard.json"
    # Generated from the rules: regenerate with `interlock alerts export`.
    assert prom_path.read_text() == render_rules(prometheus_rules(rules, cfg.baseline_window_s))
    doc = yaml.safe_load(prom_path.read_text())
    alerts = doc["groups"][0]["rules"]
    assert len(alerts) == 8
    for a in alerts:
        assert set(a) == {"alert", "expr", "for", "labels", "annotations"}
        assert a["labels"]["severity"] in ("warning", "critical")
        assert re.fullmatch(r"\d+[smh]", a["for"])
        assert a["expr"].count("(") == a["expr"].count(")")
    import json

    dash = json.loads(graf_path.read_text())
    assert dash == json.loads(json.dumps(grafana_dashboard(rules, cfg.baseline_window_s)))
    exprs = [a["expr"] for a in alerts] + [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and used <= _known_metrics(), used - _known_metrics()


def test_route_and_team_rules_narrow_the_expression() -> None:
    by_route = Rule("r", "error_rate", 0.01, 0.05, 300, route="/v1/embeddings")
    assert 'route="/v1/embeddings"' in expression(by_route, 3600)
    by_team = Rule("t", "daily_spend", 1.2, 1.5, 300, team="red")
    assert 'subject="red"' in expression(by_team, 3600)
