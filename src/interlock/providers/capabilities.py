"""What each model family accepts: the per-model capability table the adapters consult.

A canonical request is OpenAI-shaped; a provider's models each take a subset of it, with
their own ranges and pairs they refuse together. Every adapter looks its target model up
here (:func:`rules_for`) and applies the rules in one of three ways:

* **translate** where the provider has an equivalent (``max_tokens`` ->
  ``max_completion_tokens``, ``reasoning_effort`` -> Anthropic ``thinking``);
* **drop with a warning** where it has none and leaving it out keeps the answer's meaning
  (a sampling knob the model fixes itself): the warning reaches the client as the
  ``x-interlock-warnings`` header of the answer (:meth:`Adjust.drop`, ``UpstreamCall.warnings``);
* **refuse** with a 400 ``unsupported_parameter`` only where dropping would change what
  the answer means (``n`` > 1 on a model that writes one answer, ``logprobs`` asked for and
  not available): :meth:`Adjust.refuse`.

The tables themselves live next to each provider (``providers/rules/<kind>.py``), so a
provider's rules change in one file; docs/providers.md says how to extend them. This module
is hand-written: it is Interlock's own policy over the providers' published rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from interlock.errors import InvalidRequest

StructuredOutput = Literal["native", "prompt", "none"]


@dataclass(frozen=True, slots=True)
class ToolIdRule:
    """What a provider accepts as a tool-call id (Bedrock ``ToolUseId``: 1-64 characters of
    ``[a-zA-Z0-9_-]``...). Ids issued by another provider of the same alias (after a
    failover, a conversation carries them back) are mapped by :func:`normalise_tool_id`."""

    max_len: int
    pattern: str  # the whole id must match (re.fullmatch)

    def accepts(self, value: str) -> bool:
        return 0 < len(value) <= self.max_len and re.fullmatch(self.pattern, value) is not None


@dataclass(frozen=True, slots=True)
class ModelRules:
    """One model family of one provider kind. Matched by ``fnmatch`` on the upstream model
    name (the first matching entry of the provider's table wins)."""

    family: str  # a name for docs and warnings
    patterns: tuple[str, ...]  # e.g. ("claude-opus-4*", "claude-sonnet-4-5*")
    # Canonical (OpenAI) parameters the family does not take: dropped with a warning.
    unsupported: frozenset[str] = frozenset()
    # Canonical parameters whose absence would change the answer's meaning: refused (400).
    refused: frozenset[str] = frozenset()
    # Pairs the family refuses together: the second of each pair is dropped with a warning.
    exclusive: tuple[tuple[str, str], ...] = ()
    # Closed numeric ranges (inclusive); a value outside is clamped with a warning.
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    structured_output: StructuredOutput = "prompt"
    thinking: bool = False  # extended thinking / reasoning effort
    tool_strict: bool = False  # a tool's ``strict`` flag has an equivalent
    tool_schema: str = "json-schema"  # the dialect tool parameters are written in
    tool_id: ToolIdRule | None = None
    notes: str = ""  # docs only

    def matches(self, model: str) -> bool:
        return any(fnmatchcase(model, p) for p in self.patterns)


_TABLES: dict[str, tuple[ModelRules, ...]] = {}
_DEFAULT = ModelRules(family="default", patterns=("*",))


def register(kind: str, rules: Iterable[ModelRules]) -> None:
    """Install a provider kind's table (each ``providers/rules/<kind>.py`` calls this)."""
    _TABLES[kind] = tuple(rules)


def table(kind: str) -> tuple[ModelRules, ...]:
    _load()
    return _TABLES.get(kind, ())


def rules_for(kind: str, model: str) -> ModelRules:
    """The rules of ``model`` on a provider of ``kind`` (the last catch-all entry of a
    table, or a permissive default where a kind has no table)."""
    for rules in table(kind):
        if rules.matches(model):
            return rules
    return _DEFAULT


_loaded = False


def _load() -> None:
    # The tables import this module; loading them lazily keeps the import graph acyclic.
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    from interlock.providers import rules as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


class Adjust:
    """What an adapter changed in one request, as it changes it: the warnings that go to
    the client with the answer (``UpstreamCall.warnings``) and the refusals."""

    __slots__ = ("family", "warnings")

    def __init__(self, rules: ModelRules) -> None:
        self.family = rules.family
        self.warnings: list[str] = []

    def drop(self, param: str, why: str = "") -> None:
        reason = why or f"not supported by {self.family} models"
        self.warnings.append(f"{param} dropped: {reason}")

    def note(self, message: str) -> None:
        self.warnings.append(message)

    def refuse(self, param: str, why: str = "") -> InvalidRequest:
        reason = why or f"not supported by {self.family} models"
        return InvalidRequest(
            f"'{param}' is not supported here: {reason}",
            param=param,
            code="unsupported_parameter",
        )

    def apply_common(self, rules: ModelRules, body: dict[str, object]) -> None:
        """Apply a family's generic rules to an OpenAI-shaped ``body`` in place (before the
        adapter translates it): refusals, unsupported parameters, exclusive pairs, ranges."""
        for param in sorted(rules.refused):
            if body.get(param) not in (None, False):
                raise self.refuse(param)
        for param in sorted(rules.unsupported):
            if body.get(param) is not None:
                del body[param]
                self.drop(param)
        for first, second in rules.exclusive:
            if body.get(first) is not None and body.get(second) is not None:
                del body[second]
                self.drop(second, f"{self.family} models do not take {first} and {second} together")
        for param, (low, high) in rules.ranges.items():
            value = body.get(param)
            if isinstance(value, int | float) and not isinstance(value, bool):
                clamped = min(max(value, low), high)
                if clamped != value:
                    body[param] = clamped
                    self.note(f"{param} clamped to {clamped:g} ({self.family} range {low:g}-{high:g})")


def normalise_tool_id(value: str, rule: ToolIdRule | None) -> str:
    """``value`` if the provider accepts it, else a stable id it accepts: the same input
    always maps to the same output (a tool call and its result stay paired, across
    requests too), and different inputs do not collide in practice (SHA-256)."""
    if rule is None or rule.accepts(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    candidate = "call_" + digest
    if rule.accepts(candidate[: rule.max_len]):
        return candidate[: rule.max_len]
    if rule.accepts(digest[: rule.max_len]):
        return digest[: rule.max_len]
    raise ValueError(f"no id form satisfies {rule}")


__all__ = [
    "Adjust",
    "ModelRules",
    "StructuredOutput",
    "ToolIdRule",
    "normalise_tool_id",
    "register",
    "rules_for",
    "table",
]
