"""The optional learned path: multinomial logistic regression over the request's MiniLM
embedding and its numeric features, in numpy.

Trained by ``interlock router train FILE -o ARTIFACT`` on a labelled JSONL file (one
``{"messages": [...], "tier": "small|medium|large|specialized"}`` per line) and saved as
a small ``.npz`` (weights, bias, feature scaling, class names: ~10 KB). At run time the
gateway embeds the conversation with the local embedding model and the artifact turns
that into tier probabilities; :meth:`LearnedModel.tier` then picks the cheapest tier
whose chance of being too small is within the tolerance (the quality/cost knob moves it).

Why logistic regression: with a few hundred labelled requests a linear model over a good
sentence embedding is as accurate as anything bigger, trains in a second, and cannot
memorise much; its probabilities are what the tolerance rule needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interlock.routing.tiers.features import Features

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["CLASSES", "LearnedModel", "model_input", "train"]

CLASSES: tuple[str, ...] = ("small", "medium", "specialized", "large")  # price order


def model_input(features: Features, embedding: Sequence[float] | Any) -> Any:
    """One row of model input: the embedding followed by the numeric features."""
    import numpy as np

    return np.concatenate(
        [np.asarray(embedding, dtype=np.float32), np.asarray(features.vector(), np.float32)]
    )


@dataclass(frozen=True, slots=True)
class LearnedModel:
    weights: Any  # (inputs, classes)
    bias: Any  # (classes,)
    mean: Any  # input scaling
    scale: Any
    classes: tuple[str, ...] = CLASSES

    def proba(self, x: Any) -> npt.NDArray[Any]:
        """Class probabilities for one input row or a matrix of rows."""
        import numpy as np

        z = ((np.asarray(x, dtype=np.float32) - self.mean) / self.scale) @ self.weights + self.bias
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        out: npt.NDArray[Any] = e / e.sum(axis=-1, keepdims=True)
        return out

    def tier(self, x: Any, tolerance: float) -> tuple[str, float]:
        """The cheapest class whose probability of the label being above it is at most
        ``tolerance``; and that probability."""
        p = self.proba(x)
        above = 1.0
        for i, name in enumerate(self.classes):
            above -= float(p[i])
            if above <= tolerance:
                return name, max(0.0, above)
        return self.classes[-1], 0.0

    def save(self, path: str | Path) -> None:
        import numpy as np

        with open(path, "wb") as fh:
            np.savez_compressed(
                fh,
                weights=self.weights,
                bias=self.bias,
                mean=self.mean,
                scale=self.scale,
                classes=np.asarray(self.classes),
            )

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["weights"],
                data["bias"],
                data["mean"],
                data["scale"],
                tuple(str(c) for c in data["classes"]),
            )


def train(
    x: Any, labels: Sequence[str], *, l2: float = 1e-2, epochs: int = 400, lr: float = 0.5
) -> LearnedModel:
    """Fit softmax regression by full-batch gradient descent (inputs standardised)."""
    import numpy as np

    xs = np.asarray(x, dtype=np.float32)
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0) + 1e-6
    z = (xs - mean) / scale
    y = np.zeros((len(labels), len(CLASSES)), dtype=np.float32)
    for i, label in enumerate(labels):
        y[i, CLASSES.index(label)] = 1.0
    w = np.zeros((z.shape[1], len(CLASSES)), dtype=np.float32)
    b = np.log(y.mean(axis=0) + 1e-3).astype(np.float32)
    n = float(len(labels))
    for _ in range(epochs):
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = p - y
        w -= lr * ((z.T @ grad) / n + l2 * w)
        b -= lr * grad.mean(axis=0)
    return LearnedModel(w, b, mean, scale, CLASSES)
