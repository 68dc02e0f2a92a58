"""The route table: (method, path) to handler, plus the few routes with a path parameter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from interlock.api import (
    admin,
    admin_alerts,
    admin_ops,
    admin_spend,
    app_cache,
    batches,
    dashboard,
    health,
    jobs,
    messages,
    openai_routes,
    openapi,
)
from interlock.api.http import Ctx
from interlock.errors import MethodNotAllowed, NotFound
from interlock.gateway import Gateway

Handler = Callable[[Ctx, Gateway], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Match:
    handler: Handler
    route: str  # the metrics label: the route template, never the raw path


_EXACT: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": openai_routes.chat_completions},
    "/v1/completions": {"POST": openai_routes.completions},
    "/v1/embeddings": {"POST": openai_routes.embeddings},
    "/v1/models": {"GET": openai_routes.list_models},
    "/v1/messages": {"POST": messages.create_message},
    "/v1/messages/count_tokens": {"POST": messages.count_tokens},
    "/admin/keys": {"GET": admin.list_keys, "POST": admin.create_key},
    "/admin/deployments": {"GET": admin_ops.list_deployments},
    "/admin/budgets": {"GET": admin_spend.list_budgets, "POST": admin_spend.create_budget},
    "/admin/budgets/alerts": {"GET": admin_spend.budget_alerts},
    "/admin/alerts": {"GET": admin_alerts.list_alerts},
    "/admin/degradation": {"GET": admin_ops.get_degradation, "PUT": admin_ops.put_degradation},
    "/healthz": {"GET": health.healthz},
    "/readyz": {"GET": health.readyz},
    "/metrics": {"GET": health.metrics},
    "/openapi.json": {"GET": openapi.serve},
    "/v1/jobs": {"POST": jobs.create_job, "GET": jobs.list_jobs},
    "/admin/jobs/dead": {"GET": jobs.dead_letters},
    "/admin/jobs/webhook-secret": {"GET": jobs.webhook_secret},
    "/v1/files": {"POST": batches.upload_file, "GET": batches.list_files},
    "/v1/batches": {"POST": batches.create_batch, "GET": batches.list_batches},
    "/dashboard": {"GET": dashboard.page},
    "/admin/dashboard/data": {"GET": dashboard.data},
}

# (prefix, parameter name, suffix, methods, template)
_PARAM: list[tuple[str, str, str, dict[str, Handler], str]] = [
    (
        "/admin/keys/",
        "key_id",
        "/revoke",
        {"POST": admin.revoke_key},
        "/admin/keys/{key_id}/revoke",
    ),
    (
        "/admin/keys/",
        "key_id",
        "",
        {"GET": admin.get_key, "PATCH": admin.update_key, "DELETE": admin.revoke_key},
        "/admin/keys/{key_id}",
    ),
    ("/v1/models/", "model", "", {"GET": openai_routes.get_model}, "/v1/models/{model}"),
    (
        "/v1/cache/",
        "path",
        "",
        {"PUT": app_cache.put_value, "GET": app_cache.get_value, "DELETE": app_cache.delete_value},
        "/v1/cache/{namespace}/{key}",
    ),
    (
        "/admin/budgets/",
        "budget_id",
        "",
        {"GET": admin_spend.get_budget, "DELETE": admin_spend.delete_budget},
        "/admin/budgets/{budget_id}",
    ),
    (
        "/admin/deployments/",
        "deployment",
        "/reset",
        {"POST": admin_ops.reset_deployment},
        "/admin/deployments/{deployment}/reset",
    ),
]

_PARAM += [
    (
        "/v1/jobs/",
        "job_id",
        "",
        {"GET": jobs.get_job, "DELETE": jobs.cancel_job},
        "/v1/jobs/{job_id}",
    ),
    (
        "/admin/jobs/",
        "job_id",
        "/requeue",
        {"POST": jobs.requeue_job},
        "/admin/jobs/{job_id}/requeue",
    ),
]

_PARAM.append(
    (
        "/dashboard/static/",
        "asset",
        "",
        {"GET": dashboard.static},
        "/dashboard/static/{asset}",
    )
)

_PARAM += [
    (
        "/v1/files/",
        "file_id",
        "/content",
        {"GET": batches.file_content},
        "/v1/files/{file_id}/content",
    ),
    (
        "/v1/files/",
        "file_id",
        "",
        {"GET": batches.get_file, "DELETE": batches.delete_file},
        "/v1/files/{file_id}",
    ),
    (
        "/v1/batches/",
        "batch_id",
        "/cancel",
        {"POST": batches.cancel_batch},
        "/v1/batches/{batch_id}/cancel",
    ),
    (
        "/v1/batches/",
        "batch_id",
        "",
        {"GET": batches.get_batch},
        "/v1/batches/{batch_id}",
    ),
]

# Aliases some OpenAI-compatible clients use (no /v1 prefix).
for _path in ("/chat/completions", "/completions", "/embeddings", "/models"):
    _EXACT[_path] = _EXACT["/v1" + _path]


def _pick(methods: dict[str, Handler], method: str, template: str) -> Match:
    handler = methods.get(method)
    if handler is None:
        raise MethodNotAllowed(
            f"method {method} is not allowed here; use {', '.join(sorted(methods))}"
        )
    return Match(handler, template)


def resolve(method: str, path: str, params: dict[str, str]) -> Match:
    methods = _EXACT.get(path)
    if methods is not None:
        return _pick(methods, method, path)
    for prefix, name, suffix, methods, template in _PARAM:
        if path.startswith(prefix) and path.endswith(suffix):
            value = path[len(prefix) : len(path) - len(suffix)] if suffix else path[len(prefix) :]
            # Model ids may contain '/' (e.g. meta-llama/Llama-3.1-8B-Instruct).
            if value and (
                "/" not in value or name == "model" or (name == "path" and value.count("/") == 1)
            ):
                params[name] = value
                return _pick(methods, method, template)
    raise NotFound(f"no route for {method} {path[:200]}", code="route_not_found")


def routes() -> dict[str, list[str]]:
    """Every path template and its methods (the OpenAPI test compares with this)."""
    out = {path: sorted(m) for path, m in _EXACT.items()}
    for _prefix, _name, _suffix, methods, template in _PARAM:
        out.setdefault(template, [])
        out[template] = sorted(set(out[template]) | set(methods))
    return out
