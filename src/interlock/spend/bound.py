"""The most a provider can bill for one request: a sound upper bound, without a tokenizer.

Budgets reserve this before every paid call (:mod:`interlock.spend.accounting`), so it
must never be smaller than what any provider the request may reach can bill, for every
endpoint and input form the API accepts. It is deliberately *not* an estimate: the
context-window check and TPM limits keep using :mod:`interlock.providers.tokens`, since
the bound would refuse requests that fit. docs/decisions.md ("A true upper bound before
every paid call") has the reasoning; the rules in brief:

* **Text** is bounded by its UTF-8 byte length: every token of a byte-level BPE or of a
  SentencePiece vocabulary with byte fallback covers at least one byte. The bound takes
  the compact JSON length of what is tokenised (``len(orjson.dumps(value))``), which is
  at least the raw UTF-8 length and also covers a provider that renders a structured
  value (tool schemas, tool-call arguments, a JSON-schema hint) as JSON text. Values the
  provider renders itself (tool definitions, response formats, tool-call arguments that
  a translating adapter turns back into objects) count twice: once for the text, once
  for the whitespace and delimiters a renderer may put around every node.
* **Overheads**: :data:`PER_MESSAGE` per message or prompt, :data:`BASE` per request
  (reply priming, the wording of a JSON-mode hint an adapter adds) and
  :data:`TOOLS_OVERHEAD` when tools are declared (the providers' hidden tool prompt;
  Anthropic publishes 159-530 tokens depending on model and tool_choice).
* **Token ids** (``prompt`` / ``input`` as integer arrays) count one token per id.
* **Images, audio and documents** follow the providers' published token rules at their
  worst case (:class:`MediaRules`); base64 payloads are never counted as text.
* **Output** is the cap per completion (``max_completion_tokens`` / ``max_tokens``, the
  larger if both are set) times every completion generated: ``n`` per prompt, or
  ``best_of`` when larger (the provider generates and bills ``best_of`` per prompt), times
  the number of prompts. Reasoning tokens are completion tokens and fall under the same
  cap (OpenAI ``max_completion_tokens``, Anthropic ``max_tokens``; Gemini's
  ``maxOutputTokens`` caps thoughts plus answer). Predicted-output content
  (``prediction``) may be billed as rejected completion tokens and is added on top.

Everything here is pure and cheap: one pass over the messages and one C-speed
``orjson.dumps`` per message (docs/benchmarks.md has the figure).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

import orjson

from interlock.spend.prices import Price
from interlock.types import Endpoint

__all__ = [
    "BASE",
    "PER_MESSAGE",
    "TOOLS_OVERHEAD",
    "MediaRules",
    "RequestBound",
    "bound_request",
    "cap_fitting",
    "media_rules",
    "prompt_rate",
    "worst_usd",
]

BASE = 64
PER_MESSAGE = 8
TOOLS_OVERHEAD = 1024
EMBED_PER_INPUT = 2  # a BOS/EOS pair some embedding models add to each input

# Audio: at most 50 tokens per second of audio (Gemini publishes 32/s, OpenAI's realtime
# models 10/s for input audio) and at least 2 kbit/s (250 bytes) of encoded audio per
# second (mp3's floor is 8 kbit/s, wav PCM 64 kbit/s, opus/speex 2-6 kbit/s): so at most
# 0.2 tokens per decoded byte.
AUDIO_TOKENS_PER_S = 50
AUDIO_MIN_BYTES_PER_S = 250

_MTOK = Decimal(1_000_000)
_QUANTUM = Decimal("1e-10")


@dataclass(frozen=True, slots=True)
class MediaRules:
    """Worst-case tokens of one image / document on a provider (its published rules).

    ``image``: one image at ``detail`` high or auto (or unknown); ``image_low``: at
    ``detail: low``; ``document``: one document (PDF) beyond twice its decoded bytes.
    """

    image: int
    image_low: int
    document: int


# OpenAI tile models (gpt-4o, gpt-4.1, o-series): a high-detail image is fitted into
# 2048x2048, its short side scaled to 768, then 170 tokens per 512px tile + 85, so at most
# 8 tiles = 1,445 tokens (gpt-5.2 bills 1.2x: 1,734). Patch models (gpt-4.1-mini/nano,
# o4-mini, gpt-5-mini/nano): 32px patches capped at 1,536, times 1.62-2.46 = 3,779 at most,
# and they ignore ``detail``. https://platform.openai.com/docs/guides/images-vision
_OPENAI = MediaRules(image=4_000, image_low=4_000, document=100 * (3_000 + 4_000))
# gpt-4o-mini bills images as 2,833 base + 5,667 per tile tokens (so that its image price
# matches gpt-4o's): 2,833 + 8 x 5,667 = 48,169 at high detail, 2,833 at low.
_OPENAI_MULTIPLIED = MediaRules(image=48_169, image_low=2_833, document=100 * (3_000 + 48_169))
# Claude: tokens ~ w x h / 750 after fitting the long edge into 1,568 px (~1,600 tokens);
# Opus 4.7-era models take up to 2,576 px at ceil(w/28) x ceil(h/28) <= 4,784 tokens.
# PDFs: at most 100 pages, each its text (Anthropic: 1,500-3,000 tokens a page) plus an
# image of the page. https://docs.claude.com/en/docs/build-with-claude/vision, /pdf-support
_ANTHROPIC = MediaRules(image=4_784, image_low=4_784, document=100 * (3_000 + 4_784))
# Gemini 2.x: an image with both sides <= 384 px is 258 tokens, a larger one is cut into
# 768x768 tiles of 258 tokens each, after fitting into 3,072 x 3,072 (16 tiles = 4,128).
# Gemini 3 media_resolution "high" is 1,120 tokens. PDFs: up to 1,000 pages, 258 tokens a
# page (560 with Gemini 3 defaults). https://ai.google.dev/gemini-api/docs/tokens,
# /vision, /document-processing
_GEMINI = MediaRules(image=4_128, image_low=4_128, document=1_000 * 560)
# Anything else (an OpenAI-compatible server of unknown models, a custom price on an Azure
# deployment of an unknown model): the largest of the published rules above.
_UNKNOWN = _OPENAI_MULTIPLIED


def media_rules(provider_kind: str, vendor: str | None, model_id: str | None) -> MediaRules:
    """The image/document rules for a deployment (``vendor``/``model_id``: its price table
    entry, when the price came from the table; None when unknown)."""
    if vendor == "anthropic" or (provider_kind == "anthropic" and vendor is None):
        return _ANTHROPIC
    if vendor == "google" or (provider_kind in ("gemini", "vertex") and vendor is None):
        return _GEMINI
    if vendor == "openai" and model_id is not None:
        return _OPENAI_MULTIPLIED if "4o-mini" in model_id else _OPENAI
    if vendor == "sim":
        return _OPENAI  # the simulator bills no image tokens; keep a finite, listed rule
    return _UNKNOWN


@dataclass(slots=True)
class RequestBound:
    """What a request can be billed for, before the provider's media rules are applied."""

    text: int = 0  # tokens bounded by text bytes, overheads and token ids
    images: int = 0  # at detail high/auto/unknown
    images_low: int = 0
    audio_bytes: int = 0  # decoded
    documents: int = 0
    document_bytes: int = 0  # decoded (or the length of a reference, when only referenced)
    tools: bool = False
    completions: int = 1  # completions generated and billed: n or best_of, x prompts
    cap: int | None = None  # the client's output cap per completion, if it set one
    extra_output: int = 0  # predicted output that may be billed as completion tokens
    has_output: bool = True  # False for embeddings
    # The request asks for a 1-hour prompt-cache TTL somewhere (a quoted "1h": Anthropic's
    # cache_control ttl, Bedrock's cachePoint ttl): its prompt may be billed as 1-hour
    # cache writes. Only ever over-reserves when "1h" is just text.
    cache_1h: bool = False

    def prompt_tokens(self, rules: MediaRules) -> int:
        audio = -(-self.audio_bytes * AUDIO_TOKENS_PER_S // AUDIO_MIN_BYTES_PER_S)
        return (
            self.text
            + (TOOLS_OVERHEAD if self.tools else 0)
            + self.images * rules.image
            + self.images_low * rules.image_low
            + audio
            + self.documents * rules.document
            + 2 * self.document_bytes
        )

    def output_tokens(self, cap: int) -> int:
        """Completion tokens at most billed when each completion is capped at ``cap``."""
        if not self.has_output:
            return 0
        return max(0, cap) * self.completions + self.extra_output


# -- measuring ------------------------------------------------------------------------

# Top-level fields no provider tokenises (sampling controls, routing, bookkeeping). Any
# other field counts, so a parameter added by a provider tomorrow is over-, not under-
# counted.
_CONTROL = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "best_of",
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "reasoning_effort",
        "echo",
        "encoding_format",
        "dimensions",
        "prediction",
        "modalities",
    }
)
# Values the provider renders into text itself (see the module docstring: counted twice).
_RENDERED = frozenset({"tools", "functions", "response_format", "tool_choice", "function_call"})
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_AUDIO_PARTS = frozenset({"input_audio", "audio"})
_DOCUMENT_PARTS = frozenset({"file", "input_file", "document"})
_MEDIA_PARTS = _IMAGE_PARTS | _AUDIO_PARTS | _DOCUMENT_PARTS
# Where a media part keeps its payload, in OpenAI chat, Responses and Anthropic shapes.
_PAYLOAD_KEYS = frozenset(
    {"image_url", "input_image", "image", "source", "input_audio", "audio", "file",
     "input_file", "document", "file_data", "file_id", "data", "url", "detail"}
)  # fmt: skip
_PAYLOAD_ORDER = ("source", "image_url", "file", "input_audio", "file_data", "data", "url")
_DATA_KEYS = ("url", "data", "file_data", "file_id")


