"""Training and scoring the tier router on labelled JSONL (``interlock router train``,
``bench/routing_eval.py``).

A labelled line is ``{"messages": [...], "tier": "small|medium|large|specialized"}``
(other fields are ignored). Scores follow the evaluation data's README: accuracy, the
4×4 confusion matrix, recall per tier, under- and over-routing in the price order
small < medium < specialized < large, and cost relative to always-large with per-request
prices 1, 5, 10 and 30.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.routing.tiers.features import extract
from interlock.routing.tiers.learned import CLASSES, LearnedModel, model_input, train
from interlock.routing.tiers.router import embedding_text

__all__ = ["PRICE", "Example", "cross_validate", "embed", "fit", "load", "scores"]

PRICE = {"small": 1, "medium": 5, "specialized": 10, "large": 30}


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    body: dict[str, Any]
    tier: str


def load(path: str | Path) -> list[Example]:
    out: list[Example] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        tier = row.get("tier")
        if tier not in CLASSES or not isinstance(row.get("messages"), list):
            raise ValueError(f"{path}:{n}: needs 'messages' and a 'tier' in {CLASSES}")
        out.append(Example(str(row.get("id", n)), {"messages": row["messages"]}, tier))
    return out


def embed(examples: Sequence[Example]) -> Any:
    """MiniLM vectors of every example (in process; needs interlock[local])."""
    from interlock.localembed.model import MiniLM

    vectors, _ = MiniLM().encode([embedding_text(e.body) for e in examples])
    return vectors


def fit(examples: Sequence[Example], vectors: Any, *, l2: float = 1e-2) -> LearnedModel:
    import numpy as np

    x = np.stack([model_input(extract(e.body), v) for e, v in zip(examples, vectors, strict=True)])
    return train(x, [e.tier for e in examples], l2=l2)


def cross_validate(
    examples: Sequence[Example],
    vectors: Any,
    predict: Callable[[LearnedModel, Example, Any], str],
    k: int = 5,
    *,
    l2: float = 1e-2,
) -> list[str]:
    """Out-of-fold predictions: each example scored by a model that never saw it."""
    preds = [""] * len(examples)
    for fold in range(k):
        held = [i for i in range(len(examples)) if i % k == fold]
        kept = [i for i in range(len(examples)) if i % k != fold]
        model = fit([examples[i] for i in kept], [vectors[i] for i in kept], l2=l2)
        for i in held:
            preds[i] = predict(model, examples[i], vectors[i])
    return preds


def scores(labels: Sequence[str], preds: Sequence[str]) -> dict[str, Any]:
    """The README's figures for predictions (specialised tiers already mapped to
    ``specialized``)."""
    n = len(labels)
    order = {c: i for i, c in enumerate(CLASSES)}
    confusion = {a: {b: 0 for b in CLASSES} for a in CLASSES}
    for a, b in zip(labels, preds, strict=True):
        confusion[a][b] += 1
    correct = sum(confusion[c][c] for c in CLASSES)
    under = sum(1 for a, b in zip(labels, preds, strict=True) if order[b] < order[a])
    over = sum(1 for a, b in zip(labels, preds, strict=True) if order[b] > order[a])
    recall = {
        c: round(confusion[c][c] / sum(confusion[c].values()), 4)
        if sum(confusion[c].values())
        else None
        for c in CLASSES
    }
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "under_routing_rate": round(under / n, 4) if n else 0.0,
        "over_routing_rate": round(over / n, 4) if n else 0.0,
        "cost_vs_large": round(sum(PRICE[p] for p in preds) / (n * 30), 4) if n else 0.0,
        "cost_if_labels": round(sum(PRICE[a] for a in labels) / (n * 30), 4) if n else 0.0,
        "recall": recall,
        "confusion": confusion,
    }
