"""What a request looks like to the tier router: cheap, local features of the conversation.

Everything here is plain string work over the OpenAI ``messages`` list (no model, no
I/O), so extracting the features of a typical request takes tens of microseconds.

The key idea is separating the *instruction* from the *payload*. "What language is this?"
followed by 600 words of Portuguese is a trivial request with a long input; judging it by
its length would send it to the large tier. So quoted passages, code blocks and the text
after a short first paragraph ending in ``:`` or ``?`` are treated as payload: their size
is measured (``payload_chars``) but the task cues are read from the instruction only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Conversation", "Features", "conversation", "extract", "text_of"]

_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
# Quoted passages: "…", “…”, «…», „…“ and 「…」 of at least a few characters.
_QUOTED = re.compile(r'"[^"\n]{3,}"|"[^"]{40,}"|“[^”]{3,}”|«[^»]{3,}»|„[^“”]{3,}[“”]|「[^」]{3,}」')
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import|fn |func |function |public |private |"
    r"#include|let |const |var |return\b|if \(|for \(|while \(|SELECT |\}|\{$|<\w+[ >])",
    re.MULTILINE,
)
_CODE_TOKENS = re.compile(r"[{};]\s*$|=>|->|::|\(\)|==|!=|\+=|&&|\|\|", re.MULTILINE)
_MATH = re.compile(
    r"[∫∑∏√π≤≥≠∞∂∈ℝ→]|\b\d+\s*[\^]\s*\(?\d|\b[a-z]\s*[\^]\s*\d|\b\d+!|\bmod\b|"
    r"\b(?:integral|derivative|equation|theorem|lemma|probability|matrix|eigen\w*|"
    r"polynomial|prime|integer|modulo|log|sqrt|sin|cos)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?%?")
_CONSTRAINT = re.compile(
    r"\b(?:must|must not|should|cannot|can't|never|without|at most|at least|no more than|"
    r"no less than|only if|unless|except|exactly|each|every|budget|deadline|"
    r"constraints?|requirements?|assum(?:e|ing|ption)s?)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[.!?。？！](?:\s|$)")
_NON_LATIN = re.compile(
    r"[\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]"
)


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text", ""), str)
        ]
        return "\n".join(parts)
    return ""


@dataclass(frozen=True, slots=True)
class Conversation:
    """The parts of a chat the router reads."""

    last: str  # the last user turn: the request to serve
    system: str  # system/developer prompts, joined
    earlier: str  # every turn before the last user turn (system prompts excluded)
    turns: int  # user and assistant messages


def conversation(messages: Any) -> Conversation:
    if not isinstance(messages, list):
        return Conversation("", "", "", 0)
    system: list[str] = []
    chat: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        text = text_of(m.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant", "tool"):
            chat.append((str(role), text))
    last_user = max((i for i, (r, _) in enumerate(chat) if r == "user"), default=-1)
    last = chat[last_user][1] if last_user >= 0 else ""
    earlier = "\n".join(t for _, t in chat[:last_user]) if last_user > 0 else ""
    return Conversation(last, "\n".join(system), earlier, len(chat))


def split_instruction(text: str) -> tuple[str, str]:
    """(instruction, payload): code blocks, quoted passages and a block of text after a
    short lead-in are payload."""
    payload: list[str] = []

    def take(m: re.Match[str]) -> str:
        payload.append(m.group(0))
        return " «…» "

    rest = _FENCE.sub(take, text)
    rest = _QUOTED.sub(take, rest)
    head, sep, tail = rest.partition("\n\n")
    if sep and len(tail) > 2 * len(head) and len(head) < 400:
        payload.append(tail)
        rest = head
    return rest.strip(), "\n".join(payload)


@dataclass(frozen=True, slots=True)
class Features:
    """The request as numbers and strings the classifier's rules read."""

    instruction: str  # the last user turn without its payload, lowercased
    last: str  # as sent
    system: str  # lowercased
    earlier: str  # lowercased
    turns: int
    chars: int  # the last user turn
    instruction_chars: int
    payload_chars: int
    context_chars: int  # earlier turns
    words: int  # of the instruction
    sentences: int  # of the instruction
    numbers: int  # in the last user turn
    constraints: int  # constraint words in the last user turn
    code: bool  # code in the last user turn
    math: int  # math signals in the last user turn
    non_latin: bool
    question: bool  # the instruction asks a question
    tools: int
    json_output: bool  # response_format json_object / json_schema
    max_tokens: int | None

    def vector(self) -> list[float]:
        """A fixed-order numeric summary (the learned model's non-embedding inputs)."""
        import math

        def log1p(n: int) -> float:
            return math.log1p(max(0, n))

        return [
            log1p(self.chars),
            log1p(self.instruction_chars),
            log1p(self.payload_chars),
            log1p(self.context_chars),
            float(self.turns),
            log1p(self.words),
            float(self.sentences),
            log1p(self.numbers),
            float(self.constraints),
            1.0 if self.code else 0.0,
            float(self.math),
            1.0 if self.non_latin else 0.0,
            1.0 if self.question else 0.0,
            1.0 if self.system else 0.0,
            float(self.tools > 0),
            1.0 if self.json_output else 0.0,
        ]


VECTOR_SIZE = 16


def extract(body: dict[str, Any]) -> Features:
    """The features of an OpenAI chat (or completions) request body."""
    messages = body.get("messages")
    if messages is None and isinstance(body.get("prompt"), str):
        messages = [{"role": "user", "content": body["prompt"]}]
    conv = conversation(messages)
    instruction, payload = split_instruction(conv.last)
    fmt = body.get("response_format")
    json_output = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    tools = body.get("tools")
    out = body.get("max_completion_tokens") or body.get("max_tokens")
    last = conv.last
    code = (
        bool(_FENCE.search(last))
        or len(_CODE_LINE.findall(last)) >= 2
        or (len(_CODE_TOKENS.findall(last)) >= 3)
    )
    return Features(
        instruction=instruction.lower(),
        last=last,
        system=conv.system.lower(),
        earlier=conv.earlier.lower(),
        turns=conv.turns,
        chars=len(last),
        instruction_chars=len(instruction),
        payload_chars=len(payload),
        context_chars=len(conv.earlier),
        words=len(instruction.split()),
        sentences=max(1, len(_SENTENCE.findall(instruction))),
        numbers=len(_NUMBER.findall(last)),
        constraints=len(_CONSTRAINT.findall(last)),
        code=code,
        math=len(_MATH.findall(last)),
        non_latin=bool(_NON_LATIN.search(last)),
        question="?" in instruction or "？" in instruction,
        tools=len(tools) if isinstance(tools, list) else 0,
        json_output=json_output,
        max_tokens=out if isinstance(out, int) else None,
    )