def _json_len(value: Any) -> int:
    """Bytes of ``value`` as compact JSON: >= the UTF-8 bytes of every string in it."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        # Not JSON (never from the HTTP API; a defensive path): its repr, 4 bytes a char.
        return 4 * len(repr(value))


def _json_len_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return repr(value).encode() * 4


def _count(value: Any) -> int:
    """``n`` / ``best_of`` as the provider would take it: a positive integer, else 1."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return max(1, value)
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    return 1


def _cap(body: dict[str, Any]) -> int | None:
    a, b = body.get("max_completion_tokens"), body.get("max_tokens")
    a = a if a.__class__ is int else None
    b = b if b.__class__ is int else None
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _b64_bytes(data: Any) -> int:
    """Decoded size of a base64 payload (or a data: URL carrying one); 0 for a reference."""
    if not isinstance(data, str):
        return 0
    if data.startswith("data:"):
        comma = data.find(",")
        data = data[comma + 1 :] if comma >= 0 else ""
        return len(data) * 3 // 4 + 3
    if data.startswith(("http://", "https://", "gs://", "s3://")):
        return 0
    return len(data) * 3 // 4 + 3


def _part(part: Any, acc: RequestBound) -> None:
    """One content part of a message: text, or an image / audio / document by its rule."""
    if not isinstance(part, dict):
        acc.text += _json_len(part)
        return
    kind = part.get("type")
    if kind not in _MEDIA_PARTS:
        acc.text += _json_len(part)
        return
    # The part's other fields still count as text; its payload (a URL, base64 data, a
    # file reference) does not: the media rule below bounds what the provider makes of it.
    payload = part.get(kind)
    if payload is None:
        payload = next((part[k] for k in _PAYLOAD_ORDER if part.get(k) is not None), None)
    acc.text += _json_len({k: v for k, v in part.items() if k not in _PAYLOAD_KEYS})
    inner: dict[str, Any] = payload if isinstance(payload, dict) else {}
    if inner:
        acc.text += _json_len({k: v for k, v in inner.items() if k not in _PAYLOAD_KEYS})
    data = next((inner[k] for k in _DATA_KEYS if k in inner), payload if not inner else None)
    if kind in _IMAGE_PARTS:
        detail = inner.get("detail", part.get("detail"))
        if detail == "low":
            acc.images_low += 1
        else:
            acc.images += 1
    elif kind in _AUDIO_PARTS:
        size = _b64_bytes(data)
        if size == 0:
            # A reference the gateway cannot size: an hour of audio (the providers' limits).
            size = 3600 * AUDIO_MIN_BYTES_PER_S
        acc.audio_bytes += size
    else:
        acc.documents += 1
        acc.document_bytes += _b64_bytes(data)


