"""Checklist items read from the configuration alone."""

from __future__ import annotations

from interlock.check.findings import Finding
from interlock.settings import Settings

__all__ = ["alerts", "fallbacks", "provider_quota", "rate_limits", "spending_limits"]


def spending_limits(settings: Settings, api_hard_limits: int | None = None) -> Finding:
    """A hard limit (``limit_usd``) somewhere: without one, a loop in a client can spend
    without bound. ``api_hard_limits`` counts budgets created through the admin API."""
    hard = [b for b in settings.spend.budgets if b.limit_usd is not None]
    planned = [b for b in settings.spend.budgets if b.budget_usd is not None]
    total_hard = len(hard) + (api_hard_limits or 0)
    if total_hard:
        scopes = sorted({b.scope for b in hard})
        extra = f", {api_hard_limits} via the admin API" if api_hard_limits else ""
        return Finding("spending limits", "pass",
                       f"{len(hard)} hard limit(s) in config ({', '.join(scopes) or '-'}){extra}")  # fmt: skip
    fix = ("add spend.budgets with limit_usd, e.g. {scope: global, window: monthly, limit_usd: 500}, "
           "or POST /admin/budgets")  # fmt: skip
    if planned:
        return Finding(
            "spending limits",
            "warn",
            "only planned budgets (budget_usd): alerts, no hard stop",
            fix,
        )
    return Finding("spending limits", "fail", "no budget at all", fix)


def alerts(settings: Settings) -> Finding:
    """Alerts that reach a person: the built-in rules with a webhook or Slack sink, and a
    planned budget so the daily-spend rule has something to compare against."""
    cfg = settings.alerts
    if not cfg.enabled:
        return Finding("alerts", "fail", "alerts.enabled is false", "set alerts.enabled: true")
    paging = [s.kind for s in cfg.sinks if s.kind != "log"]
    planned = any(b.budget_usd is not None for b in settings.spend.budgets)
    rules = sorted({r.metric for r in cfg.rules})
    if not paging:
        return Finding("alerts", "warn", f"rules {rules} only write to the log",
                       "add alerts.sinks: [{kind: slack, url: ...}] or a webhook")  # fmt: skip
    if not planned:
        return Finding("alerts", "warn", f"rules {rules} → {paging}; no planned budget for daily_spend",
                       "set budget_usd on a budget so spend alerts fire before the hard limit")  # fmt: skip
    return Finding("alerts", "pass", f"rules {rules} → {paging}")


def fallbacks(settings: Settings) -> list[Finding]:
    """Every alias can reach a second provider: among its own deployments, or through
    a fallback alias. One provider behind an alias is one outage from a full stop."""
    out = []
    for alias, spec in sorted(settings.models.items()):
        own = {settings.deployments[d].provider for d in spec.deployments}
        via = {settings.deployments[d].provider
               for fb in spec.fallbacks for other in fb.models if other in settings.models
               for d in settings.models[other].deployments}  # fmt: skip
        if len(own) > 1 or via - own:
            others = sorted((own | via) - {sorted(own)[0]})
            out.append(Finding(f"fallback: {alias}", "pass",
                               f"providers {sorted(own)}, fallback to {others}"))  # fmt: skip
        else:
            out.append(Finding(
                f"fallback: {alias}", "fail", f"only provider {sorted(own)[0]!r}",
                f"add a deployment on another provider to models.{alias}.deployments, or "
                f"models.{alias}.fallbacks: [{{models: [<alias on another provider>]}}]",
            ))  # fmt: skip
    if not out:
        out.append(
            Finding("fallbacks", "fail", "no model aliases configured", "configure models.<alias>")
        )
    return out


def rate_limits(settings: Settings) -> Finding:
    limits = settings.spend.rate_limits
    if limits:
        scopes = sorted({r.scope for r in limits})
        return Finding("rate limits", "pass", f"{len(limits)} rule(s): {', '.join(scopes)}")
    per_deployment = [
        n for n, d in settings.deployments.items() if d.rpm or d.tpm or d.max_concurrency
    ]
    fix = "add spend.rate_limits, e.g. [{scope: global, rpm: 6000}] and per-team rules"
    if per_deployment:
        return Finding("rate limits", "warn",
                       f"only deployment limits ({len(per_deployment)}); no client-side limits", fix)  # fmt: skip
    return Finding("rate limits", "fail", "none: one client can take all capacity", fix)


def provider_quota(
    settings: Settings, peak_rps: float | None, peak_tpm: int | None
) -> list[Finding]:
    """Provider quota (deployment ``rpm``/``tpm``) against the expected peak: below the
    peak fails, below the load-test multiple warns (no headroom for a spike)."""
    launch = settings.launch
    if peak_rps is None:
        return [Finding("provider quota", "fail", "no declared peak",
                        "set launch.peak_rps (or --peak-rps)")]  # fmt: skip
    peak_rpm = peak_rps * 60
    multiple = launch.loadtest_multiple
    shares = launch.traffic_share or None
    groups: list[tuple[str, list[str], float]] = []
    if shares:
        for alias, share in sorted(shares.items()):
            if alias not in settings.models:
                groups.append((alias, [], share))
            else:
                groups.append((alias, list(settings.models[alias].deployments), share))
    else:
        groups.append(
            (
                "all deployments",
                [n for n, d in settings.deployments.items() if d.kind == "chat"],
                1.0,
            )
        )
    out = []
    for name, deps, share in groups:
        item = f"quota: {name}"
        if not deps:
            out.append(
                Finding(item, "fail", "unknown alias in launch.traffic_share", "fix the alias name")
            )
            continue
        for unit, need, caps in (
            ("rpm", peak_rpm * share, [settings.deployments[d].rpm for d in deps]),
            ("tpm", (peak_tpm or 0) * share, [settings.deployments[d].tpm for d in deps]),
        ):
            if unit == "tpm" and not peak_tpm:
                continue
            if any(c is None for c in caps):
                unknown = [d for d, c in zip(deps, caps, strict=True) if c is None]
                out.append(Finding(f"{item} {unit}", "warn", f"quota not declared for {unknown}",
                                   f"set deployments.<name>.{unit} to the provider's quota"))  # fmt: skip
                continue
            have = float(sum(c for c in caps if c is not None))
            detail = (
                f"{have:,.0f} {unit} vs peak {need:,.0f} ({have / need:.1f}×)"
                if need
                else "no demand"
            )
            if need and have < need:
                out.append(Finding(f"{item} {unit}", "fail", detail,
                                   "raise the provider quota or add deployments"))  # fmt: skip
            elif need and have < need * multiple:
                out.append(Finding(f"{item} {unit}", "warn", detail + f", under {multiple:g}× headroom",
                                   "ask the provider for more quota before launch"))  # fmt: skip
            else:
                out.append(Finding(f"{item} {unit}", "pass", detail))
    return out
