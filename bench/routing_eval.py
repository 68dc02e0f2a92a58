"""Score the tier router on a labelled file, exactly as the gateway runs it by default.

    .venv/bin/python bench/routing_eval.py [--data FILE] [--tiers bench/routing_tiers.yaml]
                                           [--bias 0.0] [--learned-cv 5]

"As the gateway runs it by default": the feature path (no learned artifact), with the
tiered alias of ``--tiers`` (an operator's configuration: small/medium/large aliases and
four specialised tiers with keyword/pattern rules). Prints accuracy, the 4×4 confusion
matrix (rows = label, columns = prediction), recall per tier, under- and over-routing,
cost against always-large, and the decision time per request (p50/p99 over several
passes) — for the whole file and for its odd and even ids separately. ``--learned-cv K``
also reports the optional learned model by K-fold cross-validation (needs
interlock[local]); it is reported separately and is never the default.

The last output line is one JSON object: accuracy, under_routing_rate, cost_vs_large,
over_routing_rate, p50_ms/p99_ms (wall clock), cpu_p50_ms/cpu_p99_ms (CPU time), and the
same per half.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from interlock.routing.tiers.features import extract
from interlock.routing.tiers.learned import LearnedModel, model_input
from interlock.routing.tiers.router import TierRouter
from interlock.routing.tiers.training import Example, cross_validate, embed, load, scores
from interlock.settings import TierSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routing-dev.jsonl"
DEFAULT_TIERS = ROOT / "bench" / "routing_tiers.yaml"
CLASSES = ("small", "medium", "specialized", "large")


def router_from(path: Path = DEFAULT_TIERS, bias: float | None = None) -> TierRouter:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if bias is not None:
        data["quality_bias"] = bias
    return TierRouter("auto", TierSettings.model_validate(data))


def predict(router: TierRouter, examples: list[Example]) -> list[str]:
    return [router.choose(e.body).kind for e in examples]


def timing(router: TierRouter, examples: list[Example], passes: int = 5) -> dict[str, float]:
    """Decision time per request (features + specialised rules + classifier), in ms.

    Wall clock, and this thread's CPU time: the decision is pure computation, so on a
    busy machine (other processes preempting this one) the CPU time is the decision's
    own cost and the wall clock adds the scheduler's delays.
    """
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(passes):
        for e in examples:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            router.choose(e.body)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
            wall.append((time.perf_counter_ns() - t0) / 1e6)

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(len(xs) * q))], 4)

    return {
        "p50_ms": round(statistics.median(wall), 4),
        "p99_ms": pct(wall, 0.99),
        "cpu_p50_ms": round(statistics.median(cpu), 4),
        "cpu_p99_ms": pct(cpu, 0.99),
    }


def evaluate(
    data: Path = DEFAULT_DATA, tiers: Path = DEFAULT_TIERS, bias: float | None = None
) -> dict[str, Any]:
    """Scores for the whole file and for odd and even ids."""
    router = router_from(tiers, bias)
    examples = load(data)
    out: dict[str, Any] = {}
    halves = {
        "all": examples,
        "odd": [e for i, e in enumerate(examples) if i % 2 == 0],  # ids 1, 3, 5, ...
        "even": [e for i, e in enumerate(examples) if i % 2 == 1],
    }
    for name, part in halves.items():
        preds = predict(router, part)
        s = scores([e.tier for e in part], preds)
        s.update(timing(router, part))
        s["misses"] = [
            {"id": e.id, "label": e.tier, "predicted": p}
            for e, p in zip(part, preds, strict=True)
            if p != e.tier
        ]
        out[name] = s
    return out


def learned_cv(data: Path, k: int, tolerance: float = 0.15) -> dict[str, Any]:
    examples = load(data)
    vectors = embed(examples)

    def guess(model: LearnedModel, e: Example, v: Any) -> str:
        return model.tier(model_input(extract(e.body), v), tolerance)[0]

    preds = cross_validate(examples, vectors, guess, k)
    return scores([e.tier for e in examples], preds)


def _print(name: str, s: dict[str, Any]) -> None:
    print(f"\n== {name}: {s['n']} requests")
    print(
        f"accuracy {s['accuracy']:.3f}  under-routing {s['under_routing_rate']:.3f}  "
        f"over-routing {s['over_routing_rate']:.3f}  cost vs always-large "
        f"{s['cost_vs_large']:.3f} (labels: {s['cost_if_labels']:.3f})"
    )
    if "p50_ms" in s:
        print(
            f"decision time: p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms wall clock; "
            f"CPU p50 {s['cpu_p50_ms']:.3f} ms, p99 {s['cpu_p99_ms']:.3f} ms"
        )
    print("confusion (rows = label, columns = prediction):")
    print("              " + "".join(f"{c:>12}" for c in CLASSES))
    for a in CLASSES:
        print(f"{a:>12}  " + "".join(f"{s['confusion'][a][b]:>12}" for b in CLASSES))
    print("recall: " + ", ".join(f"{c} {s['recall'][c]}" for c in CLASSES))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tiers", type=Path, default=DEFAULT_TIERS)
    ap.add_argument("--bias", type=float, default=None, help="Override quality_bias.")
    ap.add_argument("--learned-cv", type=int, default=0, metavar="K")
    ap.add_argument("--misses", action="store_true", help="List the misrouted ids.")
    args = ap.parse_args(argv)
    result = evaluate(args.data, args.tiers, args.bias)
    for name, s in result.items():
        _print(name, s)
        if args.misses:
            for m in s["misses"]:
                print(f"  {m['id']}: {m['label']} -> {m['predicted']}")
    summary: dict[str, Any] = {
        k: result["all"][k]
        for k in (
            "accuracy",
            "under_routing_rate",
            "over_routing_rate",
            "cost_vs_large",
            "p50_ms",
            "p99_ms",
            "cpu_p50_ms",
            "cpu_p99_ms",
        )
    }
    summary["recall"] = result["all"]["recall"]
    for half in ("odd", "even"):
        summary[half] = {
            k: result[half][k]
            for k in ("accuracy", "under_routing_rate", "over_routing_rate", "cost_vs_large")
        }
    if args.learned_cv >= 2:
        cv = learned_cv(args.data, args.learned_cv)
        _print(f"learned model, {args.learned_cv}-fold cross-validation (not the default)", cv)
        summary["learned_cv"] = {
            k: cv[k]
            for k in ("accuracy", "under_routing_rate", "over_routing_rate", "cost_vs_large")
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
