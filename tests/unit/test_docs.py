"""The documentation keeps up with the code.

docs/configuration.md documents each configuration field in a table row whose first
cell is the field's dotted path in backticks, e.g. ``| `server.port` | ...``. Entries of
a mapping are written with a placeholder (``providers.<name>.api_key``,
``deployments.<name>.timeouts.idle_s``, ``models.<alias>.deployments``), items of a list
with ``[]`` (``models.<alias>.fallbacks[].on``).

Beyond that table, every ``interlock …`` command line (commands, options, choice values)
and every dotted configuration key that README.md or any page under docs/ names in code
must exist in the CLI and the settings models; see the sections below.
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


# --- every `interlock …` command line and every dotted config key the docs name exists ---
#
# The docs are read as a reader reads them: inline code spans and fenced code blocks of
# README.md and docs/**/*.md. In a span or a shell line, ``interlock`` (or
# ``.venv/bin/interlock``) at a command position starts a command line; its words are
# walked through the click tree of ``interlock.cli.main:cli`` (``interlock sim`` through
# the simulator's own argparse parser): every subcommand and option must exist, a
# ``--opt a|b`` value must be among a click.Choice's choices, and a command must take as
# many arguments as the docs give it. ``…``/``...`` stand for "more", ``<x>`` and
# upper-case words (``FILE``, ``N``) for values, ``[--opt X]`` for optional parts and
# ``a|b`` in a command's place for alternatives (each is checked).

DOCS = [*sorted((ROOT / "docs").rglob("*.md")), README]
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
_SEPARATORS = {"&&", "||", ";", "|", "(", ")", "$(", "&", "then", "do"}
_PREFIXES = {"exec", "nohup", "sudo", "env", "time", "command", "!"}
_ELLIPSIS = {"…", "...", "[...]", "[…]"}
# Text that mentions a command but is not a command line (quoted output, log lines).
NOT_COMMANDS = {
    "interlock worker running: …",  # the worker's log line (docs/jobs.md)
}
# Options documented ahead of a change another engineer is landing; remove once it lands.
PENDING: set[str] = set()


def blocks_and_spans(text: str) -> tuple[list[str], list[str]]:
    """The fenced code blocks of a markdown text (their bodies) and its inline code spans."""
    blocks: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence, body = m.group(1), []
            else:
                prose.append(line)
        elif (
            m
            and m.group(1)[0] == fence[0]
            and len(m.group(1)) >= len(fence)
            and not m.group(2).strip()
        ):
            blocks.append("\n".join(body))
            fence = None
        else:
            body.append(line)
    spans = [m.group(2).strip() for m in _SPAN.finditer("\n".join(prose))]
    return blocks, spans


def _words(line: str) -> list[str]:
    import shlex

    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in an example
        return line.split()


def command_lines(code: str, *, span: bool) -> list[list[str]]:
    """The ``interlock`` command lines in a code block or span: each a list of words
    after ``interlock``. In a span, ``a|b`` without spaces is one word (alternatives)."""
    found: list[list[str]] = []
    text = code.replace("\\\n", " ")
    for raw in text.splitlines():
        line = re.sub(r"^\s*[$>]\s+", "", raw)
        # a placeholder is one word, spaces and all: `--slo p95_ms=<your SLO>`
        line = re.sub(r"<\w[^<>]*>", lambda m: m.group(0).replace(" ", "_"), line)
        # `python -m interlock.sim …` is `interlock sim …`
        line = re.sub(
            r"(?:^|(?<=\s))(?:\S*/)?python3? -m interlock\.sim(?=\s|$)", "interlock sim", line
        )
        if span:
            words = line.split()
        else:
            # `--format table|json`: alternatives, not a pipe (a pipe has spaces around it)
            protected = re.sub(r"(?<=[\w\]])\|(?=[\w\[])", "\0", line)
            words = [w.replace("\0", "|") for w in _words(protected)]
        at_command = True
        i = 0
        while i < len(words):
            w = words[i]
            if w in _SEPARATORS:
                at_command = True
            elif at_command and (w in _PREFIXES or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w)):
                pass  # still at the command position
            elif at_command and (w == "interlock" or w.endswith("/bin/interlock")):
                j = i + 1
                while (
                    j < len(words)
                    and words[j] not in _SEPARATORS
                    and not (not span and re.fullmatch(r"[0-9]?>>?.*|<[^>]*", words[j]))
                ):
                    j += 1
                found.append(words[i + 1 : j])
                i = j
                at_command = True
                continue
            else:
                at_command = False
            i += 1
    return found


def _is_value(word: str) -> bool:
    """A placeholder or example value rather than a command name."""
    return (
        word in _ELLIPSIS
        or word.startswith(("<", "$", '"', "'", "{"))
        or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", word))
    )


def _sim_options() -> dict[str, bool]:
    """``interlock sim``'s options (the simulator's argparse parser): takes a value?"""
    from interlock.sim.__main__ import build_parser

    parser = build_parser()
    opts = {o: a.nargs != 0 for o, a in parser._option_string_actions.items()}
    opts["--help-sim"] = False
    return opts


def check_command(words: list[str]) -> list[str]:
    """Problems with one documented command line (words after ``interlock``)."""
    import click

    from interlock.cli.main import cli

    problems: list[str] = []
    cmd: click.Command = cli
    name = "interlock"
    words = [w.strip("[]") for w in words]
    words = [w for w in words if w]
    i = 0
    while isinstance(cmd, click.Group) and i < len(words):
        w = words[i]
        if w in _ELLIPSIS or _is_value(w):
            return problems  # "interlock report …": some subcommand
        if w.startswith("-"):
            break
        alternatives = w.split("|")
        missing = [
            a for a in alternatives if a not in _ELLIPSIS and cmd.get_command(None, a) is None
        ]  # type: ignore[arg-type]
        if missing:
            known = ", ".join(sorted(cmd.commands)) if isinstance(cmd, click.Group) else ""
            return [f"`{name}` has no subcommand {' / '.join(missing)} (it has: {known})"]
        if len(alternatives) > 1:
            for alt in alternatives:
                if alt not in _ELLIPSIS:
                    problems += check_command([*name.split()[1:], alt, *words[i + 1 :]])
            return problems
        sub = cmd.get_command(None, w)  # type: ignore[arg-type]
        assert sub is not None
        cmd, name = sub, f"{name} {w}"
        i += 1
    rest = words[i:]
    if name == "interlock sim":
        sim_opts = _sim_options()
        j = 0
        while j < len(rest):
            opt = rest[j].split("=", 1)[0]
            if opt.startswith("-") and opt not in sim_opts:
                problems.append(f"`interlock sim` has no option {opt}")
            j += 2 if opt in sim_opts and sim_opts[opt] and "=" not in rest[j] else 1
        return problems
    options: dict[str, click.Option] = {"--help": click.Option(["--help"], is_flag=True)}
    arguments = 0
    for param in cmd.params:
        if isinstance(param, click.Option):
            for opt in [*param.opts, *param.secondary_opts]:
                options[opt] = param
        elif isinstance(param, click.Argument):
            arguments = 10**6 if param.nargs < 0 else arguments + param.nargs
    if cmd.allow_extra_args:
        arguments = 10**6
    positional = 0
    j = 0
    while j < len(rest):
        w = rest[j]
        if w in _ELLIPSIS:
            j += 1
            continue
        if w.startswith("-") and len(w) > 1 and not re.fullmatch(r"-[0-9.]+", w):
            opt, _, inline = w.partition("=")
            param = options.get(opt)
            if param is None:
                if opt not in PENDING:
                    problems.append(f"`{name}` has no option {opt}")
                j += 1
                continue
            takes_value = not param.is_flag and not param.count
            value = (
                inline if inline else (rest[j + 1] if takes_value and j + 1 < len(rest) else None)
            )
            if takes_value and isinstance(param.type, click.Choice) and value is not None:
                for alt in value.split("|"):
                    if alt and not _is_value(alt) and alt not in param.type.choices:
                        problems.append(
                            f"`{name} {opt}` takes one of {list(param.type.choices)}, not {alt!r}"
                        )
            j += 1 if inline or not takes_value else 2
            continue
        positional += 1
        j += 1
    if positional > arguments:
        problems.append(
            f"`{name}` takes {arguments} argument(s), the docs give it {positional}: {rest}"
        )
    return problems


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) for every ``interlock`` command line in the docs."""
    out: list[tuple[str, list[str]]] = []
    for path in DOCS:
        rel = path.relative_to(ROOT)
        blocks, spans = blocks_and_spans(path.read_text(encoding="utf-8"))
        for span in spans:
            if span in NOT_COMMANDS:
                continue
            out += [(f"{rel}: `{span}`", w) for w in command_lines(span, span=True)]
        for block in blocks:
            out += [(f"{rel}: {' '.join(w)}", w) for w in command_lines(block, span=False)]
    return out


