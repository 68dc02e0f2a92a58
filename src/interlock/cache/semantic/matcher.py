"""Whether a semantic-cache candidate may be served: similarity first, then the guards.

The gateway embeds :func:`prepare` of each request, finds the nearest cached entry of
the same partition and calls :func:`verdict` with the cosine similarity and both
*original* texts. Similarity alone is not evidence of the same answer — on hand-labelled
pairs, 63% of hard negatives ("status 404" / "status 403", "mutable" / "not mutable")
score at least 0.80 — so the threshold only shortlists and the guards in :mod:`.guard`
decide (docs/semantic-cache.md, "Matching and guards").
"""

from __future__ import annotations

import math
import re

from .guard import compare

# Greetings, thanks and "could you please" wrappers carry no meaning but pull the
# embedding of a short question towards every other polite question.
_WRAPPERS = re.compile(
    r"^\s*(?:(?:hi|hello|hey|greetings|good\s+(?:morning|afternoon|evening))"
    r"(?:\s+there)?[\s!,.]*)+"
    r"|\b(?:could|can|would|will)\s+you\s+(?:please\s+)?(?:kindly\s+)?(?:tell|show)\s+me\s+"
    r"|\bplease\b[\s,]*"
    r"|[\s.!]*(?:thanks|thank\s+you|thx|cheers|much\s+appreciated)"
    r"(?:\s+(?:so\s+much|a\s+lot|in\s+advance|a\s+bunch))?[\s.!]*$",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")
_PREPARE_MAX = 20_000  # the embedder truncates long inputs anyway; bound the regex work


def prepare(text: str) -> str:
    """The text to embed, for stored entries and lookups alike: whitespace collapsed,
    greetings / thanks / "could you please tell me" removed. Never empty when the
    input is not (a text that is only a greeting embeds as itself)."""
    head = text[:_PREPARE_MAX]
    out = _SPACE.sub(" ", _WRAPPERS.sub(" ", head)).strip()
    return out or _SPACE.sub(" ", head).strip() or text


def verdict(similarity: float, cached: str, query: str, threshold: float) -> str | None:
    """None: serve ``cached``'s answer for ``query``. Otherwise a short reason:
    "below_threshold", or the guard that found a difference ("number", "negation",
    "role_swap", "entity", "format", "input", "content", ...)."""
    if math.isnan(similarity) or similarity < threshold:
        return "below_threshold"
    if cached == query:
        return None
    return compare(cached, query)


def accept(similarity: float, cached: str, query: str, threshold: float) -> bool:
    """Whether the cached answer may be served (``verdict(...) is None``)."""
    return verdict(similarity, cached, query, threshold) is None