def _messages(messages: Any, acc: RequestBound) -> None:
    if not isinstance(messages, list):
        acc.text += _json_len(messages)
        return
    acc.text += PER_MESSAGE * len(messages)
    # The common case, measured by one C call: messages of just a role and a string
    # content. Anything else (content parts, tool calls, names) takes the slow path.
    # (A single-byte find() is a memchr; a '[' inside some text is only a false alarm.)
    whole = _json_len_bytes(messages)
    if whole.find(_TTL_1H) >= 0:
        acc.cache_1h = True
    if whole.find(b"[", 1) < 0:
        for msg in messages:
            if msg.__class__ is not dict or len(msg) > 2:
                break
        else:
            acc.text += len(whole)
            return
    # Otherwise message by message: content parts one by one, since a part may be an image.
    plain: list[Any] | None = None
    for i, msg in enumerate(messages):
        if msg.__class__ is not dict:
            continue
        content = msg.get("content")
        if content.__class__ is list:
            if plain is None:
                plain = messages[:i]
            acc.text += _json_len({k: v for k, v in msg.items() if k != "content"})
            for part in content:
                _part(part, acc)
        elif plain is not None:
            plain.append(msg)
        # Tool calls are counted a second time: an adapter that translates them (Anthropic
        # tool_use, Gemini functionCall, Bedrock toolUse) hands the provider an object it
        # renders itself, with its own delimiters around every node.
        if "tool_calls" in msg or "function_call" in msg:
            acc.text += _json_len(msg.get("tool_calls")) + _json_len(msg.get("function_call"))
    acc.text += _json_len(messages if plain is None else plain)