def test_the_command_walk_catches_what_does_not_exist() -> None:
    assert check_command(["report", "spend", "--by", "team", "--since", "1d"]) == []
    assert check_command(["estimate", "monthly|ledger|break-even"]) == []
    assert check_command(["keys", "revoke", "<key_id>"]) == []
    assert check_command(["sim", "--port", "0", "--ttft-ms", "20"]) == []
    assert check_command(["spend", "report"])  # it is `report spend`
    assert check_command(["spend", "waste"])
    assert check_command(["report", "spend", "--nope"])
    assert check_command(["report", "spend", "--by", "galaxy"])  # not a choice
    assert check_command(["worker", "running:"])  # takes no argument
    assert check_command(["sim", "--no-such-flag"])
    assert command_lines("A=1 .venv/bin/interlock budgets --json | jq .  # c", span=False) == [
        ["budgets", "--json"]
    ]
    assert command_lines("cd interlock && interlock serve -c x.yaml", span=False) == [
        ["serve", "-c", "x.yaml"]
    ]
    assert command_lines("pip install 'interlock[local]'", span=False) == []
    assert command_lines("python -m interlock.sim --port 0 > sim.log", span=False) == [
        ["sim", "--port", "0"]
    ]
    assert command_lines(
        "interlock report spend [--format table|json] --model <m>", span=False
    ) == [["report", "spend", "[--format", "table|json]", "--model", "<m>"]]


