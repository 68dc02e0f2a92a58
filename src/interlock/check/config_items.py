"""Checklist items read from the configuration alone."""

from __future__ import annotations

from dataclasses import dataclass

from interlock.check.findings import Finding, worst
from interlock.check.served import Served
from interlock.settings import Settings

__all__ = [
    "alerts",
    "configured_aliases",
    "fallbacks",
    "matches_gateway",
    "provider_quota",
    "rate_limits",
    "served_aliases",
    "spending_limits",
]


def spending_limits(settings: Settings, served: Served | None = None) -> Finding:
    """A hard limit (``limit_usd``) somewhere: without one, a loop in a client can spend
    without bound.

    When the gateway's ``GET /admin/budgets`` could be read it is the truth: every budget
    the gateway enforces, from its own configuration and made through the API. Otherwise
    the configuration's budgets are all that is seen, and an absence there is reported as
    unverified (warn), not as "no budget" (fail): budgets made through the API live in
    the database, not in the file."""
    fix = ("add spend.budgets with limit_usd, e.g. {scope: global, window: monthly, limit_usd: 500}, "
           "or POST /admin/budgets")  # fmt: skip
    if served is not None and served.budgets is not None:
        rows = served.budgets
        hard = [r for r in rows if r.get("limit_usd") is not None]
        planned = [r for r in rows if r.get("budget_usd") is not None]
        via_api = sum(1 for r in hard if not str(r.get("id", "")).startswith("cfg-"))
        if hard:
            scopes = sorted({str(r.get("scope")) for r in hard})
            return Finding("spending limits", "pass",
                           f"{len(hard)} hard limit(s) on the gateway ({', '.join(scopes)}): "
                           f"{len(hard) - via_api} from its configuration, {via_api} via the admin API")  # fmt: skip
        if planned:
            return Finding("spending limits", "warn",
                           f"the gateway has {len(planned)} planned budget(s) (budget_usd): "
                           "alerts, no hard stop", fix)  # fmt: skip
        return Finding("spending limits", "fail",
                       f"the gateway enforces no budget ({len(rows)} in GET /admin/budgets)", fix)  # fmt: skip
    hard_cfg = [b for b in settings.spend.budgets if b.limit_usd is not None]
    planned_cfg = [b for b in settings.spend.budgets if b.budget_usd is not None]
    unseen = "budgets made through the admin API not read: " + (
        served.why("/admin/budgets") if served is not None else "--offline"
    )
    see_api = ("pass an admin key (--key, $INTERLOCK_ADMIN_KEY, or auth.master_key in --config) "
               "and run against the gateway so its budgets can be read")  # fmt: skip
    if hard_cfg:
        scopes = sorted({b.scope for b in hard_cfg})
        return Finding("spending limits", "pass",
                       f"{len(hard_cfg)} hard limit(s) in the configuration ({', '.join(scopes)}); {unseen}")  # fmt: skip
    if planned_cfg:
        return Finding("spending limits", "warn",
                       f"only planned budgets (budget_usd) in the configuration; {unseen}",
                       f"{fix}; or {see_api}")  # fmt: skip
    return Finding("spending limits", "warn",
                   f"unverified: no hard limit in the configuration, and {unseen}",
                   f"{see_api}; or {fix}")  # fmt: skip


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


@dataclass(frozen=True)
class _Alias:
    kind: str
    providers: frozenset[str]  # empty: a tiered alias, or deployments unknown
    fallbacks: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    source: str = "configuration"  # or "gateway" (from GET /admin/deployments), "unknown"


def configured_aliases(settings: Settings) -> dict[str, _Alias]:
    """Every model name the configuration serves, built by the gateway's own
    :class:`~interlock.routing.catalog.Catalog`: the aliases under ``models`` and each
    deployment nobody aliased, under its upstream model name."""
    from interlock.providers.registry import build_deployments
    from interlock.routing.catalog import Catalog

    out: dict[str, _Alias] = {}
    for route in Catalog(settings, build_deployments(settings)).routes():
        spec = route.spec
        tiers: list[str] = []
        if spec.tiers is not None:
            t = spec.tiers
            tiers = [a for a in (t.small, t.medium, t.large) if a]
            tiers += [s.model for s in t.specialized.values()]
        out[route.alias] = _Alias(
            kind=route.kind,
            providers=frozenset(d.provider for d in route.deployments),
            fallbacks=tuple(m for fb in spec.fallbacks for m in fb.models),
            tiers=tuple(dict.fromkeys(tiers)),
        )
    return out


