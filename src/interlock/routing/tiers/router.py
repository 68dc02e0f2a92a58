"""The tier router: one request in, one tier (and the alias serving it) out, with a reason.

Order of precedence:

1. a client pin (``x-interlock-tier``) names the tier outright;
2. a specialised tier whose rules (keywords, patterns) or description (learned path:
   embedding similarity) match the conversation;
3. the feature classifier (:mod:`.classifier`), raised — never lowered — by the learned
   model's answer when one is configured.

A tier the alias does not configure is served by the next larger configured one (never
a smaller one: under-routing is the quality risk); a request that looks specialised but
matches no configured specialised tier goes to the large tier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.errors import InvalidRequest
from interlock.routing.tiers.classifier import FeatureClassifier
from interlock.routing.tiers.features import Features, conversation, extract
from interlock.routing.tiers.learned import LearnedModel, model_input
from interlock.routing.tiers.specialized import SpecializedMatcher, SpecializedRule
from interlock.settings import TierSettings

__all__ = ["SIZES", "TierChoice", "TierRouter", "embedding_text"]

SIZES = ("small", "medium", "large")
_HEADER_SAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class TierChoice:
    tier: str  # small | medium | large | a specialised tier's name
    kind: str  # small | medium | large | specialized
    alias: str  # the alias that serves it
    reason: str  # why, for x-interlock-route-reason (ASCII)


def embedding_text(body: dict[str, Any]) -> str:
    """What the learned path embeds: the system prompt and the last user turn."""
    conv = conversation(body.get("messages"))
    text = (conv.system[:300] + "\n" + conv.last) if conv.system else conv.last
    return text[:2000]


class TierRouter:
    def __init__(self, alias: str, cfg: TierSettings, learned: LearnedModel | None = None) -> None:
        self.alias = alias
        self.cfg = cfg
        self.classifier = FeatureClassifier(cfg.quality_bias)
        self.learned = learned
        self.matcher = SpecializedMatcher(
            [
                SpecializedRule(name, t.description, t.keywords, t.patterns)
                for name, t in cfg.specialized.items()
            ]
        )
        self._sizes = {name: getattr(cfg, name) for name in SIZES}
        self.description_vectors: Any = None  # set by the owner once embedded (learned path)

    @property
    def tiers(self) -> list[str]:
        """Every tier a client may pin."""
        return [s for s in SIZES if self._sizes[s]] + list(self.cfg.specialized)

    @property
    def uses_embedding(self) -> bool:
        return self.learned is not None

    def _size(self, kind: str, reason: str) -> TierChoice:
        """The configured tier for ``kind``, climbing when it is not configured."""
        start = SIZES.index(kind)
        for name in (*SIZES[start:], *reversed(SIZES[:start])):
            alias = self._sizes[name]
            if alias:
                moved = "" if name == kind else f" (no {kind} tier: {name})"
                return TierChoice(name, name, alias, _header(reason + moved))
        raise AssertionError("settings guarantee at least one size")  # pragma: no cover

    def pinned(self, tier: str) -> TierChoice:
        tier = tier.strip().lower()
        if tier in SIZES and self._sizes[tier]:
            return TierChoice(tier, tier, str(self._sizes[tier]), "pinned by x-interlock-tier")
        spec = self.cfg.specialized.get(tier)
        if spec is not None:
            return TierChoice(tier, "specialized", spec.model, "pinned by x-interlock-tier")
        raise InvalidRequest(
            f"x-interlock-tier: unknown tier {tier[:64]!r} for model '{self.alias}' "
            f"(tiers: {', '.join(self.tiers)})",
            code="invalid_tier",
            param="x-interlock-tier",
        )

    def choose(
        self,
        body: dict[str, Any],
        pin: str | None = None,
        embedding: Sequence[float] | None = None,
    ) -> TierChoice:
        """The tier for this request body (``embedding``: the learned path's input)."""
        if pin:
            return self.pinned(pin)
        f = extract(body)
        if self.matcher:
            texts = [f.system, f.earlier, f.last] if f.earlier or f.system else [f.last]
            hit = self.matcher.match([t for t in texts if t])
            if hit is not None:
                spec = self.cfg.specialized[hit.name]
                return TierChoice(hit.name, "specialized", spec.model, _header(hit.reason))
        decision = self.classifier.decide(f)
        kind, reason = decision.tier, decision.reason
        if self.learned is not None and embedding is not None:
            return self._with_learned(f, embedding, kind, reason)
        return self._size(kind, reason)

    def _with_learned(
        self, f: Features, embedding: Sequence[float], kind: str, reason: str
    ) -> TierChoice:
        assert self.learned is not None
        tolerance = 0.15 * (1.0 - self.cfg.quality_bias)
        learned, above = self.learned.tier(model_input(f, embedding), tolerance)
        if learned == "specialized":
            best = self._nearest_description(embedding)
            if best is not None:
                spec = self.cfg.specialized[best[0]]
                return TierChoice(
                    best[0], "specialized", spec.model, _header(f"learned: similar to {best[0]}")
                )
            learned = "large"  # looks specialised, but no such tier here: the safe choice
        if SIZES.index(learned) > SIZES.index(kind):
            return self._size(learned, f"learned: {learned} (p_above={above:.2f}); {reason}")
        return self._size(kind, reason)

    def _nearest_description(self, embedding: Sequence[float]) -> tuple[str, float] | None:
        if self.description_vectors is None or not self.cfg.specialized:
            return None
        import numpy as np

        sims = self.description_vectors @ np.asarray(embedding, dtype=np.float32)
        i = int(np.argmax(sims))
        if float(sims[i]) < self.cfg.specialized_similarity:
            return None
        return list(self.cfg.specialized)[i], float(sims[i])

    def next_up(
        self, choice: TierChoice, allowed: Callable[[str], bool] = lambda _alias: True
    ) -> TierChoice | None:
        """The escalation target: the next larger configured size (specialised: large)
        whose alias the caller may use."""
        start = SIZES.index(choice.kind) + 1 if choice.kind in SIZES else len(SIZES) - 1
        for name in SIZES[start:]:
            alias = self._sizes[name]
            if alias and alias != choice.alias and allowed(alias):
                return TierChoice(name, name, alias, f"escalated from {choice.tier}")
        return None

    def nearest_allowed(
        self, choice: TierChoice, allowed: Callable[[str], bool]
    ) -> TierChoice | None:
        """``choice`` when the caller may use its alias, else the nearest configured size
        it may use: larger sizes first (under-routing is the quality risk), then smaller;
        a specialised tier is replaced from ``large`` down. None: no tier is allowed."""
        if allowed(choice.alias):
            return choice
        start = SIZES.index(choice.kind) if choice.kind in SIZES else len(SIZES) - 1
        for name in (*SIZES[start:], *reversed(SIZES[:start])):
            alias = self._sizes[name]
            if alias and allowed(alias):
                reason = f"{choice.reason}; {choice.tier} not allowed for this key: {name}"
                return TierChoice(name, name, alias, _header(reason))
        return None


def _header(text: str) -> str:
    return _HEADER_SAFE.sub("?", text)[:200]
