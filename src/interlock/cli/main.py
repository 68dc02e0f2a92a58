"""``interlock …`` commands."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson

from interlock import __version__
from interlock.cli import (
    alerts_cmd,
    capacity_cmd,
    check_cmd,
    common,
    loadtest_cmd,
    remote,
    router_cmds,
    simulate_cmd,
    spend_cmds,
)
from interlock.cli import worker as worker_cmd
from interlock.settings import Settings

T = TypeVar("T")


@click.group()
@click.version_option(__version__, prog_name="interlock")
def cli() -> None:
    """Interlock: one OpenAI-compatible front door for all model traffic."""


@cli.command()
@common.config_file_option
@click.option("--host", default=None, help="Listen address (default from config: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default from config: 8080).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Worker processes.")
def serve(config: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway."""
    from interlock.cli.serve import serve as run

    run(config, host, port, workers)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def sim(ctx: click.Context) -> None:
    """Run the simulated provider (options: see `interlock sim --help-sim`)."""
    from interlock.sim import __main__ as sim_main

    args = list(ctx.args)
    if "--help-sim" in args:
        args = ["--help"]
    sim_main.main(args)


def _with_keys(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    """``fn(KeyService)`` on the configured database (refused, exit 2, when it or the
    key-hash secret does not exist yet and --init was not given)."""

    async def go(engine: Any) -> T:
        from interlock.auth.service import KeyService, load_or_create_pepper
        from interlock.storage.keys import KeyStore

        pepper_cfg = settings.auth.key_hash_secret
        pepper = load_or_create_pepper(
            pepper_cfg.get_secret_value() if pepper_cfg else None, settings.state_dir
        )
        return await fn(KeyService(KeyStore(engine), pepper))

    return common.with_engine(settings, go, need_pepper=True)


@cli.group()
def keys() -> None:
    """Manage virtual keys (works on the database directly; the server need not run)."""


@keys.command("create")
@common.database_options
@click.option("--name", default=None)
@click.option("--user", default=None)
@click.option("--team", default=None)
@click.option("--tag", "tags", multiple=True, help="Feature tag (repeatable).")
@click.option("--model", "models", multiple=True, help="Allowed model (repeatable; none: all).")
@click.option("--admin", is_flag=True, default=False, help="An admin key.")
@click.option("--json", "as_json", is_flag=True, default=False)
def keys_create(
    config: str | None,
    name: str | None,
    user: str | None,
    team: str | None,
    tags: tuple[str, ...],
    models: tuple[str, ...],
    admin: bool,
    as_json: bool,
) -> None:
    """Create a key and print its secret (shown once)."""

    async def go(svc: Any) -> Any:
        return await svc.create(
            name=name, user=user, team=team, tags=list(tags), models=list(models), admin=admin
        )

    try:
        rec, token = _with_keys(common.cli_settings(config), go)
    except click.ClickException:
        raise
    except Exception as exc:  # an InvalidRequest from validation
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps({**rec.public(), "key": token}).decode())
    else:
        click.echo(f"id:  {rec.key_id}")
        click.echo(f"key: {token}")
        click.echo("(the key is shown only now; it is stored hashed)")


@keys.command("list")
@common.database_options
@click.option("--all", "include_revoked", is_flag=True, default=False, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, default=False)
def keys_list(config: str | None, include_revoked: bool, as_json: bool) -> None:
    """List keys (never their secrets)."""

    async def go(svc: Any) -> Any:
        return await svc.list(include_revoked=include_revoked)

    records = [r.public() for r in _with_keys(common.cli_settings(config), go)]
    if as_json:
        click.echo(orjson.dumps(records).decode())
        return
    rows = [
        {
            "id": r["id"],
            "name": r["name"] or "-",
            "user": r["user"] or "-",
            "team": r["team"] or "-",
            "admin": "yes" if r["admin"] else "no",
            "state": "revoked" if r["revoked"] else "active",
            "models": ",".join(r["models"]) or "(all)",
            "tags": ",".join(r["tags"]) or "-",
        }
        for r in records
    ]
    columns = [(k, k.upper(), "str") for k in
               ("id", "name", "user", "team", "admin", "state", "models", "tags")]  # fmt: skip
    click.echo(common.render(rows, columns, "table"))


@keys.command("revoke")
@common.database_options
@click.argument("key_id")
def keys_revoke(config: str | None, key_id: str) -> None:
    """Revoke a key; every gateway process stops accepting it within auth.cache_ttl_s."""

    async def go(svc: Any) -> Any:
        return await svc.revoke(key_id)

    rec = _with_keys(common.cli_settings(config), go)
    if rec is None:
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"revoked {rec.key_id}")


@cli.group()
def config() -> None:
    """Configuration tools."""


@config.command("check")
@common.config_file_option
def config_check(config: str | None) -> None:
    """Validate the configuration and print what it serves."""
    from interlock.check.startup import problems
    from interlock.providers.registry import build_deployments
    from interlock.routing.catalog import Catalog
    from interlock.settings import ConfigError

    settings = common.cli_settings(config)
    # What `serve`/`worker` would refuse (missing extras, cluster secrets): check/startup.py
    found = problems(settings)
    fails = [p for p in found if p.severity == "fail"]
    for p in found:
        click.echo(f"{p.severity.upper()} {p.line()}")
    if fails:
        click.echo(f"configuration FAIL: {len(fails)} problem(s); `interlock serve` "
                   "would refuse to start")  # fmt: skip
        sys.exit(1)
    try:
        catalog = Catalog(settings, build_deployments(settings))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"configuration OK: {len(settings.providers)} providers, "
               f"{len(settings.deployments)} deployments, {len(catalog.names())} models")  # fmt: skip
    for route in catalog.routes():
        click.echo(f"  {route.alias} -> {', '.join(d.name for d in route.deployments)}")


cli.add_command(remote.degradation)
cli.add_command(remote.deployments)
cli.add_command(spend_cmds.report)
spend_cmds.report.add_command(router_cmds.report_routing)
cli.add_command(router_cmds.router)
cli.add_command(spend_cmds.estimate)
cli.add_command(spend_cmds.spend)
cli.add_command(remote.budgets)
cli.add_command(worker_cmd.worker)
cli.add_command(alerts_cmd.alerts)
cli.add_command(loadtest_cmd.loadtest)
cli.add_command(check_cmd.check)
cli.add_command(simulate_cmd.simulate)
spend_cmds.report.add_command(capacity_cmd.report_capacity)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
