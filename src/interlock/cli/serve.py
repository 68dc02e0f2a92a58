"""``interlock serve``: resolve the configuration, start the simulator if wanted, run uvicorn."""

from __future__ import annotations

import asyncio
import atexit
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import orjson

from interlock.app import create_app
from interlock.childproc import start_module_process
from interlock.cli import defaults, http_server
from interlock.cli.http_server import GuardedHttpToolsProtocol, ServerLimits
from interlock.settings import ConfigError, Settings, dump_settings, parse_settings
from interlock.storage.files import private_dir

RESOLVED_ENV = "INTERLOCK_RESOLVED_SETTINGS"


def config_path(explicit: str | None, env: Mapping[str, str]) -> str | None:
    if explicit:
        return explicit
    if env.get("INTERLOCK_CONFIG"):
        return env["INTERLOCK_CONFIG"]
    return "interlock.yaml" if Path("interlock.yaml").exists() else None


raw_config = defaults.raw_config  # one reader of the file for serve and every command


def with_simulator(data: dict[str, Any], sim_url: str) -> dict[str, Any]:
    return defaults.merge(data, defaults.simulator_entries(sim_url))


def sim_enabled(data: dict[str, Any]) -> bool:
    sim = data.get("simulator")
    return isinstance(sim, dict) and sim.get("enabled") is True


def start_simulator(settings: Settings) -> tuple[subprocess.Popen[str], str]:
    """The simulated provider as its own process; returns it and its base URL."""
    sim = settings.simulator
    cmd = [
        sys.executable,
        "-m",
        "interlock.sim",
        "--host",
        sim.host,
        "--port",
        str(sim.port),
        "--seed",
        str(sim.seed),
        "--ttft-ms",
        str(sim.ttft_ms),
        "--tokens-per-s",
        str(sim.tokens_per_s),
        "--output-tokens",
        str(sim.output_tokens),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)  # noqa: S603
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("interlock sim listening on "):
        proc.kill()
        raise click.ClickException("the simulated provider failed to start")
    atexit.register(_stop, proc)
    return proc, line.rsplit(" ", 1)[-1]


def wants_local_embeddings(settings: Settings) -> bool:
    """Start the local embedding model when asked to, or (auto) when it is installed
    and the semantic cache would use it."""
    from interlock.localembed.model import available

    mode = settings.local_embeddings.enabled
    if mode == "false":
        return False
    if mode == "true":
        if not available() and not settings.local_embeddings.url:
            raise click.ClickException(
                "local_embeddings.enabled is true but interlock[local] is not installed "
                "(pip install 'interlock[local]')"
            )
        return True
    sem = settings.cache.semantic
    wanted = settings.cache.enabled and (
        sem.enabled
        or any(m.cache is not None and m.cache.semantic for m in settings.models.values())
    )
    return wanted and not sem.embedder and (bool(settings.local_embeddings.url) or available())


def start_local_embeddings(settings: Settings) -> str:
    """The local embedding model as its own process (dies with this one); its URL."""
    from interlock.localembed import READY_PREFIX

    le = settings.local_embeddings
    try:
        proc, url = start_module_process(
            "interlock.localembed", READY_PREFIX,
            "--max-batch", str(le.max_batch), "--max-wait-ms", str(le.max_wait_ms),
            "--threads", str(le.threads),
            timeout=180, what="the local embedding model", preexec_fn=_die_with_parent,
        )  # fmt: skip
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    atexit.register(_stop, proc)
    return url


def _die_with_parent() -> None:
    """In the simulator's process: get SIGTERM when the gateway process dies, however it
    dies (uvicorn re-raises SIGTERM after its graceful shutdown, so atexit may not run)."""
    if sys.platform == "linux":
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def resolve(path: str | None, env: Mapping[str, str]) -> tuple[Settings, dict[str, Any], str]:
    data, source = raw_config(path, env)
    if sim_enabled(data):
        # Validate with a placeholder address first, so a bad file fails before anything
        # starts; the simulator's real address replaces it once it runs.
        settings = parse_settings(with_simulator(data, "http://127.0.0.1:9"), source, env)
    else:
        settings = parse_settings(data, source, env)
    check_deployments(settings, source)
    return settings, data, source


def check_deployments(settings: Settings, source: str = "<config>") -> None:
    """Build every deployment once, so adapter/kind mismatches fail at startup; a provider
    kind whose optional extra is missing fails first, every such provider named."""
    from interlock.check.startup import provider_problems, refusal
    from interlock.providers.registry import build_deployments

    if (err := refusal(source, provider_problems(settings))) is not None:
        raise err
    build_deployments(settings)


def startup_check(settings: Settings, source: str) -> None:
    """Refuse, before anything starts or binds, a configuration that needs what this
    install lacks or a cluster without its shared secrets (check/startup.py); print the
    warnings (placeholders in embedded mode) to stderr."""
    from interlock.check.startup import problems, refusal

    found = problems(settings)
    if (err := refusal(source, found)) is not None:
        raise err
    for p in found:
        click.echo(f"warning: {p.line()}", err=True)


