"""``interlock check``: launch readiness, per item pass/warn/fail with how to fix.

Exit status 1 when any item fails (warnings alone exit 0), so a pipeline can refuse to
deploy what is not ready.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from interlock.check import Finding, evidence, worst
from interlock.check import config_items as cfg
from interlock.check.served import read_served
from interlock.cli.common import config_option
from interlock.cli.remote import find_gateway
from interlock.settings import ConfigError, Settings

__all__ = ["check"]

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


@click.command()
@config_option("Configuration file (default: $INTERLOCK_CONFIG or ./interlock.yaml).")  # fmt: skip
@click.option("--url", default=None, help="The running gateway (default: $INTERLOCK_URL, then "
              "http://HOST:PORT from the configuration's server section).")  # fmt: skip
@click.option("--key", default=None, help="Admin key, to read the gateway's models, deployments "
              "and budgets (default: $INTERLOCK_ADMIN_KEY, $INTERLOCK_MASTER_KEY, or the "
              "configuration's auth.master_key).")  # fmt: skip
@click.option("--peak-rps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Declared peak requests/s (default: launch.peak_rps).")  # fmt: skip
@click.option("--loadtest-report", type=click.Path(dir_okay=False), default=None,
              help="An `interlock loadtest --json` result (default: launch.loadtest_report).")  # fmt: skip
@click.option("--runbooks", "runbooks_dir", type=click.Path(file_okay=False), default=None,
              help="Runbook folder (default: launch.runbooks_dir, docs/runbooks).")  # fmt: skip
@click.option("--prometheus", default=None, help="Prometheus base URL, to check it answers.")
@click.option(
    "--offline", is_flag=True, default=False, help="Skip the items that need a running gateway."
)
@click.option("--json", "as_json", is_flag=True, default=False)
def check(config: str | None, url: str | None, key: str | None, peak_rps: float | None,
          loadtest_report: str | None, runbooks_dir: str | None, prometheus: str | None,
          offline: bool, as_json: bool) -> None:  # fmt: skip
    """Launch readiness: budgets, alerts, fallbacks, rate limits, monitoring, runbooks,
    a load test at 2× peak, provider quota."""
    settings = _load(config)
    launch = settings.launch
    peak = peak_rps or launch.peak_rps
    target = find_gateway(config, url, key)
    base = target.url
    findings: list[Finding] = []
    served = None if offline else read_served(base, target.key)
    findings.append(cfg.matches_gateway(settings, served))
    findings.append(cfg.spending_limits(settings, served))
    findings.append(cfg.alerts(settings))
    findings.extend(cfg.fallbacks(settings, served))
    findings.append(cfg.rate_limits(settings))
    findings.extend(cfg.provider_quota(settings, peak, launch.peak_tpm))
    report = loadtest_report or launch.loadtest_report
    findings.append(evidence.loadtest_report(Path(report) if report else None, peak,
                                             launch.loadtest_multiple, launch.loadtest_max_age_days))  # fmt: skip
    findings.append(evidence.runbooks(Path(runbooks_dir or launch.runbooks_dir)))
    if offline:
        findings.append(Finding("instance and monitoring", "warn", "skipped (--offline)",
                                "run without --offline against the deployed gateway"))  # fmt: skip
    else:
        findings.append(evidence.instance(base, target.url_from))
        findings.extend(evidence.monitoring(base, prometheus))
    verdict = worst(findings)
    if as_json:
        click.echo(
            json.dumps({"verdict": verdict, "findings": [f.to_dict() for f in findings]}, indent=2)
        )
    else:
        width = max(len(f.item) for f in findings)
        for f in findings:
            click.echo(f"{_MARK[f.status]}  {f.item:<{width}}  {f.detail}")
            if f.fix and f.status != "pass":
                click.echo(f"      {'':<{width}}  fix: {f.fix}")
        counts = {s: sum(1 for f in findings if f.status == s) for s in ("pass", "warn", "fail")}
        click.echo(f"\n{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail: "
                   f"{'NOT READY' if verdict == 'fail' else 'ready'}")  # fmt: skip
    if verdict == "fail":
        raise SystemExit(1)


def _load(config: str | None) -> Settings:
    from interlock.cli.serve import config_path, resolve

    try:
        settings, _data, _source = resolve(config_path(config, dict(os.environ)), dict(os.environ))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings
