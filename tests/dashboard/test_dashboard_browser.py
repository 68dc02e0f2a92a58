"""The dashboard in a real headless Chromium, while traffic runs through two workers.

Logs in through the form, checks that tiles, charts and tables fill with live numbers,
and that the page's totals equal what ``/metrics`` counts (process-wide: two workers),
then saves a screenshot (under the test's folder and test-output/; with
INTERLOCK_DOCS_SCREENSHOT=1 also docs/img/dashboard.png).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.dashboard.traffic import error_type, is_client_route
from interlock.sim import SimControl
from tests.dashboard.browser import chromium
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.metrics import scrape

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
NUMBER = re.compile(r"[-\d,.]+")
DOCS_SHOT = (
    ROOT / "docs" / "img" / "dashboard.png"
    if os.environ.get("INTERLOCK_DOCS_SCREENSHOT") == "1"
    else None
)


@pytest.fixture
def gateway(sim_url: str, sim: SimControl, tmp_path: Path) -> Iterator[GatewayProcess]:
    cfg = sim_config(sim_url, tmp_path / "state", cache={"sql": {"enabled": True}})
    gw = GatewayProcess(cfg, tmp_path, workers=2).start()
    try:
        yield gw
    finally:
        gw.stop()


def metric_totals(text: str) -> dict[str, int]:
    """What the page's totals must equal, computed independently from /metrics."""
    requests = errors = by_status = hits = 0.0
    typed = False
    for (name, labels), value in scrape(text).items():
        lab = dict(labels)
        if name == "interlock_requests_total" and is_client_route(lab["route"]):
            requests += value
            if error_type(int(lab["status"])) is not None:
                by_status += value
        elif name == "interlock_errors_total" and is_client_route(lab["route"]):
            typed = True  # the gateway counts errors by type: the page shows those
            errors += value
        elif name == "interlock_cache_hits_total":
            hits += value
    if not typed:
        errors = by_status
    return {"requests": int(requests), "errors": int(errors), "hits": int(hits)}


