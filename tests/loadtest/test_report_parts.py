"""Objectives, percentiles, workloads and the target guard: the pure parts of a load test."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from interlock.loadtest.slo import evaluate_slos, parse_slo
from interlock.loadtest.stats import histogram, percentile
from interlock.loadtest.target import TargetRefused, api_base, check_target
from interlock.loadtest.workload import WorkloadError, load_workload, parse_length


def test_slo_names_are_checked_and_bounds_point_the_right_way() -> None:
    doc = {"latency_ms": {"p95": 700.0}, "error_rate": 0.02, "throughput": {"ok_rps": 99.0},
           "ttft_ms": {"p95": None}}  # fmt: skip
    verdict = evaluate_slos(doc, [parse_slo("p95_ms=800"), parse_slo("error_rate=0.01"),
                                  parse_slo("min_rps=95"), parse_slo("ttft_p95_ms=100")])  # fmt: skip
    passed = {c["name"]: c["passed"] for c in verdict["checks"]}
    # an objective nobody measured (no streams, so no TTFT) has not been met
    assert passed == {"p95_ms": True, "error_rate": False, "min_rps": True, "ttft_p95_ms": False}
    assert verdict["passed"] is False
    for bad in ("p95=800", "p95_ms", "p95_ms=fast"):
        with pytest.raises(ValueError):
            parse_slo(bad)


def test_percentiles_are_exact_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile(xs, 100) == 100
    assert percentile([], 50) is None


def test_histogram_counts_every_sample_once() -> None:
    values = [random.Random(1).lognormvariate(3, 1) for _ in range(1000)]
    h = histogram(values)
    assert sum(h["counts"]) == 1000 and len(h["edges_ms"]) == len(h["counts"]) + 1


def test_only_loopback_targets_unless_allowed() -> None:
    assert check_target("http://127.0.0.1:8080") == "127.0.0.1"
    assert check_target("http://localhost:8080/v1") == "localhost"
    with pytest.raises(TargetRefused, match=r"--allow-host 10\.1\.2\.3"):
        check_target("http://10.1.2.3:8080")
    assert check_target("http://10.1.2.3:8080", ["10.1.2.3"]) == "10.1.2.3"
    with pytest.raises(TargetRefused):
        check_target("ftp://127.0.0.1/")
    assert (
        api_base("http://h:1") == "http://h:1/v1" and api_base("http://h:1/v1/") == "http://h:1/v1"
    )


def test_length_distributions() -> None:
    rng = random.Random(0)
    assert parse_length(200).sample(rng) == 200
    uniform = parse_length("uniform:10:20")
    assert all(10 <= uniform.sample(rng) <= 20 for _ in range(100))
    lognormal = parse_length({"dist": "lognormal", "mean": 200, "sigma": 0.5})
    mean = sum(lognormal.sample(rng) for _ in range(5000)) / 5000
    assert mean == pytest.approx(200, rel=0.05)  # the mean, not the median, is 200
    for bad in ("uniform:20:10", "zipf:1:2", -3, {"dist": "normal", "mean": 1}):
        with pytest.raises(WorkloadError):
            parse_length(bad)


def test_yaml_mix_draws_kinds_by_weight(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(
        "model: chat\nseed: 4\nmix:\n"
        "  - {kind: chat, weight: 3, prompt_tokens: 'uniform:5:10', max_tokens: 8}\n"
        "  - {kind: stream, weight: 1, params: {temperature: 0.5}}\n"
        "  - {kind: embeddings, model: embed, weight: 1, input_tokens: 4}\n"
    )
    wl = load_workload(path)
    reqs = [wl.request(i) for i in range(1000)]
    kinds = {k: sum(1 for r in reqs if r.kind == k) for k in ("chat", "stream", "embeddings")}
    assert kinds["chat"] == pytest.approx(600, abs=60) and kinds["embeddings"] == pytest.approx(
        200, abs=50
    )
    stream = orjson.loads(next(r for r in reqs if r.kind == "stream").body)
    assert stream["stream"] is True and stream["temperature"] == 0.5 and stream["model"] == "chat"
    embed = next(r for r in reqs if r.kind == "embeddings")
    assert embed.path == "/embeddings" and orjson.loads(embed.body)["model"] == "embed"
    # prompts are unique per request, so a cache cannot answer the load test
    prompts = [
        orjson.loads(r.body)["messages"][0]["content"] for r in reqs if r.kind != "embeddings"
    ]
    assert len(set(prompts)) == len(prompts)


def test_jsonl_replays_recorded_bodies_in_order(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text('{"model": "a", "messages": [{"role": "user", "content": "x"}]}\n'
                    '{"kind": "embeddings", "body": {"model": "e", "input": "y"}}\n')  # fmt: skip
    wl = load_workload(path)
    assert [wl.request(i).kind for i in range(4)] == ["chat", "embeddings", "chat", "embeddings"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("mix:\n  - {kind: video}\n")
    with pytest.raises(WorkloadError, match=r"mix\[0\]\.kind"):
        load_workload(bad)
