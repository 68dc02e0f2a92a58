"""Specialised tiers: models kept for one kind of work, chosen when a request matches it.

An operator describes each specialised tier in words (``description``) and, optionally,
with explicit rules: ``keywords`` (phrases, case-insensitive, whole words) and
``patterns`` (regular expressions, matched against each message on its own). Rules are
the feature path: exact, explainable and fast. When the learned path is enabled the
description is also embedded once, and a request whose embedding is close enough to it
(cosine ≥ ``similarity``) matches too.

The whole conversation is read, system prompt and earlier turns included: a follow-up
such as "Both, please." belongs to the contract review it follows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SpecializedMatch", "SpecializedMatcher", "SpecializedRule"]


@dataclass(frozen=True, slots=True)
class SpecializedRule:
    name: str  # the tier's name, e.g. "medical-coding"
    description: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpecializedMatch:
    name: str
    reason: str  # e.g. "keyword 'icd-10'"


def _keyword_pattern(word: str) -> re.Pattern[str]:
    w = word.strip().lower()
    # Whole words where the phrase starts/ends with a word character (so "cpt" does not
    # match "concept"); CJK phrases have no word boundaries and match anywhere.
    head = r"(?<!\w)" if re.match(r"\w", w) and w.isascii() else ""
    tail = r"(?!\w)" if re.search(r"\w$", w) and w.isascii() else ""
    return re.compile(f"{head}{re.escape(w)}{tail}")


class SpecializedMatcher:
    """Keyword and pattern rules of every specialised tier, in configuration order."""

    def __init__(self, rules: Sequence[SpecializedRule]) -> None:
        self.rules = list(rules)
        # Keywords are found with a plain substring test first (fast, in C) and only then
        # confirmed as whole words: most requests contain none of them.
        self._compiled = [
            (
                r.name,
                [(k.strip().lower(), _keyword_pattern(k)) for k in r.keywords if k.strip()],
                [re.compile(p, re.IGNORECASE | re.DOTALL) for p in r.patterns],
            )
            for r in self.rules
        ]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, texts: Sequence[str]) -> SpecializedMatch | None:
        """The first tier whose rules match any of ``texts`` (the conversation's messages)."""
        lowered = [t.lower() for t in texts]
        for name, words, patterns in self._compiled:
            for text in lowered:
                for word, exact in words:
                    if word in text and exact.search(text) is not None:
                        return SpecializedMatch(name, f"keyword '{word}'")
            for text in texts:
                for i, p in enumerate(patterns):
                    if p.search(text) is not None:
                        return SpecializedMatch(name, f"pattern {i + 1}")
        return None