class Traffic:
    """Hits, misses, errors and spend from two teams, until stopped (bounded)."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url = url
        self.keys = keys
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=self.url, timeout=30) as c:
            i = 0
            while not self.stop.is_set() and time.monotonic() < deadline:
                i += 1
                team = "search" if i % 3 else "support"
                auth = {"authorization": f"Bearer {self.keys[team]}"}
                body = {
                    "model": "chat",
                    "temperature": 0,
                    # Every 4th prompt is new (a miss, charged); the rest repeat (hits).
                    "messages": [{"role": "user", "content": f"q{i if i % 4 == 0 else i % 3}"}],
                }
                c.post("/v1/chat/completions", json=body, headers=auth)
                if i % 5 == 0:  # client error: invalid body
                    c.post("/v1/chat/completions", json={"model": "chat"}, headers=auth)
                if i % 7 == 0:  # auth error
                    c.post(
                        "/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"}
                    )
                if i % 11 == 0:  # unknown model
                    c.post("/v1/chat/completions", json={**body, "model": "zzz"}, headers=auth)
                self.sent += 1
                time.sleep(0.03)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the DOM may be mid-update
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def number(driver: Any, element_id: str) -> float | None:
    text = driver.find_element("id", element_id).text.strip()
    m = NUMBER.search(text)
    if not m or text.startswith("—"):
        return None
    return float(m.group().replace(",", ""))


def setup_tenants(c: httpx.Client) -> dict[str, str]:
    keys = {}
    for team, tag in (("search", "autocomplete"), ("support", "chatbot")):
        r = c.post("/admin/keys", headers=ADMIN, json={"team": team, "tags": [tag]})
        assert r.status_code == 201, r.text
        keys[team] = r.json()["key"]
    for budget in (
        {"scope": "team", "subject": "search", "window": "daily", "limit_usd": 5},
        {"scope": "tag", "subject": "chatbot", "window": "daily", "budget_usd": 0.00002},
    ):
        assert c.post("/admin/budgets", headers=ADMIN, json=budget).status_code == 201
    return keys


def test_dashboard_live_numbers_match_metrics(gateway: GatewayProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as c, chromium() as driver:
        keys = setup_tenants(c)
        driver.get(gateway.url + "/dashboard")
        # Unauthenticated: the login form, no data.
        assert driver.find_element("id", "login").is_displayed()
        assert not driver.find_element("id", "board").is_displayed()
        box = driver.find_element("id", "admin-key")
        box.send_keys(keys["search"])  # a valid key, but not an admin's
        driver.find_element("id", "login-submit").click()
        wait_for(lambda: "not an admin" in driver.find_element("id", "login-error").text,
                 what="the non-admin refusal")  # fmt: skip
        box.clear()
        box.send_keys(MASTER_KEY)
        driver.find_element("id", "login-submit").click()
        wait_for(lambda: driver.find_element("id", "board").is_displayed(), what="the board")
        assert MASTER_KEY not in driver.current_url

        with Traffic(gateway.url, keys) as traffic:
            wait_for(lambda: traffic.sent >= 40, timeout=60, what="traffic")
            # Live: rates, percentiles and hit rate are computed from successive samples.
            wait_for(lambda: (number(driver, "kpi-rps") or 0) > 0, what="requests/s")
            for tile in ("kpi-p50", "kpi-p95", "kpi-p99"):
                wait_for(lambda t=tile: "ms" in driver.find_element("id", t).text, what=tile)  # type: ignore[misc]
            wait_for(lambda: (number(driver, "kpi-hit-rate") or 0) > 0, what="hit rate")
            wait_for(lambda: "%" in driver.find_element("id", "kpi-error-rate").text)
            seen = number(driver, "total-requests") or 0
            mid = metric_totals(c.get("/metrics").text)
            assert 0 < seen <= mid["requests"]
            # ...and it keeps moving while traffic runs.
            wait_for(lambda: (number(driver, "total-requests") or 0) > seen, what="a newer sample")
            assert chart_has_lines(driver, "chart-rps") and chart_has_lines(driver, "chart-latency")
            if DOCS_SHOT:  # the picture in docs/dashboard.md: half a minute of traffic
                time.sleep(30)
                shutil.copy(save_screenshot(driver, tmp_path, "docs.png"), DOCS_SHOT)

        # Traffic stopped: the page's totals settle on exactly what /metrics says.
        final = metric_totals(c.get("/metrics").text)
        assert final["requests"] > 0 and final["errors"] > 0 and final["hits"] > 0
        for element_id, key in (
            ("total-requests", "requests"),
            ("total-errors", "errors"),
            ("total-cache-hits", "hits"),
        ):
            wait_for(lambda e=element_id, k=key: number(driver, e) == final[k],  # type: ignore[misc]
                     what=f"{element_id} == {final[key]}")  # fmt: skip
        errors_table = driver.find_element("id", "errors-body").text
        assert "client" in errors_table
        client_row = driver.find_element(
            "css selector", "#errors-body tr[data-type=client] td.count"
        )
        assert int(client_row.text.replace(",", "")) > 0
        # Spend today by team and feature, against their budgets; circuits; level.
        wait_for(lambda: "search" in driver.find_element("id", "spend-team-body").text,
                 what="spend by team")  # fmt: skip
        assert "support" in driver.find_element("id", "spend-team-body").text
        assert "autocomplete" in driver.find_element("id", "spend-feature-body").text
        assert "chat" in driver.find_element("id", "spend-model-body").text
        assert driver.find_elements("css selector", "#spend-team-body tr[data-group=search] meter")
        assert "$" in driver.find_element("id", "kpi-spend").text
        assert "$" in driver.find_element("id", "kpi-saved").text
        assert "daily budget of team search" in driver.find_element("id", "budgets-body").text
        state = driver.find_element(
            "css selector", "#circuits-body tr[data-deployment=sim-small] td.state"
        )
        assert state.text == "closed"
        assert driver.find_element("id", "degradation").text.startswith("level: full")
        assert driver.find_element("id", "kpi-queue").text == "0"
        # The chatbot tag overspent its planned budget: a budget alert is active. Budget
        # alerts are raised by the worker process that sees the spend, and the browser's
        # keep-alive connection stays on one worker: spend through fresh connections so
        # that every worker has seen it.
        for _ in range(12):
            httpx.post(gateway.url + "/v1/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {keys['support']}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        wait_for(lambda: "tag chatbot" in driver.find_element("id", "alerts-body").text,
                 timeout=30, what="the budget alert")  # fmt: skip
        assert "alert" in driver.find_element("id", "alert-count").text

        shot = save_screenshot(driver, tmp_path, "dashboard.png")
        out = ROOT / "test-output"
        out.mkdir(exist_ok=True)
        shutil.copy(shot, out / "dashboard.png")
        assert shot.stat().st_size > 10_000
        problems = [
            e for e in driver.get_log("browser")
            if e["level"] == "SEVERE"
            # Expected refusals: the non-admin login, the alert engine's route before it exists.
            and "admin/dashboard/data - Failed to load resource: the server responded with a status of 403" not in e["message"]
            and "admin/alerts - Failed to load resource: the server responded with a status of 404" not in e["message"]
        ]  # fmt: skip
        assert not problems, problems  # no script error, no CSP violation

        # Sign out forgets the key: a reload shows the login form again.
        driver.find_element("id", "signout").click()
        driver.get(gateway.url + "/dashboard")
        assert driver.find_element("id", "login").is_displayed()
        assert driver.execute_script("return sessionStorage.length") == 0


def chart_has_lines(driver: Any, chart_id: str) -> bool:
    """The chart's canvas has coloured (non-grey) pixels: uPlot drew a series."""
    script = """
        const c = document.querySelector('#' + arguments[0] + ' canvas');
        if (!c) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          const r = d[i], g = d[i + 1], b = d[i + 2], a = d[i + 3];
          if (a > 0 && (Math.max(r, g, b) - Math.min(r, g, b)) > 60) n++;
        }
        return n;"""
    return bool(wait_for(lambda: driver.execute_script(script, chart_id) > 50, what=chart_id))


def save_screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    for _ in range(2):  # a taller window reflows the tables: measure again
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1440, min(max(900, int(height) + 140), 2400))
        time.sleep(1.0)  # a resize redraws the charts; let the next sample land too
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot))
    driver.set_window_size(1440, 900)
    return shot