def test_the_docs_find_command_lines() -> None:
    found = documented_commands()
    assert len(found) > 100, len(found)
    heads = {" ".join(w[:1]) for _, w in found}
    assert {"serve", "keys", "report", "loadtest", "check", "sim"} <= heads


def test_every_documented_command_and_option_exists() -> None:
    problems = [
        f"{where}: {p}" for where, words in documented_commands() for p in check_command(words)
    ]
    assert not problems, "the docs name CLI commands/options that do not exist:\n" + "\n".join(
        problems
    )


# --- dotted configuration keys named anywhere in the docs --------------------------------

_FILE_SUFFIXES = (
    ".py",
    ".md",
    ".yaml",
    ".yml",
    ".json",
    ".toml",
    ".db",
    ".html",
    ".js",
    ".css",
    ".txt",
    ".sh",
    ".sql",
    ".png",
    ".lock",
)


def _resolve(model: type[BaseModel], segments: list[str]) -> str | None:
    """Walk ``segments`` through the settings classes; None if the path exists, else why not.
    A mapping takes any key (a placeholder ``<name>`` or a real one); a list takes ``[]``
    or ``[N]``."""
    hints = get_type_hints(model)
    fields = {n: n for n in model.model_fields}
    fields |= {f.alias: n for n, f in model.model_fields.items() if f.alias}
    head, rest = segments[0], segments[1:]
    index = re.fullmatch(r"([^\[]+)((?:\[[0-9]*\])*)", head)
    name, brackets = (index.group(1), index.group(2)) if index else (head, "")
    if name not in fields:
        return f"{model.__name__} has no field {name!r}"
    if not rest:
        return None
    nested, how = _models_in(hints[fields[name]])
    if how == "map":
        key, rest = rest[0], rest[1:]  # the mapping's key
        del key
        if not rest:
            return None
    elif how == "list" and not brackets:
        return f"{name} is a list: write {name}[].…"
    if not nested:
        return f"{name} has no sub-fields"
    reasons = []
    for sub in nested:
        why = _resolve(sub, rest)
        if why is None:
            return None
        reasons.append(why)
    return reasons[0]


