"""What the running gateway itself serves, read over HTTP: its models (``GET /v1/models``),
its deployments (``GET /admin/deployments``) and every budget it enforces
(``GET /admin/budgets``, those from its configuration and those made through the API).

``interlock check`` judges this rather than its own reading of a configuration file: the
file on the operator's machine may not be the one the gateway runs, and budgets made
through the admin API are in no file at all. Whatever could not be read is ``None`` with
the reason, so an item says "could not verify" instead of reporting an absence it did
not see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from interlock.check.evidence import fetch

__all__ = ["Served", "read_served"]


@dataclass(frozen=True)
class Served:
    base: str
    models: tuple[str, ...] | None  # None: not read (see problems)
    deployments: tuple[dict[str, Any], ...] | None
    budgets: tuple[dict[str, Any], ...] | None
    problems: dict[str, str]  # path -> why it could not be read

    def why(self, path: str) -> str:
        return self.problems.get(path, "not asked")


def read_served(base: str, key: str | None, timeout: float = 5.0) -> Served:
    """Ask the gateway at ``base`` with the admin ``key`` (None: no key was found)."""
    problems: dict[str, str] = {}
    headers = {"authorization": f"Bearer {key}"} if key else {}

    def rows(path: str, field: str | None = None) -> list[Any] | None:
        status, body = fetch(base + path, timeout=timeout, headers=headers)
        if status == 0:
            problems[path] = f"nothing answers at {base}"
            return None
        if status in (401, 403):
            problems[path] = f"{path} answered {status}: " + (
                "the key is not an admin key" if key else "no admin key was given"
            )
            return None
        if status != 200:
            problems[path] = f"{path} answered {status}"
            return None
        try:
            data = json.loads(body)["data"]
            if not isinstance(data, list):
                raise TypeError("data is not a list")
            return [r[field] if field else r for r in data if isinstance(r, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            problems[path] = f"{path} answered something that is not a list: {exc}"
            return None

    models = rows("/v1/models", "id")
    deployments = rows("/admin/deployments")
    budgets = rows("/admin/budgets")
    return Served(
        base=base,
        models=None if models is None else tuple(str(m) for m in models),
        deployments=None if deployments is None else tuple(deployments),
        budgets=None if budgets is None else tuple(budgets),
        problems=problems,
    )
