"""A test-only renderer for the subset of Helm's Go templates the chart uses.

No helm binary is installable here (not on PyPI or Debian), so the chart keeps to:
``{{ .Values.a.b }}``, ``{{ .Release.Name }}``, ``{{ .Chart.Version }}``, pipes into
``quote`` and ``nindent N``, ``toYaml X``, ``if X`` / ``if not X`` / ``end``, and the
``{{-`` / ``-}}`` whitespace trims. Anything else raises, so a template that drifts
outside the subset fails the test instead of rendering wrongly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


class Unsupported(ValueError):
    pass


def _lookup(path: str, ctx: dict[str, Any]) -> Any:
    if not path.startswith("."):
        raise Unsupported(f"not a value path: {path!r}")
    node: Any = ctx
    for part in path[1:].split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _evaluate(expr: str, ctx: dict[str, Any]) -> Any:
    stages = [s.strip() for s in expr.split("|")]
    head = stages[0].split()
    if len(head) == 1:
        value = _lookup(head[0], ctx)
    elif head[0] == "toYaml" and len(head) == 2:
        value = _to_yaml(_lookup(head[1], ctx))
    else:
        raise Unsupported(f"unsupported expression: {expr!r}")
    for stage in stages[1:]:
        words = stage.split()
        if words == ["quote"]:
            value = json.dumps("" if value is None else str(value))
        elif len(words) == 2 and words[0] == "nindent":
            pad = " " * int(words[1])
            value = "\n" + "\n".join(
                pad + line if line else line for line in str(value).split("\n")
            )
        else:
            raise Unsupported(f"unsupported function: {stage!r}")
    return value


def _truthy(value: Any) -> bool:
    return bool(value)


def render(
    template: str,
    values: dict[str, Any],
    release: str = "test",
    chart: dict[str, Any] | None = None,
) -> str:
    ctx = {
        "Values": values,
        "Release": {"Name": release, "Namespace": "default"},
        "Chart": chart or {},
    }
    # Apply the trims first: "{{-" eats whitespace before, "-}}" after.
    pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", expr)
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    pieces.append(("text", template[pos:]))
    out: list[str] = []
    stack: list[bool] = []  # is each enclosing block emitting?
    for kind, s in pieces:
        emitting = all(stack)
        if kind == "text":
            if emitting:
                out.append(s)
            continue
        if s.startswith("/*"):
            continue
        words = s.split()
        if words[0] == "if":
            cond = words[1:]
            negate = cond[:1] == ["not"]
            value = _truthy(_evaluate(" ".join(cond[1:] if negate else cond), ctx))
            stack.append(value != negate)
        elif words == ["end"]:
            stack.pop()
        elif emitting:
            value = _evaluate(s, ctx)
            out.append("" if value is None else str(value))
    if stack:
        raise Unsupported("unclosed {{ if }}")
    return "".join(out)