def served_aliases(settings: Settings, served: Served | None) -> dict[str, _Alias]:
    """The model names to judge: what the gateway lists at ``GET /v1/models`` when it
    could be asked (each one's deployments from the configuration, else from the
    gateway's deployments serving it under its model name), otherwise the
    configuration's."""
    configured = configured_aliases(settings)
    if served is None or served.models is None:
        return configured
    out: dict[str, _Alias] = {}
    for name in served.models:
        if name in configured:
            out[name] = configured[name]
            continue
        rows = [r for r in served.deployments or () if r.get("model") == name]
        if rows:
            out[name] = _Alias("chat", frozenset(str(r.get("provider")) for r in rows),
                               source="gateway")  # fmt: skip
        else:
            out[name] = _Alias("chat", frozenset(), source="unknown")
    return out


def fallbacks(settings: Settings, served: Served | None = None) -> list[Finding]:
    """Every model the gateway serves can reach a second provider: among its own
    deployments, or through a fallback alias. One provider behind a chat model is one
    outage from a full stop (fail). An embeddings model with one provider warns: vectors
    from another model are not comparable with those already stored, so its fallback
    must be the same model elsewhere, which only the operator can judge. A tiered alias
    is as good as its tiers."""
    aliases = served_aliases(settings, served)
    out: dict[str, Finding] = {}

    def judge(alias: str, view: _Alias, seen: frozenset[str] = frozenset()) -> Finding:
        item = f"fallback: {alias}"
        if view.tiers:
            parts = [(t, out.get(f"fallback: {t}") or judge(t, aliases[t], seen | {alias}))
                     for t in view.tiers if t in aliases and t not in seen | {alias}]  # fmt: skip
            status = worst(f for _, f in parts) if parts else "fail"
            detail = "tiers " + ", ".join(f"{t} ({f.status})" for t, f in parts)
            return Finding(item, status, detail or "no tier is served",
                           "" if status == "pass" else "see the tiers' own items")  # fmt: skip
        if view.source == "unknown":
            return Finding(item, "warn",
                           "served by the gateway, but not in this configuration and no "
                           "deployment serves it under its model name: its providers are unknown",
                           "run check with the gateway's own configuration (--config)")  # fmt: skip
        own = view.providers
        via = {p for fb in view.fallbacks if fb in aliases for p in aliases[fb].providers}
        if len(own) > 1 or via - own:
            first = sorted(own)[0] if own else ""
            others = sorted((own | via) - {first})
            return Finding(item, "pass", f"providers {sorted(own)}, fallback to {others}")
        only = f"only provider {sorted(own)[0]!r}" if own else "no deployment"
        if view.kind == "embeddings":
            return Finding(item, "warn", f"{only} (embeddings)",
                           f"a fallback for embeddings must be the same model on another "
                           f"provider or account (vectors of different models do not compare): "
                           f"add such a deployment to models.{alias}.deployments")  # fmt: skip
        return Finding(item, "fail", only,
                       f"add a deployment on another provider to models.{alias}.deployments, or "
                       f"models.{alias}.fallbacks: [{{models: [<alias on another provider>]}}]")  # fmt: skip

    for alias, view in aliases.items():
        out[f"fallback: {alias}"] = judge(alias, view)
    if not out:
        where = (
            f"the gateway at {served.base} serves no model"
            if served is not None and served.models is not None
            else "the configuration serves no model"
        )
        return [Finding("fallbacks", "fail", where, "configure providers and deployments")]
    return list(out.values())


def matches_gateway(settings: Settings, served: Served | None) -> Finding:
    """The configuration checked is the one the gateway runs: same model names, same
    deployments. A difference means the items read from the file describe another
    gateway."""
    item = "configuration matches gateway"
    if served is None:
        return Finding(item, "warn", "skipped (--offline)", "run without --offline")
    if served.models is None:
        return Finding(item, "warn", f"not compared: {served.why('/v1/models')}",
                       "pass an admin key (--key, $INTERLOCK_ADMIN_KEY or auth.master_key)")  # fmt: skip
    configured = set(configured_aliases(settings))
    listed = set(served.models)
    diffs = []
    if listed - configured:
        diffs.append(f"served but not configured: {', '.join(sorted(listed - configured))}")
    if configured - listed:
        diffs.append(f"configured but not served: {', '.join(sorted(configured - listed))}")
    if served.deployments is not None:
        names = {str(r.get("deployment")) for r in served.deployments}
        mine = set(settings.deployments)
        if names - mine:
            diffs.append(f"gateway deployments not configured: {', '.join(sorted(names - mine))}")
        if mine - names:
            diffs.append(
                f"configured deployments not on the gateway: {', '.join(sorted(mine - names))}"
            )
    if diffs:
        return Finding(item, "warn", "; ".join(diffs),
                       "check with the configuration the gateway runs (--config), or restart "
                       "the gateway with this one")  # fmt: skip
    return Finding(
        item, "pass", f"{served.base} serves the {len(listed)} model(s) of this configuration"
    )


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
