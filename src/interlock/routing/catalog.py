"""Public model names (aliases) and the deployments behind each."""

from __future__ import annotations

from dataclasses import dataclass

from interlock.errors import InvalidRequest, NotFound
from interlock.providers.registry import Deployment
from interlock.settings import AliasSettings, Settings
from interlock.types import Endpoint

_SERVES = {
    Endpoint.CHAT: ("chat",),
    Endpoint.EMBEDDINGS: ("embeddings",),
    Endpoint.COMPLETIONS: ("completions", "chat"),
}


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    kind: str
    deployments: tuple[Deployment, ...]
    spec: AliasSettings

    @property
    def description(self) -> str:
        return self.spec.description


class Catalog:
    def __init__(self, settings: Settings, deployments: dict[str, Deployment]) -> None:
        routes: dict[str, Route] = {}
        for alias, spec in settings.models.items():
            chain = tuple(deployments[d] for d in spec.deployments)
            # A tiered alias has no deployments of its own: it serves chat via its tiers.
            routes[alias] = Route(alias, chain[0].kind if chain else "chat", chain, spec)
        # A deployment nobody aliased is still reachable under its upstream model name.
        implicit: dict[str, list[Deployment]] = {}
        aliased = {d for spec in settings.models.values() for d in spec.deployments}
        for dep in deployments.values():
            if dep.name not in aliased and dep.target.model not in routes:
                implicit.setdefault(dep.target.model, []).append(dep)
        for model, deps in implicit.items():
            same_kind = tuple(d for d in deps if d.kind == deps[0].kind)
            spec = AliasSettings(deployments=tuple(d.name for d in same_kind))
            routes[model] = Route(model, deps[0].kind, same_kind, spec)
        self._routes = routes

    def names(self) -> list[str]:
        return list(self._routes)

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def get(self, model: str) -> Route | None:
        return self._routes.get(model)

    def resolve(self, model: str, endpoint: Endpoint) -> Route:
        route = self._routes.get(model)
        if route is None:
            raise NotFound(
                f"The model '{model[:200]}' does not exist or is not served by this gateway",
                code="model_not_found",
                param="model",
            )
        if route.kind not in _SERVES[endpoint]:
            raise InvalidRequest(
                f"The model '{model}' is a {route.kind} model and cannot serve this endpoint",
                code="unsupported_model_endpoint",
                param="model",
            )
        if endpoint is Endpoint.COMPLETIONS and any(
            d.adapter.wire != "openai" for d in route.deployments
        ):
            raise InvalidRequest(
                f"The model '{model}' is not behind an OpenAI-compatible upstream; "
                "/v1/completions needs one",
                code="unsupported_model_endpoint",
                param="model",
            )
        return route
