"""Evaluate the semantic-cache matcher on hand-labelled request pairs.

    .venv/bin/python bench/semantic_cache_eval.py [--data FILE] [--thresholds 0.6,0.7,...]

Each pair is scored on its own, as the data README asks: ``a`` is the cached request,
``b`` the lookup; both are embedded as ``prepare(text)`` with the gateway's model
(all-MiniLM-L6-v2, unit vectors, cosine = dot) and the pair is a hit when
``accept(similarity, a, b, threshold)``. Reported: a threshold sweep (hit rate on
``same_answer=true``, false-hit rate on ``same_answer=false``, precision), per-kind
rates at the configured default threshold, the best hit rate with a false-hit rate of
at most 1%, and the odd/even-id halves (a rule that helps one half only is overfit).
The last line of output is one JSON object (the figures at the default threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository root (parent of bench/)
sys.path.insert(0, str(ROOT / "src"))

from interlock.cache.semantic.matcher import accept, prepare, verdict  # noqa: E402
from interlock.settings import SemanticCacheSettings  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "semantic-cache-dev.jsonl"
DEFAULT_SWEEP = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
BATCH = 128
MAX_FALSE_HIT = 0.01

Pair = dict[str, Any]


def load(path: Path) -> list[Pair]:
    pairs = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                row["same_answer"] = bool(row["same_answer"])
                row.setdefault("kind", "?")
                row.setdefault("id", str(len(pairs)))
                pairs.append(row)
    return pairs


def similarities(pairs: list[Pair]) -> list[float]:
    """Cosine of prepare(a), prepare(b) for every pair; each distinct text embedded once."""
    from interlock.localembed.model import MiniLM

    texts = sorted({prepare(p[k]) for p in pairs for k in ("a", "b")})
    model = MiniLM()
    vec: dict[str, Any] = {}
    for i in range(0, len(texts), BATCH):
        chunk = texts[i : i + BATCH]
        vecs, _counts = model.encode(chunk)
        vec.update(zip(chunk, vecs, strict=True))
    return [float(vec[prepare(p["a"])] @ vec[prepare(p["b"])]) for p in pairs]


def score(pairs: list[Pair], sims: list[float], threshold: float) -> dict[str, Any]:
    pos = neg = hits = false_hits = 0
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind -> [hits, n]
    for p, s in zip(pairs, sims, strict=True):
        hit = accept(s, p["a"], p["b"], threshold)
        by_kind[p["kind"]][0] += hit
        by_kind[p["kind"]][1] += 1
        if p["same_answer"]:
            pos += 1
            hits += hit
        else:
            neg += 1
            false_hits += hit
    positive_kinds = {p["kind"] for p in pairs if p["same_answer"]}
    rate = {k: round(h / n, 4) for k, (h, n) in sorted(by_kind.items())}
    return {
        "threshold": threshold,
        "pairs": len(pairs),
        "hit_rate": round(hits / pos, 4) if pos else 0.0,
        "false_hit_rate": round(false_hits / neg, 4) if neg else 0.0,
        "precision": round(hits / (hits + false_hits), 4) if hits + false_hits else 1.0,
        "hits": hits,
        "false_hits": false_hits,
        "positives": pos,
        "negatives": neg,
        "hit_by_kind": {k: v for k, v in rate.items() if k in positive_kinds},
        "false_hit_by_kind": {k: v for k, v in rate.items() if k not in positive_kinds},
    }


def _half(pairs: list[Pair], sims: list[float], odd: bool) -> tuple[list[Pair], list[float]]:
    def is_odd(p: Pair) -> bool:
        digits = "".join(c for c in str(p["id"]) if c.isdigit())
        return bool(int(digits) % 2) if digits else False

    keep = [i for i, p in enumerate(pairs) if is_odd(p) == odd]
    return [pairs[i] for i in keep], [sims[i] for i in keep]


def main(argv: list[str] | None = None, *, save: bool = False) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--thresholds", default=",".join(str(t) for t in DEFAULT_SWEEP))
    ap.add_argument("--show", choices=("none", "false_hits", "misses"), default="none",
                    help="list the false hits or the missed positives at the default threshold")
    args = ap.parse_args(argv)

    default = SemanticCacheSettings().threshold
    sweep = sorted({float(t) for t in args.thresholds.split(",") if t.strip()} | {default})
    pairs = load(args.data)
    t0 = time.perf_counter()
    sims = similarities(pairs)
    t_embed = time.perf_counter() - t0

    print(f"{args.data}: {len(pairs)} pairs, embedded in {t_embed:.1f} s\n")
    print(f"{'threshold':>9} {'hit rate':>9} {'false hit':>9} {'precision':>9}")
    results = {}
    for t in sweep:
        r = results[t] = score(pairs, sims, t)
        mark = "  <- default" if t == default else ""
        print(
            f"{t:>9.2f} {r['hit_rate']:>9.1%} {r['false_hit_rate']:>9.1%} {r['precision']:>9.1%}{mark}"
        )

    ok = [r for r in results.values() if r["false_hit_rate"] <= MAX_FALSE_HIT]
    if ok:
        best = max(ok, key=lambda r: (r["hit_rate"], r["threshold"]))
        print(f"\nbest hit rate at false-hit <= {MAX_FALSE_HIT:.0%}: {best['hit_rate']:.1%} "
              f"(threshold {best['threshold']:.2f})")
    else:
        print(f"\nno threshold in the sweep keeps the false-hit rate <= {MAX_FALSE_HIT:.0%}")

    r = results[default]
    print(f"\nat the default threshold {default:.2f}:")
    print("  false-hit rate by kind (negatives):")
    for k, v in r["false_hit_by_kind"].items():
        n = sum(1 for p in pairs if p["kind"] == k)
        print(f"    {k:<20} {v:>6.1%}  (n={n})")
    print("  hit rate by kind (positives):")
    for k, v in r["hit_by_kind"].items():
        n = sum(1 for p in pairs if p["kind"] == k)
        print(f"    {k:<20} {v:>6.1%}  (n={n})")
    for name, odd in (("odd ids", True), ("even ids", False)):
        hp, hs = _half(pairs, sims, odd)
        if hp:
            h = score(hp, hs, default)
            print(f"  {name:<9}: hit {h['hit_rate']:.1%}  false hit {h['false_hit_rate']:.1%}  "
                  f"({h['pairs']} pairs)")

    if args.show != "none":
        want_pos = args.show == "misses"
        print(f"\n{args.show} at {default:.2f}:")
        for p, s in zip(pairs, sims, strict=True):
            if p["same_answer"] == want_pos and accept(s, p["a"], p["b"], default) != want_pos:
                why = verdict(s, p["a"], p["b"], default) or "hit"
                print(f"  {p['id']} {p['kind']} sim={s:.2f} {why}: {p['a']!r} | {p['b']!r}")

    summary = {k: v for k, v in r.items() if k != "hit_by_kind"}
    summary["hit_by_kind"] = r["hit_by_kind"]
    summary.update(_verdict_cost(pairs, default))
    print(f"  verdict cost: {summary['verdict_cold_us']:.0f} us cold, "
          f"{summary['verdict_warm_us']:.0f} us warm (per pair; target < 2000 / < 500)")
    summary["best_hit_rate_at_1pct"] = max((x["hit_rate"] for x in ok), default=None)
    if save:  # for bench/report.py (docs/benchmarks.md); the last line stays the JSON
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        sweep_rows = [
            {k: results[t][k] for k in ("threshold", "hit_rate", "false_hit_rate", "precision")}
            for t in sweep
        ]
        (out / f"semantic-eval-{stamp}.json").write_text(
            json.dumps({"data": str(args.data), "summary": summary, "sweep": sweep_rows,
                        "embed_s": round(t_embed, 1)}, indent=1)
        )
        print(f"wrote {out / f'semantic-eval-{stamp}.json'}")
    print(json.dumps(summary, sort_keys=False))
    return summary


def _verdict_cost(pairs: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    """The guards' CPU per candidate pair: cold (both texts analysed) and warm (their
    analyses cached), in microseconds (was a timed unit test; timings live here)."""
    texts = [(p["a"], p["b"]) for p in pairs]
    t0 = time.perf_counter()
    for a, b in texts:
        verdict(1.0, a, b, threshold)
    cold = (time.perf_counter() - t0) / max(1, len(texts))
    t0 = time.perf_counter()
    for a, b in texts:
        verdict(1.0, a, b, threshold)
    warm = (time.perf_counter() - t0) / max(1, len(texts))
    return {"verdict_cold_us": round(cold * 1e6, 1), "verdict_warm_us": round(warm * 1e6, 1)}


if __name__ == "__main__":
    main(save=True)
