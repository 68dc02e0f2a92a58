"""Commands that talk to a running gateway's admin API over HTTP, and the one way every
CLI command finds that gateway (:func:`find_gateway`).

The gateway's URL: ``--url``, else ``$INTERLOCK_URL``, else the configuration's
``server.host``/``server.port`` (the configuration found as ``serve`` finds it:
``--config``, ``$INTERLOCK_CONFIG``, ``./interlock.yaml``, the embedded default; a
wildcard listen address becomes the loopback address). The admin key: ``--key``, else
``$INTERLOCK_ADMIN_KEY``, else ``$INTERLOCK_MASTER_KEY``, else the configuration's
``auth.master_key``. Every error says which URL was tried and where it came from.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from interlock.cli.common import config_option
from interlock.cli.defaults import CliConfig, load_cli_config
from interlock.settings import ConfigError, Settings

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["GatewayTarget", "call", "find_gateway", "gateway_options", "url_for_listen"]


@dataclass(frozen=True)
class GatewayTarget:
    """A running gateway: its base URL (no trailing slash, no /v1), the admin key if any,
    and where each came from (for messages)."""

    url: str
    url_from: str
    key: str | None
    key_from: str | None
    settings: Settings | None = None
    config_origin: str | None = None

    def describe(self) -> str:
        return f"{self.url} (from {self.url_from})"


def url_for_listen(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on host:port."""
    if host in ("", "0.0.0.0"):  # a listen address, mapped to a client address
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def find_gateway(
    config: str | None,
    url: str | None = None,
    key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> GatewayTarget:
    """Where the gateway is and which admin key to use (see the module docstring).

    ``config``/``url``/``key`` are the command's ``--config``/``--url``/``--key`` (None when
    not given). The configuration is read even when ``--url`` is given (for its master
    key); if it cannot be read then, it is ignored; without ``--url`` it is an error.
    Raises :class:`click.ClickException` with the reason."""
    env = dict(os.environ) if env is None else env
    cfg: CliConfig | None = None
    problem: str | None = None
    try:
        cfg = load_cli_config(config, env)
    except ConfigError as exc:
        problem = str(exc)
    if url:
        base, base_from = url, "--url"
    elif env.get("INTERLOCK_URL"):
        base, base_from = env["INTERLOCK_URL"], "$INTERLOCK_URL"
    elif cfg is not None:
        s = cfg.settings.server
        base = url_for_listen(s.host, s.port)
        base_from = f"server.host/server.port of {cfg.origin}"
    else:
        raise click.ClickException(
            f"cannot find the gateway: the configuration could not be read ({problem}); "
            "fix it, or give --url / $INTERLOCK_URL"
        )
    base = base.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    if "://" not in base:
        base = "http://" + base
    if key:
        admin, admin_from = key, "--key"
    elif env.get("INTERLOCK_ADMIN_KEY"):
        admin, admin_from = env["INTERLOCK_ADMIN_KEY"], "$INTERLOCK_ADMIN_KEY"
    elif env.get("INTERLOCK_MASTER_KEY"):
        admin, admin_from = env["INTERLOCK_MASTER_KEY"], "$INTERLOCK_MASTER_KEY"
    elif cfg is not None and cfg.settings.auth.master_key is not None:
        admin = cfg.settings.auth.master_key.get_secret_value()
        admin_from = f"auth.master_key of {cfg.origin}"
    else:
        admin, admin_from = None, None
    return GatewayTarget(
        url=base,
        url_from=base_from,
        key=admin,
        key_from=admin_from,
        settings=cfg.settings if cfg is not None else None,
        config_origin=cfg.origin if cfg is not None else None,
    )


def gateway_options(fn: F) -> F:
    """``--config``, ``--url`` and ``--key`` for a command that talks to a gateway; the
    command receives ``config``, ``url`` and ``key`` and passes them to
    :func:`find_gateway`."""
    fn = click.option(
        "--key",
        default=None,
        help="Admin key (default: $INTERLOCK_ADMIN_KEY, $INTERLOCK_MASTER_KEY, then the "
        "configuration's auth.master_key).",
    )(fn)
    fn = click.option(
        "--url",
        default=None,
        help="The gateway's base URL (default: $INTERLOCK_URL, then http://HOST:PORT from "
        "the configuration's server section).",
    )(fn)
    fn = config_option(
        "Configuration file the gateway runs with (default: $INTERLOCK_CONFIG, "
        "./interlock.yaml, or the embedded default)."
    )(fn)
    return fn


def call(target: GatewayTarget, method: str, path: str, body: Any = None) -> Any:
    """One admin API call; errors become a ClickException naming the URL and its origin."""
    if not target.key:
        raise click.ClickException(
            "an admin key is needed: --key, $INTERLOCK_ADMIN_KEY, $INTERLOCK_MASTER_KEY or "
            f"auth.master_key in the configuration (gateway: {target.describe()})"
        )
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(target.url + path, data=data, method=method)  # noqa: S310
    req.add_header("authorization", f"Bearer {target.key}")
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
        hint = f" (admin key from {target.key_from})" if exc.code in (401, 403) else ""
        raise click.ClickException(
            f"HTTP {exc.code} from {target.describe()}: {message}{hint}"
        ) from None
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"cannot reach the gateway at {target.describe()}: {reason}"
        ) from None


