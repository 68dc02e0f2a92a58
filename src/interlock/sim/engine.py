"""The format-neutral core: what to answer, given a parsed request.

Each wire format parses its request into a :class:`GenSpec`; :func:`generate`
turns it into :class:`Choice` objects (text pieces, tool call, finish reason,
token counts) which the format renders back into its own JSON or stream events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.sim.config import SimConfig
from interlock.sim.schema import value_for_schema
from interlock.sim.textgen import generate_words, request_rng, split_pieces, word_pieces

__all__ = ["Choice", "GenSpec", "Tool", "ToolCall", "generate"]


@dataclass(slots=True)
class Tool:
    name: str
    schema: dict[str, Any]


@dataclass(slots=True)
class GenSpec:
    """A request, reduced to what generation needs."""

    model: str
    digest: bytes
    prompt_tokens: int
    stream: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    tools: list[Tool] = field(default_factory=list)
    tool_mode: str = "auto"  # auto | required | none | named
    tool_name: str | None = None
    last_is_tool_result: bool = False
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    request_seed: Any = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    input: dict[str, Any]
    pieces: list[str]


@dataclass(slots=True)
class Choice:
    index: int
    text: str
    pieces: list[str]
    finish: str  # stop | length | stop_sequence | tool
    completion_tokens: int
    stop_sequence: str | None = None
    tool_call: ToolCall | None = None


def _apply_stop(pieces: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    """Cut ``pieces`` at the earliest occurrence of any stop sequence."""
    text = "".join(pieces)
    best_pos = -1
    best_stop: str | None = None
    for stop in stops:
        if not stop:
            continue
        pos = text.find(stop)
        if pos != -1 and (best_pos == -1 or pos < best_pos):
            best_pos, best_stop = pos, stop
    if best_stop is None:
        return pieces, None
    out: list[str] = []
    consumed = 0
    for piece in pieces:
        if consumed >= best_pos:
            break
        take = piece[: best_pos - consumed]
        out.append(take)
        consumed += len(piece)
    return out, best_stop


def _choose_tool(spec: GenSpec) -> Tool | None:
    if not spec.tools or spec.tool_mode == "none" or spec.last_is_tool_result:
        return None
    if spec.tool_mode == "named" and spec.tool_name:
        for tool in spec.tools:
            if tool.name == spec.tool_name:
                return tool
    return spec.tools[0]


def _tool_call(tool: Tool, rng: random.Random) -> ToolCall:
    value = value_for_schema(tool.schema or {"type": "object", "properties": {}}, rng)
    if not isinstance(value, dict):
        value = {"value": value}
    arguments = orjson.dumps(value).decode()
    call_id = "%024x" % rng.getrandbits(96)  # noqa: UP031
    return ToolCall(call_id, tool.name, arguments, value, split_pieces(arguments))


def generate(cfg: SimConfig, spec: GenSpec) -> list[Choice]:
    """Deterministic answers (``spec.n`` of them) for ``spec`` under ``cfg``."""
    rng = request_rng(cfg.seed, spec.digest, spec.request_seed)
    tool = _choose_tool(spec)
    choices: list[Choice] = []
    for index in range(max(1, spec.n)):
        if tool is not None:
            call = _tool_call(tool, rng)
            choices.append(Choice(index, "", [], "tool", len(call.pieces), tool_call=call))
            continue
        if spec.json_mode or spec.json_schema is not None:
            schema = (
                spec.json_schema
                if spec.json_schema is not None
                else {
                    "type": "object",
                    "properties": {"answer": {"type": "string"}},
                    "required": ["answer"],
                }
            )
            value = value_for_schema(schema, rng)
            pieces = split_pieces(orjson.dumps(value).decode())
        else:
            pieces = word_pieces(generate_words(rng, cfg.output_tokens))
        finish = "stop"
        cap = spec.max_tokens
        if cap is not None and len(pieces) > cap:
            pieces = pieces[: max(cap, 0)]
            finish = "length"
        stop_seq: str | None = None
        if spec.stop:
            pieces, stop_seq = _apply_stop(pieces, spec.stop)
            if stop_seq is not None:
                finish = "stop_sequence"
        choices.append(
            Choice(index, "".join(pieces), pieces, finish, len(pieces), stop_sequence=stop_seq)
        )
    return choices
