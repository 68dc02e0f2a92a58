"""Deterministic text generation and token counting.

Token counting is a simple, documented rule every test can reproduce:

* text tokens = number of matches of ``\\w+|[^\\w\\s]`` in the text;
* chat prompt tokens = text tokens of every message + 3 per message + 3;
* completion tokens = number of generated pieces (one vocabulary word = one token).

Randomness comes from :func:`request_rng`: a ``random.Random`` seeded from the
simulator seed, the request's own ``seed`` (if any) and a SHA-256 digest of the
canonical request content, so the same request under the same seed always gets the
same answer.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "VOCABULARY",
    "chat_prompt_tokens",
    "content_digest",
    "count_tokens",
    "generate_words",
    "join_pieces",
    "request_rng",
    "split_pieces",
    "word_pieces",
]

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")

# Every word is one token of OpenAI's cl100k_base BPE with and without a leading space, so
# the simulator's count of what it generates (one token per word) is what a real
# tokenizer counts too: an aborted stream's estimate is checked against an honest bill.
VOCABULARY: tuple[str, ...] = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "this",
    "be",
    "from",
    "or",
    "an",
    "are",
    "signal",
    "route",
    "train",
    "track",
    "switch",
    "station",
    "platform",
    "junction",
    "lever",
    "block",
    "line",
    "points",
    "gate",
    "main",
    "branch",
    "yard",
    "express",
    "local",
    "clear",
    "danger",
    "stop",
    "slow",
    "fast",
    "north",
    "south",
    "east",
    "west",
    "up",
    "down",
    "left",
    "right",
    "early",
    "late",
    "today",
    "night",
    "hour",
    "minute",
    "second",
    "day",
    "week",
    "month",
    "system",
    "network",
    "request",
    "answer",
    "model",
    "token",
    "budget",
    "cache",
    "queue",
    "cluster",
    "region",
    "provider",
    "gateway",
    "router",
    "policy",
    "limit",
    "window",
    "error",
    "retry",
    "fallback",
    "breaker",
    "health",
    "probe",
    "metric",
    "trace",
    "ledger",
    "invoice",
    "cost",
    "price",
    "team",
    "feature",
    "user",
    "simple",
    "quick",
    "steady",
    "bright",
    "quiet",
    "heavy",
    "light",
    "long",
    "short",
    "new",
    "old",
    "first",
    "last",
    "next",
    "other",
    "same",
    "different",
    "good",
    "better",
    "best",
    "small",
    "large",
    "medium",
    "open",
    "closed",
    "safe",
    "ready",
    "runs",
    "moves",
    "checks",
    "reads",
    "writes",
    "counts",
    "holds",
    "makes",
    "takes",
    "shows",
    "works",
    "starts",
    "ends",
    "leads",
    "tests",
    "guards",
    "because",
    "while",
    "when",
    "where",
    "which",
    "whose",
    "however",
    "also",
    "only",
    "still",
    "always",
    "never",
    "often",
    "sometimes",
    "perhaps",
    "rather",
    "quite",
    "very",
    "more",
    "most",
    "less",
    "least",
    "each",
    "every",
    "river",
    "bridge",
    "hill",
    "forest",
    "field",
    "city",
    "road",
)


def count_tokens(text: str) -> int:
    """Tokens in ``text`` under the simulator's rule (word runs and punctuation marks)."""
    return len(TOKEN_RE.findall(text))


def chat_prompt_tokens(message_texts: Iterable[str]) -> int:
    """Prompt tokens of a chat: text tokens + 3 per message + 3."""
    total = 3
    for text in message_texts:
        total += 3 + count_tokens(text)
    return total


def content_digest(content: Any) -> bytes:
    """SHA-256 of the canonical JSON form of ``content`` (keys sorted)."""
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


def request_rng(
    seed: int, digest: bytes, request_seed: Any = None, salt: str = ""
) -> random.Random:
    """A PRNG determined by the simulator seed, the request digest and the request seed."""
    material = f"{seed}|{request_seed!r}|{salt}|".encode() + digest
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:16], "big"))


def generate_words(rng: random.Random, count: int) -> list[str]:
    """``count`` words drawn from the fixed vocabulary."""
    vocab = VOCABULARY
    n = len(vocab)
    rand = rng.random
    return [vocab[int(rand() * n)] for _ in range(count)]


def word_pieces(words: list[str]) -> list[str]:
    """Stream pieces of a sentence: the first word, then each next word with its space."""
    if not words:
        return []
    return [words[0], *(" " + w for w in words[1:])]


def split_pieces(text: str) -> list[str]:
    """Split arbitrary text (e.g. JSON) into pieces that concatenate back to ``text``."""
    pieces = _PIECE_RE.findall(text)
    consumed = sum(len(p) for p in pieces)
    if consumed < len(text):  # trailing whitespace
        if pieces:
            pieces[-1] += text[consumed:]
        else:
            pieces = [text]
    return pieces


def join_pieces(pieces: Iterable[str]) -> str:
    return "".join(pieces)