def _connect(config: str | None, url: str | None, key: str | None) -> GatewayTarget:
    return find_gateway(config, url, key)


@click.group()
def degradation() -> None:
    """Show or force the degradation level (full, limited, cached, minimal, auto)."""


@degradation.command("show")
@gateway_options
def degradation_show(config: str | None, url: str | None, key: str | None) -> None:
    state = call(_connect(config, url, key), "GET", "/admin/degradation")
    click.echo(f"level: {state['level']} ({state['mode']})")
    if state.get("reason"):
        click.echo(f"reason: {state['reason']}")
    for name, value in sorted((state.get("signals") or {}).items()):
        click.echo(f"  {name}: {value:g}")


@degradation.command("set")
@click.argument("level", type=click.Choice(["auto", "full", "limited", "cached", "minimal"]))
@gateway_options
def degradation_set(level: str, config: str | None, url: str | None, key: str | None) -> None:
    state = call(_connect(config, url, key), "PUT", "/admin/degradation", {"level": level})
    click.echo(f"level: {state['level']} ({state['mode']})")


@click.command()
@click.option(
    "--reset",
    "reset",
    default=None,
    metavar="NAME",
    help="Close NAME's breaker, clear its cooldown.",
)
@gateway_options
def deployments(reset: str | None, config: str | None, url: str | None, key: str | None) -> None:
    """Deployment health: circuit state, cooldown, in-flight, latency."""
    target = _connect(config, url, key)
    if reset:
        call(target, "POST", f"/admin/deployments/{reset}/reset")
    rows = call(target, "GET", "/admin/deployments")["data"]
    click.echo(
        f"{'DEPLOYMENT':<24} {'CIRCUIT':<10} {'OPEN_S':>7} {'COOL_S':>7} {'IN_FLIGHT':>9} {'EWMA_MS':>8}"
    )
    for r in rows:
        ewma = f"{r['latency_ewma_s'] * 1000:.1f}" if r["latency_ewma_s"] is not None else "-"
        click.echo(
            f"{r['deployment']:<24} {r['circuit']:<10} {r['open_for_s']:>7.1f} "
            f"{r['cooldown_s']:>7.1f} {r['in_flight']:>9} {ewma:>8}"
        )


def key_names(target: GatewayTarget) -> dict[str, str]:
    """key id -> key name, from the admin API (revoked keys included; unnamed left out)."""
    body = call(target, "GET", "/admin/keys?include_revoked=true")
    rows = body.get("data", body) if isinstance(body, dict) else body
    return {r["id"]: r["name"] for r in rows if isinstance(r, dict) and r.get("name")}


@click.command()
@click.option("--json", "as_json", is_flag=True, default=False)
@gateway_options
def budgets(as_json: bool, config: str | None, url: str | None, key: str | None) -> None:
    """Budgets: spent, reserved, remaining, burn rate and when they run out at that rate."""
    target = _connect(config, url, key)
    rows = call(target, "GET", "/admin/budgets")["data"]
    names = key_names(target) if any(r["scope"] == "key" for r in rows) else {}
    if as_json:
        for r in rows:
            if r["scope"] == "key":
                r["key_name"] = names.get(r["subject"])
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'ID':<20} {'SCOPE':<30} {'WINDOW':<9} {'LIMIT':>10} {'SPENT':>12} {'REMAINING':>12} {'$/HOUR':>10}  EXHAUSTED AT"
    )
    for r in rows:
        who = r["scope"] if r["subject"] is None else f"{r['scope']}:{r['subject']}"
        if r["scope"] == "key" and names.get(r["subject"]):
            who += f" ({names[r['subject']]})"
        click.echo(
            f"{r['id']:<20} {who[:30]:<30} {r['window']:<9} {r['limit_usd'] or '-':>10} "
            f"{r['spent_usd']:>12} {r['remaining_usd'] or '-':>12} {r['burn_usd_per_hour']:>10}  "
            f"{r['exhausted_at'] or '-'}"
        )
