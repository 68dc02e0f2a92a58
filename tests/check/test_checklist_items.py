"""Each launch-readiness item on its own: what passes, what warns, what fails, and the fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from interlock.check import config_items as items
from interlock.check import evidence
from interlock.settings import Settings, parse_settings


def settings(**extra: Any) -> Settings:
    base: dict[str, Any] = {
        "providers": {"a": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
                      "b": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
        "deployments": {"a1": {"provider": "a", "model": "m", "rpm": 600},
                        "b1": {"provider": "b", "model": "m", "rpm": 600}},
        "models": {"both": {"deployments": ["a1", "b1"]},
                   "solo": {"deployments": ["a1"], "fallbacks": [{"models": ["other"]}]},
                   "other": {"deployments": ["b1"]},
                   "stuck": {"deployments": ["a1"]}},
    }  # fmt: skip
    base.update(extra)
    return parse_settings(base, expand_env=False)


def test_an_alias_needs_a_second_provider_directly_or_through_a_fallback() -> None:
    found = {f.item: f for f in items.fallbacks(settings())}
    assert found["fallback: both"].status == "pass"
    assert found["fallback: solo"].status == "pass"  # via the fallback alias on provider b
    stuck = found["fallback: stuck"]
    assert stuck.status == "fail" and "models.stuck.fallbacks" in stuck.fix


def test_spending_limits_need_a_hard_limit() -> None:
    assert items.spending_limits(settings()).status == "fail"
    planned = settings(spend={"budgets": [{"scope": "global", "budget_usd": 10}]})
    assert items.spending_limits(planned).status == "warn"
    assert items.spending_limits(planned, api_hard_limits=1).status == "pass"
    hard = settings(spend={"budgets": [{"scope": "team", "subject": "t", "limit_usd": 10}]})
    assert items.spending_limits(hard).status == "pass"


def test_alerts_must_reach_someone() -> None:
    assert items.alerts(settings()).status == "warn"  # the default sink is the log
    assert items.alerts(settings(alerts={"enabled": False})).status == "fail"
    paged = settings(alerts={"sinks": [{"kind": "slack", "url": "https://hooks.example/x"}]},
                     spend={"budgets": [{"scope": "global", "budget_usd": 10}]})  # fmt: skip
    assert items.alerts(paged).status == "pass"


def test_rate_limits() -> None:
    assert items.rate_limits(settings()).status == "warn"  # deployment rpm only
    assert (
        items.rate_limits(settings(spend={"rate_limits": [{"scope": "global", "rpm": 100}]})).status
        == "pass"
    )


def test_provider_quota_against_the_declared_peak() -> None:
    s = settings()  # 1,200 rpm over both chat deployments
    assert items.provider_quota(s, None, None)[0].status == "fail"
    assert items.provider_quota(s, 5, None)[0].status == "pass"  # 300 rpm: 4× headroom
    assert items.provider_quota(s, 15, None)[0].status == "warn"  # 900 rpm: under 2×
    assert items.provider_quota(s, 30, None)[0].status == "fail"  # 1,800 rpm: over quota
    shared = settings(launch={"traffic_share": {"other": 0.5}})
    (only,) = items.provider_quota(shared, 12, None)
    assert only.item == "quota: other rpm" and only.status == "warn"  # 360 of 600


def _report(tmp_path: Path, rate: float, passed: bool = True, age_days: float = 0) -> Path:
    started = (datetime.now(UTC) - timedelta(days=age_days)).isoformat()
    path = tmp_path / "lt.json"
    path.write_text(json.dumps({"started_at": started, "passed": passed,
                                "arrival": {"target_rps": rate, "achieved_rps": rate * 0.999}}))  # fmt: skip
    return path


def test_the_load_test_must_have_passed_at_twice_the_peak_recently(tmp_path: Path) -> None:
    def status(path: Path | None, peak: float | None = 50) -> str:
        return evidence.loadtest_report(path, peak, 2.0, 7.0).status

    assert status(_report(tmp_path, 100)) == "pass"
    assert status(_report(tmp_path, 99)) == "fail"
    assert status(_report(tmp_path, 150, passed=False)) == "fail"
    assert status(_report(tmp_path, 100, age_days=30)) == "warn"
    assert status(None) == "fail" and status(_report(tmp_path, 100), peak=None) == "fail"


def test_runbooks_are_all_present_in_this_repository(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
    assert evidence.runbooks(repo).status == "pass"
    (tmp_path / "provider-outage.md").write_text("# x")
    partial = evidence.runbooks(tmp_path)
    assert partial.status == "fail" and "redis-down" in partial.detail
