"""A test-only renderer for the subset of Helm's Go templates the chart uses.

No helm binary is installable here (not on PyPI or Debian), so the chart keeps to a subset
this module implements with Helm's semantics:

- actions: ``{{ PIPELINE }}``, ``if`` / ``else if`` / ``else`` / ``end``, variables
  ``$x := PIPELINE`` and ``$x = PIPELINE``, comments ``{{/* */}}``, the ``{{-`` / ``-}}``
  trims;
- operands: ``.Values.a.b``, ``.Release.Name``/``.Namespace``, ``.Chart.Version``, ``$x``,
  ``$x.a``, ``(PIPELINE)`` and ``(PIPELINE).field``, string/number/bool literals, and the
  method ``.Capabilities.APIVersions.Has "group/version"``;
- functions: quote, nindent, indent, toYaml, not, and, or, eq, ne, empty, default,
  required, fail, hasPrefix, contains, lower, printf (%s/%d only), b64enc, b64dec,
  randAlphaNum, regexMatch, len, lt, splitList, uniq, dict (no arguments), index, lookup (``helm template`` answers ``{}``; a test may pass the
  cluster's objects).

Anything else raises :class:`Unsupported`, so a template that drifts outside the subset fails
the test instead of rendering wrongly. ``fail``/``required`` raise :class:`TemplateFail`
with the message Helm would print.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
from collections.abc import Callable, Iterable
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\()|(\))|(\|)|([^\s()|"]+))')


class Unsupported(ValueError):
    pass


class TemplateFail(RuntimeError):
    """A template called ``fail`` (or ``required`` got nothing): ``helm`` exits with it."""


class APIVersions:
    def __init__(self, available: Iterable[str]) -> None:
        self.available = set(available)

    def Has(self, version: str) -> bool:  # Helm's name
        return version in self.available


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or value in ("", [], {})


def _printf(fmt: str, *args: Any) -> str:
    if re.search(r"%[^sd%]", fmt):
        raise Unsupported(f"printf verb in {fmt!r}")
    return fmt.replace("%d", "%s") % tuple(args)


def _rand_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(int(n)))


def _fail(message: str) -> Any:
    raise TemplateFail(message)


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateFail(message)
    return value


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _go_regex(pattern: str) -> str:
    """Go's RE2 syntax as far as the chart uses it (it is also Python's)."""
    if re.search(r"\\[pPz]|\(\?P?<", pattern):
        raise Unsupported(f"regex feature outside the shared subset: {pattern!r}")
    return pattern


def _indent(n: int, text: Any, newline: bool) -> str:
    pad = " " * int(n)
    body = "\n".join(pad + line if line else line for line in str(text).split("\n"))
    return "\n" + body if newline else body


def _functions(lookups: dict[tuple[str, str, str, str], Any]) -> dict[str, Callable[..., Any]]:
    return {
        "quote": lambda v: json.dumps("" if v is None else str(v)),
        "nindent": lambda n, v: _indent(n, v, True),
        "indent": lambda n, v: _indent(n, v, False),
        "toYaml": _to_yaml,
        "not": lambda v: _empty(v),
        "and": lambda *a: next((x for x in a if _empty(x)), a[-1]),
        "or": lambda *a: next((x for x in a if not _empty(x)), a[-1]),
        "eq": lambda a, *b: any(a == x for x in b),
        "ne": lambda a, b: a != b,
        "empty": _empty,
        "default": lambda d, v=None: d if _empty(v) else v,
        "required": _required,
        "fail": _fail,
        "hasPrefix": lambda prefix, s: str(s).startswith(prefix),
        "contains": lambda sub, s: sub in str(s),
        "lower": lambda s: str(s).lower(),
        "printf": _printf,
        "b64enc": lambda s: base64.b64encode(str(s).encode()).decode(),
        "b64dec": lambda s: base64.b64decode(str(s)).decode(),
        "randAlphaNum": _rand_alnum,
        "index": _index,
        "dict": lambda: {},
        "splitList": lambda sep, s: list(str(s)) if sep == "" else str(s).split(sep),
        "uniq": lambda items: list(dict.fromkeys(items)),
        "len": lambda v: len(v or ""),
        "lt": lambda a, b: a < b,
        "regexMatch": lambda pattern, s: re.search(_go_regex(pattern), str(s)) is not None,
        "lookup": lambda api, kind, ns, name: lookups.get((api, kind, ns, name), {}),
    }


class _Renderer:
    def __init__(self, ctx: dict[str, Any], funcs: dict[str, Callable[..., Any]]) -> None:
        self.ctx = ctx
        self.funcs = funcs
        self.vars: dict[str, Any] = {}

    # --- expressions -------------------------------------------------------------------
    def pipeline(self, expr: str) -> Any:
        tokens = [t for t in _tokens(expr)]
        value, rest = self._pipeline(tokens)
        if rest:
            raise Unsupported(f"trailing tokens in {expr!r}")
        return value

    def _pipeline(self, tokens: list[str]) -> tuple[Any, list[str]]:
        value: Any = _NOTHING
        while True:
            words: list[Any] = []
            while tokens and tokens[0] not in ("|", ")"):
                tok = tokens.pop(0)
                if tok == "(":
                    inner, tokens = self._pipeline(tokens)
                    if not tokens or tokens[0] != ")":
                        raise Unsupported("unbalanced parentheses")
                    tokens.pop(0)
                    if tokens and tokens[0].startswith("."):  # (PIPELINE).field
                        inner = self._walk(inner, tokens.pop(0)[1:])
                    words.append(_Value(inner))
                else:
                    words.append(tok)
            value = self._command(words, value)
            if tokens and tokens[0] == "|":
                tokens.pop(0)
                continue
            return value, tokens

    def _command(self, words: list[Any], piped: Any) -> Any:
        if not words:
            raise Unsupported("empty command")
        head = words[0]
        args = [self._operand(w) for w in words[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        if isinstance(head, str) and head in self.funcs:
            return self.funcs[head](*args)
        value = self._operand(head)
        if callable(value):
            return value(*args)
        if args:
            raise Unsupported(f"cannot call {head!r}")
        return value

    def _operand(self, word: Any) -> Any:
        if isinstance(word, _Value):
            return word.value
        if word.startswith('"'):
            return json.loads(word)
        if word in ("true", "false"):
            return word == "true"
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word.startswith("."):
            return self._walk(self.ctx, word[1:])
        if word in self.funcs:  # a niladic function as an argument: (dict)
            return self.funcs[word]()
        if word.startswith("$"):
            name, _, path = word.partition(".")
            if name not in self.vars:
                raise Unsupported(f"undefined variable {name}")
            return self._walk(self.vars[name], path)
        raise Unsupported(f"unsupported operand or function: {word!r}")

    @staticmethod
    def _walk(node: Any, path: str) -> Any:
        for part in filter(None, path.split(".")):
            if isinstance(node, dict):
                node = node.get(part)
            elif node is not None and hasattr(node, part):
                node = getattr(node, part)
            else:
                node = None
        return node

    # --- actions -------------------------------------------------------------------------
    def render(self, template: str) -> str:
        pieces: list[tuple[str, str]] = []
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
        # per open `if`: [emitting now, some branch already taken]
        stack: list[list[bool]] = []
        for kind, s in pieces:
            emitting = all(frame[0] for frame in stack)
            if kind == "text":
                if emitting:
                    out.append(s)
                continue
            if s.startswith("/*"):
                continue
            word, _, rest = s.partition(" ")
            outer = all(frame[0] for frame in stack[:-1])
            if word == "if":
                value = emitting and not _empty(self.pipeline(rest))
                stack.append([value, value])
            elif word == "else":
                if not stack:
                    raise Unsupported("else outside if")
                frame = stack[-1]
                if frame[1]:
                    frame[0] = False
                elif rest.startswith("if "):
                    value = outer and not _empty(self.pipeline(rest[3:]))
                    frame[0] = frame[1] = value
                elif not rest:
                    frame[0] = frame[1] = outer
                else:
                    raise Unsupported(f"unsupported: {s!r}")
            elif s == "end":
                if not stack:
                    raise Unsupported("end outside if")
                stack.pop()
            elif word in ("range", "with", "define", "template", "include", "block"):
                raise Unsupported(f"unsupported action: {s!r}")
            elif emitting:
                assign = re.fullmatch(r"(\$[A-Za-z_][A-Za-z0-9_]*)\s*(:?=)\s*(.*)", s, re.DOTALL)
                if assign:
                    if assign.group(2) == "=" and assign.group(1) not in self.vars:
                        raise Unsupported(f"assignment to undeclared {assign.group(1)}")
                    self.vars[assign.group(1)] = self.pipeline(assign.group(3))
                    continue
                value = self.pipeline(s)
                out.append("" if value is None else str(value))
        if stack:
            raise Unsupported("unclosed {{ if }}")
        return "".join(out)


class _Value:
    def __init__(self, value: Any) -> None:
        self.value = value


_NOTHING = object()


def _tokens(expr: str) -> Iterable[str]:
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenise {expr[pos:]!r}")
        pos = m.end()
        yield next(g for g in m.groups() if g is not None)


def render(
    template: str,
    values: dict[str, Any],
    release: str = "test",
    chart: dict[str, Any] | None = None,
    *,
    api_versions: Iterable[str] = (),
    lookups: dict[tuple[str, str, str, str], Any] | None = None,
    namespace: str = "default",
) -> str:
    """Render one template file. ``api_versions``: what the cluster serves (Helm's
    ``.Capabilities.APIVersions``; the core groups are always there); ``lookups``: objects
    ``lookup`` finds, keyed (apiVersion, kind, namespace, name)."""
    core = {"v1", "apps/v1", "policy/v1", "autoscaling/v2"}
    ctx = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace},
        "Chart": chart or {},
        "Capabilities": {"APIVersions": APIVersions(core | set(api_versions))},
    }
    return _Renderer(ctx, _functions(lookups or {})).render(template)