_TTL_1H = b'"1h"'

# Bytes that compact JSON of integers and arrays never holds (strings, objects, floats,
# true/false/null all do).
_NOT_INT = (b'"', b"{", b".", b"e", b"E", b"t", b"f", b"n")


def _ids_or_texts(value: Any, acc: RequestBound) -> int:
    """Tokens of a ``prompt`` / ``input`` value into ``acc.text``; returns how many prompts
    (inputs) it holds: a string or one array of ids is one, a list of either is several."""
    if isinstance(value, str):
        acc.text += _json_len(value)
        return 1
    if not isinstance(value, list) or not value:
        acc.text += _json_len(value)
        return 1
    # Arrays of thousands of ids: classified from one orjson call and a few memchr scans,
    # not a Python loop over the ids (8,000 ids: ~30 µs instead of ~450 µs).
    raw = _json_len_bytes(value)
    if not any(raw.find(c) >= 0 for c in _NOT_INT):  # integers and arrays only
        if raw.find(b"[", 1) < 0:
            acc.text += len(value)  # one array of token ids: one token each
            return 1
        if all(item.__class__ is list for item in value) and raw.find(b"]]") == len(raw) - 2:
            acc.text += sum(map(len, value))  # arrays of ids, none nested deeper
            return len(value)
    if raw.find(b"[", 1) < 0 and raw.find(b"{") < 0:
        acc.text += len(raw)  # a list of strings (or of mixed scalars): its JSON bytes
        return len(value)
    for item in value:
        if isinstance(item, list):
            acc.text += sum(
                1 if isinstance(t, int) and not isinstance(t, bool) else _json_len(t) for t in item
            )
        elif isinstance(item, int) and not isinstance(item, bool):
            acc.text += 1
        else:
            acc.text += _json_len(item)
    return len(value)