async def bootstrap(settings: Settings) -> str | None:
    """Migrate the database; create and return an admin key on the very first start."""
    from interlock.gateway import Gateway

    gw = Gateway(settings)
    try:
        await gw.start()
        if settings.auth.master_key is not None or await gw.keys.has_admin():
            return None
        _rec, token = await gw.keys.create(name="admin (generated at first start)", admin=True)
        return token
    finally:
        await gw.close()


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the parent wrote the resolved settings."""
    path = os.environ[RESOLVED_ENV]
    data = orjson.loads(Path(path).read_bytes())
    return create_app(parse_settings(data, "<resolved>", expand_env=False))


def serve(config: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    import uvicorn

    env = dict(os.environ)
    path = config_path(config, env)
    try:
        settings, data, source = resolve(path, env)
        startup_check(settings, source)
        extended = data
        if settings.simulator.enabled:
            _proc, sim_url = start_simulator(settings)
            extended = with_simulator(extended, sim_url)
        if wants_local_embeddings(settings):
            url = settings.local_embeddings.url or start_local_embeddings(settings)
            extended = defaults.merge(extended, defaults.local_embedding_entries(url))
        if extended is not data:
            settings = parse_settings(extended, source, env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    server = settings.server.model_copy(
        update={
            k: v
            for k, v in {"host": host, "port": port, "workers": workers}.items()
            if v is not None
        }
    )
    settings = settings.model_copy(update={"server": server})

    admin_key = asyncio.run(bootstrap(settings))
    # The parent migrated; workers must not race each other doing it again.
    worker_settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"run_migrations": False})}
    )
    _announce(settings, source, admin_key)

    common: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        # The guarded httptools protocol: header timeout, connection cap, drain 503s.
        "http": GuardedHttpToolsProtocol,
        "access_log": server.access_log,
        "log_level": "warning",
        # The drain (server.drain_timeout_s) has already waited for requests in flight
        # when uvicorn's own shutdown starts: it only closes idle connections.
        "timeout_graceful_shutdown": 1,
        # X-Forwarded-* handling costs every request; deployments behind a proxy that
        # need client addresses get them from the proxy's own logs.
        "proxy_headers": False,
    }
    limits = ServerLimits(
        header_timeout_s=server.header_timeout_s,
        max_connections=server.max_connections,
        drain_timeout_s=server.drain_timeout_s,
    )
    if server.workers == 1:
        http_server.run(uvicorn.Config(create_app(worker_settings), **common), limits)
        return
    state = private_dir(settings.state_dir)
    metrics_dir = tempfile.mkdtemp(prefix="prometheus-", dir=state)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    fd, resolved = tempfile.mkstemp(prefix="resolved-", suffix=".json", dir=state)
    with os.fdopen(fd, "wb") as fh:  # mkstemp creates it 0600: it holds secrets
        fh.write(orjson.dumps(dump_settings(worker_settings)))
    os.environ[RESOLVED_ENV] = resolved
    atexit.register(_cleanup, resolved, metrics_dir)
    uv_config = uvicorn.Config(
        "interlock.cli.serve:app_from_env",
        factory=True,
        workers=server.workers,
        timeout_worker_healthcheck=server.worker_healthcheck_s,
        **common,
    )
    http_server.run(uv_config, limits)


def _cleanup(resolved: str, metrics_dir: str) -> None:
    import shutil

    Path(resolved).unlink(missing_ok=True)
    shutil.rmtree(metrics_dir, ignore_errors=True)


def _announce(settings: Settings, source: str, admin_key: str | None) -> None:
    from interlock.providers.registry import build_deployments
    from interlock.routing.catalog import Catalog

    s = settings.server
    catalog = Catalog(settings, build_deployments(settings))
    click.echo(f"Interlock listening on http://{s.host}:{s.port} ({s.workers} worker(s))")
    click.echo(f"  configuration: {source}")
    click.echo(f"  storage: {_safe_url(settings.storage.url)}")
    click.echo(f"  OpenAI-compatible base URL: http://{s.host}:{s.port}/v1")
    click.echo("  models:")
    for route in catalog.routes():
        deps = ", ".join(f"{d.name} ({d.provider})" for d in route.deployments)
        click.echo(f"    {route.alias:<28} {route.kind:<11} -> {deps}")
    if s.workers > 1 and settings.state.backend == "local":
        click.echo(
            "  note: with state.backend 'local', breakers, deployment limits and the "
            "degradation level are per worker; set state.backend: redis to share them"
        )
    if admin_key:
        click.echo("")
        click.echo(f"  Admin key (shown once, stored hashed): {admin_key}")
    elif settings.auth.master_key is not None:
        click.echo("  Admin: the master key from the configuration / INTERLOCK_MASTER_KEY")
    else:
        click.echo(
            "  Admin: use the admin key printed at first start, or `interlock keys create --admin`"
        )
    sys.stdout.flush()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
