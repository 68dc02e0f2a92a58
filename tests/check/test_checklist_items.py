"""Each launch-readiness item on its own: what passes, what warns, what fails, and the fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from interlock.check import config_items as items
from interlock.check import evidence
from interlock.check.served import Served
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


def served(budgets: list[dict[str, Any]] | None, why: str = "") -> Served:
    return Served("http://gw", None, None, None if budgets is None else tuple(budgets),
                  {"/admin/budgets": why} if why else {})  # fmt: skip


def test_spending_limits_need_a_hard_limit_and_the_gateway_s_budgets_are_the_truth() -> None:
    api_hard = {"id": "bud_1", "scope": "team", "limit_usd": "5", "budget_usd": None}
    cfg_hard = {"id": "cfg-0", "scope": "global", "limit_usd": "100", "budget_usd": None}
    api_planned = {"id": "bud_2", "scope": "global", "limit_usd": None, "budget_usd": "10"}
    # read from the gateway: its budgets decide, whatever the file says
    found = items.spending_limits(settings(), served([api_hard, cfg_hard]))
    assert (
        found.status == "pass" and "1 from its configuration, 1 via the admin API" in found.detail
    )
    assert items.spending_limits(settings(), served([api_planned])).status == "warn"
    none = items.spending_limits(settings(), served([]))
    assert none.status == "fail" and "enforces no budget" in none.detail
    hard = settings(spend={"budgets": [{"scope": "team", "subject": "t", "limit_usd": 10}]})
    assert items.spending_limits(hard, served([])).status == "fail"  # another gateway's file
    # not read: the file's budgets are all that is seen; an absence there is unverified
    assert items.spending_limits(hard, served(None, "nothing answers")).status == "pass"
    unverified = items.spending_limits(settings(), served(None, "no admin key was given"))
    assert unverified.status == "warn" and "no admin key was given" in unverified.detail
    assert "--key" in unverified.fix
    planned = settings(spend={"budgets": [{"scope": "global", "budget_usd": 10}]})
    assert items.spending_limits(planned).status == "warn"


def test_models_served_under_their_deployment_s_model_name_are_judged_too() -> None:
    """No ``models`` section: the gateway still serves each deployment under its model
    name (as the embedded default does); those are what the item judges."""
    s = settings(models={}, deployments={
        "a1": {"provider": "a", "model": "m"}, "b1": {"provider": "b", "model": "m"},
        "solo": {"provider": "a", "model": "s"},
        "vec": {"provider": "a", "model": "e", "kind": "embeddings"}})  # fmt: skip
    found = {f.item: f for f in items.fallbacks(s)}
    assert set(found) == {"fallback: m", "fallback: s", "fallback: e"}
    assert found["fallback: m"].status == "pass"
    assert found["fallback: s"].status == "fail"
    assert found["fallback: e"].status == "warn" and "embeddings" in found["fallback: e"].detail
    # what the gateway lists wins; a name it serves that nothing here explains is unknown
    gw = Served("http://gw", ("m", "x"), ({"deployment": "x1", "provider": "p", "model": "x"},
                                           {"deployment": "x2", "provider": "q", "model": "x"}),
                None, {})  # fmt: skip
    found = {f.item: f for f in items.fallbacks(s, gw)}
    assert set(found) == {"fallback: m", "fallback: x"} and found["fallback: x"].status == "pass"
    drift = items.matches_gateway(s, gw)
    assert drift.status == "warn" and "served but not configured: x" in drift.detail
    assert "configured but not served: e, s" in drift.detail
    empty = Served("http://gw", (), (), None, {})
    assert [f.status for f in items.fallbacks(s, empty)] == ["fail"]


def test_a_tiered_alias_is_as_good_as_its_tiers() -> None:
    s = settings(models={"both": {"deployments": ["a1", "b1"]}, "stuck": {"deployments": ["a1"]},
                         "auto": {"tiers": {"small": "stuck", "large": "both"}},
                         "fine": {"tiers": {"small": "both"}}})  # fmt: skip
    found = {f.item: f for f in items.fallbacks(s)}
    assert (
        found["fallback: auto"].status == "fail"
        and "stuck (fail)" in found["fallback: auto"].detail
    )
    assert found["fallback: fine"].status == "pass"


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