def _rest(body: dict[str, Any], acc: RequestBound) -> None:
    """Every other field that a provider may tokenise (tools, stop sequences, suffix...)."""
    for key, value in body.items():
        if key in _CONTROL:
            continue
        raw = _json_len_bytes(value)
        if raw.find(_TTL_1H) >= 0:
            acc.cache_1h = True
        size = len(raw) + len(key)
        if key in _RENDERED:
            size *= 2
            if key in ("tools", "functions") and value:
                acc.tools = True
        acc.text += size


def bound_request(endpoint: Endpoint, body: dict[str, Any]) -> RequestBound:
    """Measure a canonical (OpenAI-shaped) request body; see the module docstring."""
    acc = RequestBound(text=BASE)
    if endpoint is Endpoint.EMBEDDINGS:
        inputs = _ids_or_texts(body.get("input"), acc)
        acc.text += inputs * EMBED_PER_INPUT
        acc.has_output = False
        acc.completions = 0
        return acc
    acc.cap = _cap(body)
    if endpoint is Endpoint.COMPLETIONS:
        prompts = _ids_or_texts(body.get("prompt"), acc)
        acc.text += prompts * PER_MESSAGE
        per_prompt = max(_count(body.get("n")), _count(body.get("best_of")))
        acc.completions = prompts * per_prompt
    else:
        _messages(body.get("messages"), acc)
        acc.completions = _count(body.get("n"))
    _rest(body, acc)
    prediction = body.get("prediction")
    if prediction is not None:
        acc.extra_output += _json_len(prediction)
    return acc


# -- money -----------------------------------------------------------------------------


def prompt_rate(price: Price, bound: RequestBound) -> Decimal:
    """The highest rate a prompt token of ``bound`` can be billed at: the input rate, a
    5-minute cache write (Anthropic and Bedrock Claude: 1.25x input; any request may carry
    cache markers, and a deployment with ``prompt_caching`` adds them, with the default
    5-minute TTL) or, when the request asks for a 1-hour TTL, a 1-hour write (2x). Never the
    cheaper cache-read rate; the read rate is included only so that a price listing it
    above input (a config error) still bounds."""
    rate = max(price.input, price.cache_write, price.cached_input)
    return max(rate, price.cache_write_1h) if bound.cache_1h else rate


def worst_usd(bound: RequestBound, rules: MediaRules, price: Price, cap: int) -> Decimal:
    """The most ``bound`` can cost at ``price`` with each completion capped at ``cap``,
    rounded up to 1e-10 USD."""
    prompt = bound.prompt_tokens(rules)
    output = bound.output_tokens(cap)
    with localcontext() as ctx:
        ctx.prec = 60
        total = (prompt * prompt_rate(price, bound) + output * price.output) / _MTOK
        total += price.per_request
        return total.quantize(_QUANTUM, rounding=ROUND_CEILING)


def cap_fitting(
    bound: RequestBound, rules: MediaRules, price: Price, remaining_usd: Decimal
) -> int | None:
    """The largest output cap per completion whose worst case fits ``remaining_usd`` at
    ``price`` (None: any cap fits, the output is free); 0 or less: not even the prompt."""
    if not bound.has_output or bound.completions <= 0 or price.output <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        fixed = worst_usd(bound, rules, price, 0)
        room = (remaining_usd - fixed) * _MTOK / (price.output * bound.completions)
        return int(room.to_integral_value(rounding=ROUND_FLOOR))
