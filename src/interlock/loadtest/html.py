"""The HTML report: one self-contained file (inline CSS and SVG, no script, no CDN), so
it can be attached to a CI run or a launch review and opened anywhere, offline."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["render_html"]

_W, _H, _PAD = 760, 260, 48
_COLORS = ("#2563eb", "#d97706", "#dc2626", "#059669")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return _esc(value)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = float(10 ** math.floor(math.log10(v)))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * exp:
            return step * exp
    return 10 * exp


def _axes(
    x_label: str, y_label: str, y_max: float, x_ticks: Sequence[tuple[float, str]]
) -> list[str]:
    parts = [
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle">{_esc(x_label)}</text>',
        f'<text x="12" y="{_H / 2}" transform="rotate(-90 12 {_H / 2})" text-anchor="middle">{_esc(y_label)}</text>',
    ]
    for i in range(5):
        y = _H - _PAD - i * (_H - _PAD - 10) / 4
        parts.append(f'<line x1="{_PAD}" y1="{y:.1f}" x2="{_W - 10}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{_PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_max * i / 4)}</text>'
        )
    for x, label in x_ticks:
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _PAD + 16}" text-anchor="middle">{_esc(label)}</text>'
        )
    return parts


def _scales(
    x_max: float, y_max: float
) -> tuple[Callable[[float], float], Callable[[float], float]]:
    def sx(x: float) -> float:
        return _PAD + (x / x_max) * (_W - _PAD - 10)

    def sy(y: float) -> float:
        return _H - _PAD - (y / y_max) * (_H - _PAD - 10)

    return sx, sy


def _svg(parts: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
            f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>{"".join(parts)}</svg>')  # fmt: skip


def latency_over_time_svg(timeline: list[dict[str, Any]]) -> str:
    series = [("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")]
    values = [r[k] for r in timeline for k, _ in series if r.get(k) is not None]
    if not timeline or not values:
        return "<p>No successful requests: nothing to plot.</p>"
    y_max = _nice_max(max(values))
    t_max = max(r["t_s"] for r in timeline) or 1.0
    sx, sy = _scales(t_max, y_max)
    ticks = [(sx(t_max * i / 5), f"{t_max * i / 5:g}") for i in range(6)]
    parts = _axes("intended send time (s)", "latency (ms)", y_max, ticks)
    for (key, label), color in zip(series, _COLORS, strict=False):
        pts = " ".join(
            f"{sx(r['t_s']):.1f},{sy(r[key]):.1f}" for r in timeline if r.get(key) is not None
        )
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{pts}"/>')
        i = series.index((key, label))
        parts.append(f'<text x="{_W - 60}" y="{20 + 14 * i}" fill="{color}">{label}</text>')
    errs = [r for r in timeline if r["errors"]]
    for r in errs:  # error buckets marked on the time axis
        parts.append(f'<circle cx="{sx(r["t_s"]):.1f}" cy="{_H - _PAD}" r="3" fill="#dc2626"><title>'
                     f'{r["errors"]} errors</title></circle>')  # fmt: skip
    return _svg(parts, "Latency over time (p50, p95, p99)")


def throughput_svg(timeline: list[dict[str, Any]], bucket_s: float) -> str:
    if not timeline:
        return ""
    rates = [(r["t_s"], r["sent"] / bucket_s, r["ok"] / bucket_s) for r in timeline]
    y_max = _nice_max(max(max(a, b) for _, a, b in rates))
    t_max = max(t for t, _, _ in rates) or 1.0
    sx, sy = _scales(t_max, y_max)
    ticks = [(sx(t_max * i / 5), f"{t_max * i / 5:g}") for i in range(6)]
    parts = _axes("intended send time (s)", "requests/s", y_max, ticks)
    for idx, (label, color) in enumerate((("sent", _COLORS[0]), ("ok", _COLORS[3]))):
        pts = " ".join(f"{sx(t):.1f},{sy(v[idx]):.1f}" for t, *v in rates)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{pts}"/>')
        parts.append(f'<text x="{_W - 60}" y="{20 + 14 * idx}" fill="{color}">{label}</text>')
    return _svg(parts, "Offered and successful requests per second")


def histogram_svg(hist: dict[str, Any]) -> str:
    edges, counts = hist.get("edges_ms") or [], hist.get("counts") or []
    if not counts:
        return "<p>No successful requests: no histogram.</p>"
    y_max = _nice_max(max(counts))
    n = len(counts)
    width = (_W - _PAD - 10) / n
    ticks = [(_PAD + i * width, f"{edges[i]:.3g}") for i in range(0, n + 1, max(1, n // 8))]
    parts = _axes("latency (ms, log scale)", "requests", y_max, ticks)
    for i, c in enumerate(counts):
        h = (c / y_max) * (_H - _PAD - 10)
        parts.append(
            f'<rect x="{_PAD + i * width + 0.5:.1f}" y="{_H - _PAD - h:.1f}" width="{max(width - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="{_COLORS[0]}"><title>{edges[i]:.3g}–{edges[i + 1]:.3g} ms: {c}</title></rect>'
        )
    return _svg(parts, "Latency histogram")


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def render_html(doc: dict[str, Any]) -> str:
    req, arr, lat, ttft = doc["requests"], doc["arrival"], doc["latency_ms"], doc["ttft_ms"]
    slo = doc.get("slo") or {"passed": True, "checks": []}
    verdict = "PASS" if doc.get("passed", True) else "FAIL"
    timeline = doc.get("timeline") or []
    bucket = (timeline[1]["t_s"] - timeline[0]["t_s"]) if len(timeline) > 1 else 1.0
    summary = _table([
        ("target", doc["target"]), ("started at", doc["started_at"]),
        ("target rate (req/s)", arr["target_rps"]), ("achieved rate (req/s)", arr["achieved_rps"]),
        ("arrival error (%)", arr["error_pct"]), ("dispatch lag p50 (ms)", arr["lag_ms"]["p50"]),
        ("dispatch lag p99 (ms)", arr["lag_ms"]["p99"]), ("dispatch lag max (ms)", arr["lag_ms"]["max"]),
        ("sent", req["sent"]), ("ok", req["ok"]), ("errors", req["errors"]),
        ("unfinished", req["unfinished"]), ("error rate", doc["error_rate"]),
        ("ok throughput (req/s)", doc["throughput"]["ok_rps"]),
        ("output tokens/s", doc["throughput"]["output_tokens_per_s"]),
    ])  # fmt: skip
    pct = ("p50", "p90", "p95", "p99", "mean", "max")
    lat_rows = "".join(
        f"<tr><th>{_esc(name)}</th>{''.join(f'<td>{_fmt(s.get(p))}</td>' for p in pct)}<td>{_fmt(s.get('count'))}</td></tr>"
        for name, s in [("latency", lat), ("TTFT", ttft)]
        + [(f"latency · {k}", v["latency_ms"]) for k, v in doc.get("by_kind", {}).items()]
    )
    lat_table = f"<table><tr><th></th>{''.join(f'<th>{p}</th>' for p in pct)}<th>n</th></tr>{lat_rows}</table>"
    errors = doc.get("errors") or {}
    err_table = _table(list(errors.items())) if errors else "<p>No errors.</p>"
    slo_rows = "".join(
        f'<tr class="{"ok" if c["passed"] else "bad"}"><th>{_esc(c["name"])}</th><td>{c["bound"]} {_fmt(c["threshold"])}</td>'
        f"<td>{_fmt(c['actual'])}</td><td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in slo["checks"]
    )
    slo_table = (f"<table><tr><th>objective</th><th>bound</th><th>actual</th><th></th></tr>{slo_rows}</table>"
                 if slo_rows else "<p>No objectives given (<code>--slo</code>).</p>")  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Interlock load test — {verdict}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}}
h1 span{{padding:.1em .5em;border-radius:4px;color:#fff;background:{"#059669" if verdict == "PASS" else "#dc2626"}}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} th,td{{border:1px solid #ddd;padding:.25em .6em;text-align:right}}
th{{background:#f6f6f6;text-align:left}} tr.bad td{{color:#dc2626;font-weight:600}}
svg{{width:100%;height:auto;font-size:11px;background:#fff;border:1px solid #eee}}
</style></head><body>
<h1>Load test <span>{verdict}</span></h1>
<h2>Summary</h2>{summary}
<h2>Service-level objectives</h2>{slo_table}
<h2>Latency (ms, from the actual send; dispatch lag above)</h2>{lat_table}
<h2>Latency over time</h2>{latency_over_time_svg(timeline)}
<h2>Throughput over time</h2>{throughput_svg(timeline, bucket or 1.0)}
<h2>Latency histogram</h2>{histogram_svg(doc.get("histogram") or {})}
<h2>Errors by type</h2>{err_table}
<h2>Configuration</h2><pre>{_esc(_pretty(doc.get("config", {})))}</pre>
</body></html>
"""


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
