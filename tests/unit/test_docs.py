"""The documentation keeps up with the code.

docs/configuration.md documents each configuration field in a table row whose first
cell is the field's dotted path in backticks, e.g. ``| `server.port` | ...``. Entries of
a mapping are written with a placeholder (``providers.<name>.api_key``,
``deployments.<name>.timeouts.idle_s``, ``models.<alias>.deployments``), items of a list
with ``[]`` (``models.<alias>.fallbacks[].on``).
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel

from interlock.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
README = ROOT / "README.md"

# The placeholder that stands for a mapping's key, by the mapping's field name.
PLACEHOLDER = {"models": "<alias>", "signals": "<signal>"}
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def _models_in(annotation: Any) -> tuple[list[type[BaseModel]], str]:
    """The settings classes inside an annotation, and how they nest: "", "map" or "list"."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], ""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict:
        return _models_in(args[1])[0], "map"
    if origin in (tuple, list):
        return _models_in(args[0])[0] if args else [], "list"
    if origin in (Union, types.UnionType):
        found: list[type[BaseModel]] = []
        how = ""
        for arg in args:
            inner, inner_how = _models_in(arg)
            found.extend(inner)
            how = how or inner_how
        return found, how
    return [], ""


def field_paths(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Every field path of ``model``, nested settings classes included."""
    paths: set[str] = set()
    hints = get_type_hints(model)  # resolves forward references (postponed annotations)
    for name in model.model_fields:
        path = f"{prefix}{name}"
        paths.add(path)
        nested, how = _models_in(hints[name])
        suffix = {"map": f".{PLACEHOLDER.get(name, '<name>')}", "list": "[]"}.get(how, "")
        for sub in nested:
            paths |= field_paths(sub, f"{path}{suffix}.")
    return paths


def documented_paths() -> set[str]:
    """The field paths docs/configuration.md documents (first cells of table rows)."""
    top = set(Settings.model_fields)
    found = _ROW.findall(CONFIG_DOC.read_text(encoding="utf-8"))
    return {p for p in found if p.split(".", 1)[0] in top}


def test_the_walk_sees_nested_settings() -> None:
    paths = field_paths()
    assert "server.max_body_bytes" in paths
    assert "providers.<name>.api_key" in paths
    assert "deployments.<name>.timeouts.idle_s" in paths
    assert "deployments.<name>.price.input_per_mtok" in paths
    assert "models.<alias>.deployments" in paths


def test_every_configuration_field_is_documented() -> None:
    missing = sorted(field_paths() - documented_paths())
    assert not missing, f"fields missing from docs/configuration.md: {missing}"


def test_every_documented_field_exists() -> None:
    stale = sorted(documented_paths() - field_paths())
    assert not stale, f"docs/configuration.md documents fields that do not exist: {stale}"


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:40])
    assert "make run" in head
    assert "make test" in head
