"""The one rule for shared state: only failures that blame the upstream feed the ladder.

The error tree decides (``InterlockError.blames_upstream``); the degradation controller
counts a routed request's failure only when its error says so, and does not count the
others at all (neither as failures nor as successes, so a flood of bad requests cannot
dilute a real upstream error rate either).
"""

from __future__ import annotations

import inspect

import pytest
from prometheus_client import CollectorRegistry

import interlock.errors as errors
from interlock.errors import (
    DeadlineExceeded,
    Degraded,
    InterlockError,
    RateLimited,
    ServiceUnavailable,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from interlock.routing.health import DeploymentHealth
from interlock.routing.ladder import DegradationController
from interlock.settings import DegradationSettings, Settings
from interlock.state.local import LocalState
from interlock.telemetry.metrics import Metrics

UPSTREAM_FAULTS = {UpstreamError, UpstreamRateLimited, UpstreamUnavailable, UpstreamProtocolError, UpstreamTimeout}  # fmt: skip


def test_only_upstream_faults_blame_the_upstream() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, InterlockError)
    ]
    assert len(classes) > 15
    blamed = {c for c in classes if c.blames_upstream}
    assert blamed == UPSTREAM_FAULTS
    assert not DeadlineExceeded.blames_upstream and not DeadlineExceeded("x").retryable
    assert not UpstreamBadRequest.blames_upstream


@pytest.mark.parametrize(
    "err",
    [
        InterlockError("internal error"),  # a 500 is our bug, not a reason to degrade others
        ServiceUnavailable("redis stalled", code="budget_state_unavailable"),
        ServiceUnavailable("key store down", code="auth_unavailable"),
        ServiceUnavailable("draining", code="draining"),
        Degraded("degraded"),
        ServiceUnavailable("open", code="circuit_open"),
        RateLimited("slow down"),
        RateLimited("over budget", code="budget_exceeded", status=429),
        DeadlineExceeded("the client's own deadline"),
        UpstreamBadRequest("the provider judged the input"),
    ],
)
def test_refusals_and_client_faults_are_not_outcomes(err: InterlockError) -> None:
    ladder = _ladder()
    for _ in range(50):
        ladder.failed(err)
    for _ in range(10):
        ladder.served(0.1)
    signals = ladder.measure(ladder_clock[0])
    assert signals["error_rate"] == 0.0  # 10 served, nothing counted against them


def test_upstream_failures_count_and_successes_dilute() -> None:
    ladder = _ladder()
    for _ in range(30):
        ladder.failed(UpstreamUnavailable("provider 502"))
    for _ in range(10):
        ladder.failed(UpstreamTimeout("hung"))
    for _ in range(60):
        ladder.served(0.2)
    assert ladder.measure(ladder_clock[0])["error_rate"] == pytest.approx(0.4)


def test_cooling_down_refusal_blames_nobody() -> None:
    """The executor's own 'every deployment is cooling down' uses the upstream 429 class
    but clears the flag: a consequence of failures already counted."""
    err = UpstreamRateLimited("every deployment asked to slow down", code="rate_limited")
    err.blames_upstream = False
    ladder = _ladder()
    for _ in range(30):
        ladder.failed(err)
    assert "error_rate" not in ladder.measure(ladder_clock[0])  # no outcomes at all


def test_latency_signal_is_upstream_latency_of_successes() -> None:
    ladder = _ladder(latency_slo_s=1.0)
    for _ in range(19):
        ladder.served(0.5)
    ladder.served(3.0)
    for _ in range(40):
        ladder.failed(UpstreamTimeout("hung"))  # no latency sample: the error rate has it
    signals = ladder.measure(ladder_clock[0])
    assert signals["latency_ratio"] == pytest.approx(3.0)
    assert signals["error_rate"] == pytest.approx(40 / 60)


ladder_clock = [1000.0]


def _ladder(**overrides: float) -> DegradationController:
    cfg = DegradationSettings(min_requests=5, **overrides)  # type: ignore[arg-type]
    shared = LocalState()
    metrics = Metrics(CollectorRegistry(), enabled=False)
    health = DeploymentHealth(Settings(), {}, shared, metrics)
    return DegradationController(cfg, health, shared, metrics, clock=lambda: ladder_clock[0])


def test_ladder_window_defaults_recover_within_seconds() -> None:
    cfg = DegradationSettings()
    assert cfg.window_s + 3 * cfg.up_after_s <= 11.0