def config_key_problem(key: str) -> str | None:
    return _resolve(Settings, _split_key(key))


def _split_key(key: str) -> list[str]:
    """``deployments.<name>.price`` -> [deployments, <name>, price]; dots inside ``<…>``
    or inside a mapping key like ``openai/gpt-4.1`` are not separators when they cannot be."""
    return re.findall(r"<[^>]*>(?:\[[0-9]*\])*|[^.]+", key)


# Dotted names in the docs that are not configuration keys (and not Python names either).
NOT_CONFIG_KEYS = {
    "cache.lookup": "a tracing span (docs/observability.md)",
    "jobs.runs": "the jobs table's run counter (docs/decisions.md)",
}


def is_python_name(key: str) -> bool:
    """Whether ``key`` names an object of the ``interlock`` package
    (``storage.budgets.MAX_USD``: a constant of ``interlock.storage.budgets``)."""
    import importlib

    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module("interlock." + ".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return cut < len(parts)  # a bare module path is no config key either way
    return False


def documented_config_keys() -> list[tuple[str, str]]:
    top = set(Settings.model_fields)
    out: list[tuple[str, str]] = []
    for path in DOCS:
        rel = str(path.relative_to(ROOT))
        _, spans = blocks_and_spans(path.read_text(encoding="utf-8"))
        for span in spans:
            key = re.split(r"\s*[:=]\s+|\s*=\s*|\s", span, maxsplit=1)[0].rstrip(":")
            if "." not in key or key.endswith(_FILE_SUFFIXES) or key.split(".", 1)[0] not in top:
                continue
            if not re.fullmatch(r"[A-Za-z0-9_<>\[\]./-]+", key):
                continue
            if key in NOT_CONFIG_KEYS or is_python_name(key):
                continue
            out.append((rel, key))
    return out


def test_the_key_walk_catches_what_does_not_exist() -> None:
    assert config_key_problem("spend.state_unavailable_allowance_usd") is None
    assert config_key_problem("deployments.<name>.price") is None
    assert config_key_problem("deployments.openai/gpt-4o.price.input_per_mtok") is None
    assert config_key_problem("models.<alias>.fallbacks[].on") is None
    assert config_key_problem("jobs.webhooks.secret") is None
    assert config_key_problem("cache.semantic.enabled") is None
    assert config_key_problem("cache.semantic.nope") is not None
    assert config_key_problem("spend.no_such_key") is not None
    assert config_key_problem("deployments.<name>.prices") is not None
    assert is_python_name("storage.budgets.MAX_USD")
    assert not is_python_name("cache.semantic.nope")


def test_the_docs_find_config_keys() -> None:
    keys = {k for _, k in documented_config_keys()}
    assert len(keys) > 100, len(keys)
    assert "server.port" in keys


def test_every_documented_config_key_exists() -> None:
    problems = sorted(
        {
            f"{where}: `{key}`: {why}"
            for where, key in documented_config_keys()
            if (why := config_key_problem(key))
        }
    )
    assert not problems, "the docs name configuration keys that do not exist:\n" + "\n".join(
        problems
    )


def test_dashboard_doc_lists_the_error_rows_the_page_shows() -> None:
    """docs/dashboard.md's "Errors by type" names exactly the rows the page renders:
    the gateway counts errors by type (``interlock_errors_total``), and the page writes
    each type with its underscore as a space (dashboard.js ``renderErrors``)."""
    from interlock.dashboard.traffic import TYPED_ERRORS

    text = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    bullet = text.split("**Errors by type**", 1)[1].split("\n- **", 1)[0]
    named = {s for s in re.findall(r"`([^`]+)`", bullet) if re.fullmatch(r"[a-z][a-z0-9 ]*", s)}
    named = {s for s in named if not s.startswith("interlock ")}
    named -= {"code", "outcome"}
    assert named == {t.replace("_", " ") for t in TYPED_ERRORS}


def test_simulator_deployments_can_be_listed_under_models(tmp_path: Path) -> None:
    """What docs/configuration.md says of ``simulator.enabled``: a file's ``models`` may
    list the simulator's deployments (and fall back to an explicit alias of them)."""
    import subprocess
    import sys

    cfg = tmp_path / "interlock.yaml"
    cfg.write_text(
        "simulator: {enabled: true}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "models:\n"
        "  chat:\n"
        "    deployments: [sim-small, sim-medium]\n"
        "    fallbacks: [{models: [big]}]\n"
        "  big: {deployments: [sim-large]}\n",
        encoding="utf-8",
    )
    script = str(Path(sys.executable).with_name("interlock"))
    r = subprocess.run(
        [script, "config", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "chat -> sim-small, sim-medium" in r.stdout and "big -> sim-large" in r.stdout
    # listed under an alias: no longer an implicit alias of its own
    assert "sim-small -> " not in r.stdout


# --- keys of the YAML configuration examples -------------------------------------------


def _yaml_problems(model: type[BaseModel], data: dict[Any, Any], path: str) -> list[str]:
    """Keys of a YAML example that the settings class ``model`` does not have."""
    hints = get_type_hints(model)
    fields = {n: n for n in model.model_fields}
    fields |= {f.alias: n for n, f in model.model_fields.items() if f.alias}
    problems: list[str] = []
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            problems.append(f"{where}: {model.__name__} has no field {key!r}")
            continue
        nested, how = _models_in(hints[fields[key]])
        if not nested:
            continue
        if how == "map" and isinstance(value, dict):
            items = [(f"{where}.{k}.", v) for k, v in value.items()]
        elif how == "list" and isinstance(value, list):
            items = [(f"{where}[].", v) for v in value]
        elif how == "" and isinstance(value, dict):
            items = [(f"{where}.", value)]
        else:
            continue
        for sub_path, sub in items:
            if not isinstance(sub, dict):
                continue
            tries = [_yaml_problems(m, sub, sub_path) for m in nested]
            problems += min(tries, key=len)
    return problems


def documented_config_examples() -> list[tuple[str, dict[Any, Any]]]:
    """The YAML blocks of the docs that are configuration files (every top-level key a
    settings field)."""
    import yaml

    top = set(Settings.model_fields)
    out: list[tuple[str, dict[Any, Any]]] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for i, m in enumerate(re.finditer(r"^```ya?ml\n(.*?)^```", text, re.S | re.M)):
            try:
                data = yaml.safe_load(m.group(1))
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and data and set(data) <= top:
                out.append((f"{path.relative_to(ROOT)} (YAML block {i + 1})", data))
    return out


def test_the_yaml_walk_catches_unknown_keys() -> None:
    good = {"cache": {"semantic": {"enabled": True}}, "models": {"chat": {"deployments": ["a"]}}}
    assert _yaml_problems(Settings, good, "") == []
    bad = {"cache": {"semantic": {"enabeld": True}}, "models": {"chat": {"fallback": []}}}
    assert len(_yaml_problems(Settings, bad, "")) == 2


def test_every_key_of_the_yaml_examples_exists() -> None:
    examples = documented_config_examples()
    assert len(examples) > 5, len(examples)
    problems = [
        p
        for where, data in examples
        for p in (f"{where}: {x}" for x in _yaml_problems(Settings, data, ""))
    ]
    assert not problems, "YAML examples in the docs use keys that do not exist:\n" + "\n".join(
        problems
    )
