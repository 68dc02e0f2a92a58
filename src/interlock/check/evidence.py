"""Checklist items read from files and from the running instance."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from interlock.check.findings import Finding

__all__ = ["RUNBOOKS", "fetch", "instance", "loadtest_report", "monitoring", "runbooks"]

# One per incident the launch checklist names (docs/runbooks/ in this repository).
RUNBOOKS = (
    "provider-outage", "rate-limit-storm", "budget-exhausted", "queue-backlog",
    "redis-down", "database-down", "cost-spike", "latency-regression",
)  # fmt: skip


def runbooks(directory: Path) -> Finding:
    missing = [name for name in RUNBOOKS if not (directory / f"{name}.md").is_file()]
    if not missing:
        return Finding("runbooks", "pass", f"{len(RUNBOOKS)} runbooks in {directory}")
    return Finding("runbooks", "fail", f"missing in {directory}: {', '.join(missing)}",
                   "copy docs/runbooks/ from the Interlock repository, or set launch.runbooks_dir")  # fmt: skip


def loadtest_report(path: Path | None, peak_rps: float | None, multiple: float, max_age_days: float,
                    now: datetime | None = None) -> Finding:  # fmt: skip
    """A passed ``interlock loadtest`` at ≥ ``multiple`` × the declared peak, recent
    enough to describe the code and config being launched."""
    item = f"load test ≥ {multiple:g}× peak"
    run_it = (f"interlock loadtest --rate {multiple * (peak_rps or 0):g} --duration 300 "
              "--slo p95_ms=... --slo error_rate=0.01 --json loadtest.json")  # fmt: skip
    if peak_rps is None:
        return Finding(item, "fail", "no declared peak", "set launch.peak_rps (or --peak-rps)")
    if path is None:
        return Finding(item, "fail", "no load test report given",
                       f"run `{run_it}` and set launch.loadtest_report (or --loadtest-report)")  # fmt: skip
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        started = datetime.fromisoformat(doc["started_at"])
        target = float(doc["arrival"]["target_rps"])
        achieved = float(doc["arrival"]["achieved_rps"] or 0)
        passed = bool(doc["passed"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Finding(item, "fail", f"cannot read {path}: {exc}", f"run `{run_it}`")
    age_days = ((now or datetime.now(UTC)) - started).total_seconds() / 86400
    need = multiple * peak_rps
    seen = f"{path.name}: {target:g} req/s target, {achieved:g} achieved, {'passed' if passed else 'FAILED'}, {age_days:.1f} days old"
    if not passed:
        return Finding(item, "fail", seen, "fix what failed its objectives and run it again")
    # a generator that could not offer the load proves nothing about the target
    if target < need or achieved < need * 0.99:
        return Finding(item, "fail", seen + f"; needs {need:g} req/s", f"run `{run_it}`")
    if age_days > max_age_days:
        return Finding(
            item, "warn", seen + f"; older than {max_age_days:g} days", f"run `{run_it}` again"
        )
    return Finding(item, "pass", seen)


def fetch(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET ``url``: (status, body); status 0 when nothing answered."""
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the operator's URL
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except OSError:
        return 0, b""


def instance(base: str, url_from: str | None = None) -> Finding:
    status, body = fetch(base + "/readyz")
    if status == 200:
        return Finding("instance ready", "pass", f"{base}/readyz answered 200")
    if status == 0:
        where = f" (URL from {url_from})" if url_from else ""
        return Finding("instance ready", "fail", f"nothing answers at {base}{where}",
                       "start it (`interlock serve`), or give --config (the gateway's), --url or "
                       "$INTERLOCK_URL; --offline skips instance items")  # fmt: skip
    return Finding("instance ready", "fail", f"/readyz answered {status}: {body[:200]!r}",
                   "see docs/runbooks/database-down.md")  # fmt: skip


def monitoring(base: str, prometheus: str | None) -> list[Finding]:
    out = []
    status, body = fetch(base + "/metrics")
    if status == 200 and b"interlock_requests_total" in body:
        out.append(
            Finding("monitoring: /metrics", "pass", f"{base}/metrics exposes interlock_* metrics")
        )
    else:
        out.append(Finding("monitoring: /metrics", "fail", f"{base}/metrics answered {status or 'nothing'}",
                           "the gateway serves /metrics without auth; check proxies in front of it"))  # fmt: skip
    if prometheus:
        p_status, p_body = fetch(prometheus.rstrip("/") + "/api/v1/query?query=up")
        if p_status == 200 and b'"success"' in p_body:
            out.append(Finding("monitoring: Prometheus", "pass", f"{prometheus} answers queries"))
        else:
            out.append(Finding("monitoring: Prometheus", "fail", f"{prometheus} answered {p_status or 'nothing'}",
                               "start Prometheus (deploy/docker-compose.yml) and scrape the gateways"))  # fmt: skip
    return out
