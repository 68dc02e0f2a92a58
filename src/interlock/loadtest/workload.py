"""What a load test sends: a weighted mix of chat, streaming chat and embeddings requests.

A workload comes from a YAML file (a ``mix`` of request kinds with length
distributions), a JSONL file (recorded request bodies, replayed in order), or the
command line (:func:`synthetic_workload`). Bodies are built one at a time as they are
due, so a long test does not hold every body in memory; the sequence is fixed by the
seed, so two runs send the same requests.

Prompts carry the request's index, so no two are equal: a gateway's cache would
otherwise answer most of a load test and flatter every number.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

__all__ = [
    "Kind",
    "Length",
    "MixEntry",
    "PreparedRequest",
    "Workload",
    "WorkloadError",
    "load_workload",
    "parse_length",
    "synthetic_workload",
]

Kind = Literal["chat", "stream", "embeddings"]
KINDS: tuple[Kind, ...] = ("chat", "stream", "embeddings")
_PATHS: dict[Kind, str] = {
    "chat": "/chat/completions",
    "stream": "/chat/completions",
    "embeddings": "/embeddings",
}
_WORDS = (
    "route", "budget", "cache", "latency", "token", "stream", "model", "gateway", "replica",
    "queue", "limit", "alert", "fallback", "circuit", "window", "price", "ledger", "tenant",
    "prompt", "answer", "retry", "deadline", "signal", "capacity", "quota", "region", "batch",
    "vector", "index", "shard", "lease", "worker", "metric", "trace",
)  # fmt: skip


class WorkloadError(ValueError):
    """A workload file or flag that cannot be used; the message says where."""


@dataclass(frozen=True)
class Length:
    """A distribution of token counts: ``fixed``, ``uniform`` (min..max), ``normal``
    (mean, std) or ``lognormal`` (mean, sigma: long-tailed, like real prompts)."""

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    mean: float = 0.0
    spread: float = 0.0  # uniform: max; normal: std; lognormal: sigma
    low: int = 1
    high: int = 1_000_000

    def sample(self, rng: random.Random) -> int:
        if self.dist == "fixed":
            value = self.mean
        elif self.dist == "uniform":
            value = rng.uniform(self.mean, self.spread)
        elif self.dist == "normal":
            value = rng.gauss(self.mean, self.spread)
        else:
            # choose mu so that the distribution's mean (not its median) is `mean`
            mu = math.log(max(self.mean, 1e-9)) - self.spread**2 / 2
            value = rng.lognormvariate(mu, self.spread)
        return int(min(max(round(value), self.low), self.high))

    def to_dict(self) -> dict[str, Any]:
        if self.dist == "fixed":
            return {"dist": "fixed", "value": int(self.mean)}
        names = {
            "uniform": ("min", "max"),
            "normal": ("mean", "std"),
            "lognormal": ("mean", "sigma"),
        }
        a, b = names[self.dist]
        return {"dist": self.dist, a: self.mean, b: self.spread}


def parse_length(value: Any, where: str = "length") -> Length:
    """``200``, ``"uniform:50:300"``, ``"lognormal:200:0.6"``, ``"normal:200:40"`` or a
    mapping ``{dist: uniform, min: 50, max: 300}`` (YAML)."""
    if isinstance(value, bool):
        raise WorkloadError(f"{where}: expected a number or a distribution")
    if isinstance(value, int | float):
        return _checked(Length("fixed", float(value)), where)
    if isinstance(value, str):
        parts = value.split(":")
        try:
            if len(parts) == 1:
                return _checked(Length("fixed", float(parts[0])), where)
            if len(parts) == 3 and parts[0] in ("uniform", "normal", "lognormal"):
                return _checked(Length(parts[0], float(parts[1]), float(parts[2])), where)  # type: ignore[arg-type]
        except ValueError:
            pass
        raise WorkloadError(
            f"{where}: {value!r} is not N, uniform:MIN:MAX, normal:MEAN:STD or lognormal:MEAN:SIGMA"
        )
    if isinstance(value, dict):
        dist = value.get("dist", "fixed")
        keys = {"fixed": ("value", None), "uniform": ("min", "max"),
                "normal": ("mean", "std"), "lognormal": ("mean", "sigma")}  # fmt: skip
        if dist not in keys:
            raise WorkloadError(f"{where}.dist: one of {sorted(keys)}")
        a, b = keys[dist]
        allowed = {"dist", a, "low", "high"} | ({b} if b else set())
        unknown = set(value) - allowed
        if unknown:
            raise WorkloadError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            length = Length(dist, float(value[a]), float(value[b]) if b else 0.0,
                            int(value.get("low", 1)), int(value.get("high", 1_000_000)))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise WorkloadError(
                f"{where}: {dist} needs numeric {a!r}{' and ' + repr(b) if b else ''}"
            ) from None
        return _checked(length, where)
    raise WorkloadError(f"{where}: expected a number or a distribution")


def _checked(length: Length, where: str) -> Length:
    if length.mean < 0 or length.spread < 0 or not math.isfinite(length.mean + length.spread):
        raise WorkloadError(f"{where}: values must be finite and not negative")
    if length.dist == "uniform" and length.spread < length.mean:
        raise WorkloadError(f"{where}: uniform needs min <= max")
    return length


@dataclass(frozen=True)
class MixEntry:
    """One kind of request in the mix, chosen with probability ``weight / total``."""

    kind: Kind
    model: str | None  # None: the target's default for the kind, found before the run
    weight: float = 1.0
    prompt_tokens: Length = field(default_factory=lambda: Length("fixed", 64))
    max_tokens: Length | None = field(default_factory=lambda: Length("fixed", 32))
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedRequest:
    kind: Kind
    path: str  # relative to the /v1 base, e.g. "/chat/completions"
    body: bytes


@dataclass
class Workload:
    """Builds request ``i`` of a run. ``mix`` entries are drawn by weight; ``recorded``
    bodies (JSONL), when present, are replayed in order instead."""

    mix: tuple[MixEntry, ...] = ()
    recorded: tuple[tuple[Kind, dict[str, Any]], ...] = ()
    seed: int = 0
    source: str = "synthetic"
    _rng: random.Random = field(init=False, repr=False)
    _cum: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.mix and not self.recorded:
            raise WorkloadError(f"{self.source}: the workload has no requests")
        if any(e.weight <= 0 for e in self.mix):
            raise WorkloadError(f"{self.source}: weights must be positive")
        self._rng = random.Random(self.seed)
        total, self._cum = 0.0, []
        for e in self.mix:
            total += e.weight
            self._cum.append(total)

    def kinds(self) -> set[Kind]:
        return {e.kind for e in self.mix} | {k for k, _ in self.recorded}

    def unresolved(self) -> set[Literal["chat", "embeddings"]]:
        """The kinds of model still to be chosen: "chat" (chat and stream entries) and
        "embeddings" entries that name no model."""
        return {
            "embeddings" if e.kind == "embeddings" else "chat" for e in self.mix if e.model is None
        }

    def resolved(self, chat: str | None, embeddings: str | None) -> Workload:
        """This workload with entries that name no model given ``chat``/``embeddings``."""
        mix = tuple(
            e
            if e.model is not None
            else replace(e, model=embeddings if e.kind == "embeddings" else chat)
            for e in self.mix
        )
        return Workload(mix, self.recorded, self.seed, self.source)

    def request(self, index: int) -> PreparedRequest:
        """The ``index``-th request (call in index order: the random stream is shared)."""
        if self.recorded:
            kind, recorded = self.recorded[index % len(self.recorded)]
            return PreparedRequest(kind, _PATHS[kind], orjson.dumps(recorded))
        pick = self._rng.random() * self._cum[-1]
        entry = self.mix[min(bisect.bisect_right(self._cum, pick), len(self.mix) - 1)]
        if entry.model is None:
            raise WorkloadError(f"{self.source}: a {entry.kind} entry has no model")
        text = _prompt(index, entry.prompt_tokens.sample(self._rng), self._rng)
        body: dict[str, Any]
        if entry.kind == "embeddings":
            body = {"model": entry.model, "input": text}
        else:
            body = {"model": entry.model, "messages": [{"role": "user", "content": text}]}
            if entry.max_tokens is not None:
                body["max_tokens"] = entry.max_tokens.sample(self._rng)
            if entry.kind == "stream":
                body["stream"] = True
        body.update(entry.params)
        return PreparedRequest(entry.kind, _PATHS[entry.kind], orjson.dumps(body))

    def describe(self) -> dict[str, Any]:
        if self.recorded:
            counts: dict[str, int] = {}
            for kind, _ in self.recorded:
                counts[kind] = counts.get(kind, 0) + 1
            return {"source": self.source, "recorded": len(self.recorded), "by_kind": counts}
        total = self._cum[-1]
        return {
            "source": self.source,
            "seed": self.seed,
            "mix": [
                {
                    "kind": e.kind,
                    "model": e.model,
                    "share": round(e.weight / total, 4),
                    "prompt_tokens": e.prompt_tokens.to_dict(),
                    "max_tokens": e.max_tokens.to_dict() if e.max_tokens else None,
                }
                for e in self.mix
            ],
        }


def _prompt(index: int, tokens: int, rng: random.Random) -> str:
    # One word is one token for the simulator's counter (and close to it for BPE).
    return f"r{index} " + " ".join(rng.choices(_WORDS, k=max(0, tokens - 1)))


def synthetic_workload(
    *,
    model: str | None,
    mix: dict[Kind, float],
    prompt_tokens: Length,
    max_tokens: Length,
    embed_model: str | None = None,
    seed: int = 0,
) -> Workload:
    """The command line's workload: ``--mix chat=0.8,stream=0.2`` over one model;
    embeddings use ``embed_model``. A model left None is chosen later
    (:meth:`Workload.resolved`)."""
    entries = []
    for kind, weight in mix.items():
        if weight <= 0:
            continue
        is_embed = kind == "embeddings"
        entries.append(MixEntry(kind, embed_model if is_embed else model, weight,
                                prompt_tokens, None if is_embed else max_tokens))  # fmt: skip
    return Workload(tuple(entries), seed=seed, source="synthetic")


def parse_mix(text: str) -> dict[Kind, float]:
    """``chat=0.8,stream=0.2`` → {"chat": 0.8, "stream": 0.2}."""
    out: dict[Kind, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise WorkloadError(f"--mix: {name!r} is not one of {', '.join(KINDS)}")
        try:
            out[name] = float(weight) if weight else 1.0  # type: ignore[index]
        except ValueError:
            raise WorkloadError(f"--mix: {part!r} is not KIND=WEIGHT") from None
    if not out or sum(out.values()) <= 0:
        raise WorkloadError("--mix: give at least one kind with a positive weight")
    return out


_ENTRY_KEYS = {"kind", "model", "weight", "prompt_tokens", "input_tokens", "max_tokens", "params"}


def load_workload(
    path: str | Path,
    *,
    default_model: str | None = None,
    default_embed_model: str | None = None,
    seed: int | None = None,
) -> Workload:
    """Read a ``.yaml``/``.yml`` mix or a ``.jsonl`` recording. An entry without ``model``
    takes the file's ``model``, else ``default_model`` (for embeddings: the file's
    ``embed_model``, else ``default_embed_model``: an alias serves one kind, so a chat
    model is never assumed to embed); None when none is set (chosen before the run)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"{p}: cannot read ({exc.strerror})") from None
    if p.suffix == ".jsonl":
        return _load_jsonl(text, str(p), seed or 0)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkloadError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mix"), list):
        raise WorkloadError(f"{p}: expected a mapping with a 'mix' list")
    unknown = set(data) - {"mix", "seed", "model", "embed_model"}
    if unknown:
        raise WorkloadError(f"{p}: unknown keys {sorted(unknown)}")
    model = _name(data.get("model", default_model))
    embed_model = _name(data.get("embed_model", default_embed_model))
    entries = []
    for i, raw in enumerate(data["mix"]):
        where = f"{p}: mix[{i}]"
        if not isinstance(raw, dict) or set(raw) - _ENTRY_KEYS:
            raise WorkloadError(f"{where}: a mapping of {sorted(_ENTRY_KEYS)}")
        kind = raw.get("kind", "chat")
        if kind not in KINDS:
            raise WorkloadError(f"{where}.kind: one of {', '.join(KINDS)}")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            raise WorkloadError(f"{where}.params: a mapping of extra body fields")
        prompt = raw.get("prompt_tokens", raw.get("input_tokens", 64))
        max_tokens = (
            None
            if kind == "embeddings"
            else parse_length(raw.get("max_tokens", 32), f"{where}.max_tokens")
        )
        try:
            weight = float(raw.get("weight", 1.0))
        except (TypeError, ValueError):
            raise WorkloadError(f"{where}.weight: a number") from None
        default = embed_model if kind == "embeddings" else model
        entries.append(MixEntry(kind, _name(raw.get("model", default)), weight,
                                parse_length(prompt, f"{where}.prompt_tokens"), max_tokens, params))  # fmt: skip
    file_seed = data.get("seed", 0)
    return Workload(
        tuple(entries), seed=seed if seed is not None else int(file_seed), source=str(p)
    )


def _name(value: Any) -> str | None:
    return None if value is None else str(value)


def _load_jsonl(text: str, source: str, seed: int) -> Workload:
    recorded: list[tuple[Kind, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise WorkloadError(f"{source}:{n}: not JSON") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{source}:{n}: expected an object")
        # A line is {"kind": ..., "body": {...}} or a bare request body.
        raw = obj.get("body", obj)
        if not isinstance(raw, dict):
            raise WorkloadError(f"{source}:{n}: body must be an object")
        kind = obj.get("kind") or (
            "embeddings" if "input" in raw else "stream" if raw.get("stream") else "chat"
        )
        if kind not in KINDS:
            raise WorkloadError(f"{source}:{n}: kind must be one of {', '.join(KINDS)}")
        recorded.append((kind, raw))
    return Workload(recorded=tuple(recorded), seed=seed, source=source)
