"""Commands that talk to a running gateway's admin API over HTTP."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import click

_url = click.option("--url", default=lambda: os.environ.get("INTERLOCK_URL", "http://127.0.0.1:8080"),
                    show_default="$INTERLOCK_URL or http://127.0.0.1:8080", help="The gateway.")  # fmt: skip
_key = click.option(
    "--key",
    default=None,
    help="Admin key (default: $INTERLOCK_ADMIN_KEY or $INTERLOCK_MASTER_KEY).",
)


def _call(url: str, key: str | None, method: str, path: str, body: Any = None) -> Any:
    key = key or os.environ.get("INTERLOCK_ADMIN_KEY") or os.environ.get("INTERLOCK_MASTER_KEY")
    if not key:
        raise click.ClickException("an admin key is needed: --key or $INTERLOCK_ADMIN_KEY")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)  # noqa: S310
    req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except Exception:
            message = exc.reason
        raise click.ClickException(f"HTTP {exc.code}: {message}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None


@click.group()
def degradation() -> None:
    """Show or force the degradation level (full, limited, cached, minimal, auto)."""


@degradation.command("show")
@_url
@_key
def degradation_show(url: str, key: str | None) -> None:
    state = _call(url, key, "GET", "/admin/degradation")
    click.echo(f"level: {state['level']} ({state['mode']})")
    if state.get("reason"):
        click.echo(f"reason: {state['reason']}")
    for name, value in sorted((state.get("signals") or {}).items()):
        click.echo(f"  {name}: {value:g}")


@degradation.command("set")
@click.argument("level", type=click.Choice(["auto", "full", "limited", "cached", "minimal"]))
@_url
@_key
def degradation_set(level: str, url: str, key: str | None) -> None:
    state = _call(url, key, "PUT", "/admin/degradation", {"level": level})
    click.echo(f"level: {state['level']} ({state['mode']})")


@click.command()
@click.option(
    "--reset",
    "reset",
    default=None,
    metavar="NAME",
    help="Close NAME's breaker, clear its cooldown.",
)
@_url
@_key
def deployments(reset: str | None, url: str, key: str | None) -> None:
    """Deployment health: circuit state, cooldown, in-flight, latency."""
    if reset:
        _call(url, key, "POST", f"/admin/deployments/{reset}/reset")
    rows = _call(url, key, "GET", "/admin/deployments")["data"]
    click.echo(
        f"{'DEPLOYMENT':<24} {'CIRCUIT':<10} {'OPEN_S':>7} {'COOL_S':>7} {'IN_FLIGHT':>9} {'EWMA_MS':>8}"
    )
    for r in rows:
        ewma = f"{r['latency_ewma_s'] * 1000:.1f}" if r["latency_ewma_s"] is not None else "-"
        click.echo(
            f"{r['deployment']:<24} {r['circuit']:<10} {r['open_for_s']:>7.1f} "
            f"{r['cooldown_s']:>7.1f} {r['in_flight']:>9} {ewma:>8}"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, default=False)
@_url
@_key
def budgets(as_json: bool, url: str, key: str | None) -> None:
    """Budgets: spent, reserved, remaining, burn rate and when they run out at that rate."""
    rows = _call(url, key, "GET", "/admin/budgets")["data"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'ID':<20} {'SCOPE':<18} {'WINDOW':<9} {'LIMIT':>10} {'SPENT':>12} {'REMAINING':>12} {'$/HOUR':>10}  EXHAUSTED AT"
    )
    for r in rows:
        who = r["scope"] if r["subject"] is None else f"{r['scope']}:{r['subject']}"
        click.echo(
            f"{r['id']:<20} {who[:18]:<18} {r['window']:<9} {r['limit_usd'] or '-':>10} "
            f"{r['spent_usd']:>12} {r['remaining_usd'] or '-':>12} {r['burn_usd_per_hour']:>10}  "
            f"{r['exhausted_at'] or '-'}"
        )
