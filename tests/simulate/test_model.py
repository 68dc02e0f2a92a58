"""The simulator's model, on traffic built in the test: what it must predict and why."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from interlock.capacity.traffic import Call
from interlock.settings import Settings, parse_settings
from interlock.simulate import SimOptions, demands_from_calls, fit_latency_models, predict, scaled
from interlock.simulate.routing import candidate_from_settings

PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def settings(**dep: Any) -> Settings:
    return parse_settings(
        {
            "providers": {"p": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
            "deployments": {
                "d": {"provider": "p", "model": "m", "price": PRICE, **dep},
                "spare": {"provider": "p", "model": "m2", "price": PRICE},
            },
            "models": {"chat": {"deployments": ["d"]}},
        }
    )


def calls(n: int = 120, rps: float = 2.0, hits_every: int = 0) -> list[Call]:
    """``n`` calls at ``rps``: 100 prompt tokens, 10–49 completion tokens, latency
    100 ms + 5 ms per completion token."""
    out = []
    for i in range(n):
        tokens = 10 + i % 40
        hit = bool(hits_every) and i % hits_every == 0
        out.append(
            Call(
                at=1_000_000.0 + i / rps,
                model="chat",
                deployment="d",
                endpoint="chat",
                stream=False,
                outcome="ok",
                status=200,
                prompt_tokens=100,
                completion_tokens=tokens,
                cached_tokens=0,
                cache="hit" if hit else "miss",
                cost_usd=Decimal(0),
                saved_usd=Decimal(0),
                latency_ms=2.0 if hit else 100 + 5 * tokens,
                ttft_ms=None,
            )
        )
    return out


def run(cfg: Settings, recorded: list[Call], **opts: Any) -> dict[str, Any]:
    demands, span = demands_from_calls(recorded)
    models, hit = fit_latency_models(recorded)
    return predict(demands, span, candidate_from_settings(cfg), models, hit, SimOptions(**opts))


def test_the_latency_model_recovers_time_to_first_token_and_decode_speed() -> None:
    models, _ = fit_latency_models(calls())
    assert abs(models["d"].base_ms - 100) < 1e-6 and abs(models["d"].per_token_ms - 5) < 1e-6


def test_cost_is_the_price_table_applied_to_the_recorded_tokens_exactly() -> None:
    recorded = calls()
    out = run(settings(), recorded, scale=1.0)
    expected = sum(
        Decimal(100) * 1 / 10**6 + Decimal(c.completion_tokens) * 2 / 10**6 for c in recorded
    )
    assert Decimal(out["cost_usd"]) == expected
    assert out["http_429"] == 0 and out["ok"] == 120


def test_ten_times_the_traffic_against_an_rpm_quota_queues_then_refuses() -> None:
    # 90 s at 2 req/s = 120 rpm recorded; a quota of 150 rpm holds at 1x and not at 10x.
    assert run(settings(rpm=150), calls(180), scale=1.0)["http_429"] == 0
    out = run(settings(rpm=150), calls(180), scale=10.0)
    assert out["requests"] == 1800 and out["errors"]["deployment_busy"] > 0
    assert out["deployments"]["d"]["peak_rpm"] <= 150
    assert out["deployments"]["d"]["quota_needed"]["rpm"] >= 1000  # what 10x would need


def test_a_fallback_takes_the_overflow_instead_of_refusing_it() -> None:
    data: dict[str, Any] = {
        "providers": {"p": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
        "deployments": {
            "d": {"provider": "p", "model": "m", "price": PRICE, "rpm": 150},
            "spare": {"provider": "p", "model": "m2", "price": PRICE},
        },
        "models": {
            "chat": {"deployments": ["d"], "fallbacks": [{"models": ["other"]}]},
            "other": {"deployments": ["spare"]},
        },
    }
    cfg = parse_settings(data)
    out = run(cfg, calls(), scale=10.0)
    assert out["http_429"] == 0 and out["deployments"]["spare"]["requests"] > 0


def test_turning_the_cache_off_costs_what_the_hits_saved() -> None:
    recorded = calls(hits_every=4)
    on = run(settings(), recorded, scale=1.0)
    off_cfg = settings().model_copy(
        update={"cache": settings().cache.model_copy(update={"enabled": False})}
    )
    off = run(off_cfg, recorded, scale=1.0)
    assert on["cache_hits"] == 30 and off["cache_hits"] == 0
    assert Decimal(off["cost_usd"]) - Decimal(on["cost_usd"]) == Decimal(on["cache_saved_usd"])


def test_scaling_superimposes_copies_and_keeps_the_span() -> None:
    demands, span = demands_from_calls(calls())
    assert len(scaled(demands, 2.5, span, seed=1)) in range(290, 311)
    assert all(0 <= d.at < span for d in scaled(demands, 3, span))


def test_replicas_are_sized_from_the_per_replica_capacity() -> None:
    # 2 req/s at 1 req/s per replica and 70 % target utilisation: 3 replicas; 10x: 29.
    assert (
        run(settings(), calls(), scale=1.0, replica_rps=1.0, stream_cost=1.0)["replicas_needed"]
        == 3
    )
    assert (
        run(settings(), calls(), scale=10.0, replica_rps=1.0, stream_cost=1.0)["replicas_needed"]
        == 29
    )
