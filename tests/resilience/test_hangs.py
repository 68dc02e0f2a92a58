"""Hung and slow providers: fail over within the first-byte timeout, a breaker that judges
calls by when they started, and slow-but-working deployments routed around.

Pure parts (breaker, route ordering, default timeouts) run with a fake clock; the rest
against real gateway processes and the simulator's faults (``timeout``: the provider
never answers; ``latency``: it answers late). The default-settings figures (p50/p99 with
a hung primary) are a drill.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.providers.registry import build_deployments
from interlock.resilience.breaker import BreakerConfig, BreakerState, CircuitState, allow, record
from interlock.routing.attempts import auto_first_byte_s
from interlock.routing.health import PROBE_EVERY_S, DeploymentHealth
from interlock.settings import parse_settings
from interlock.sim import SimControl
from interlock.state.local import LocalState
from interlock.telemetry.metrics import Metrics
from interlock.types import Endpoint, GatewayRequest
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import SIM_KEY, GatewayProcess

# -- the breaker judges a call by when it started ----------------------------------------

CFG = BreakerConfig()  # the defaults: window 30 s, 10 calls, 50 %, 5 in a row


def test_late_timeouts_after_recovery_do_not_open_the_breaker() -> None:
    """The provider hangs for 30 s, then works. Calls sent during the hang time out 60 s
    later — long after the recovery — interleaved with the successes of newer calls."""
    events: list[tuple[float, bool, float]] = []  # (result time, ok, duration)
    for start in range(30):  # one call a second into the hang: each times out at +60 s
        events.append((start + 60.0, False, 60.0))
    for i in range(120):  # after the recovery: answered in 0.2 s
        start = 30.0 + i * 0.5
        events.append((start + 0.2, True, 0.2))
    st = BreakerState()
    for at, ok, duration in sorted(events):
        _, st = allow(CFG, st, at - duration)
        st = record(CFG, st, at, ok=ok, duration_s=duration)
        assert st.state is CircuitState.CLOSED, at


def test_the_same_timeouts_without_a_recovery_open_it() -> None:
    """The control: with no newer call getting through, those timeouts do trip it."""
    st = BreakerState()
    for start in range(30):
        st = record(CFG, st, start + 60.0, ok=False, duration_s=60.0)
        if st.state is CircuitState.OPEN:
            break
    assert st.state is CircuitState.OPEN and start == CFG.consecutive_failures - 1


def test_half_open_judges_only_its_probes() -> None:
    st = BreakerState()
    for t in range(5):
        st = record(CFG, st, float(t), ok=False, duration_s=0.1)
    assert st.state is CircuitState.OPEN
    ok, st = allow(CFG, st, st.open_until)  # half-open, one probe admitted
    assert ok and st.state is CircuitState.HALF_OPEN
    # A call sent before the trip times out now: not a probe, changes nothing.
    st = record(CFG, st, st.half_open_at + 1, ok=False, duration_s=20.0)
    assert st.state is CircuitState.HALF_OPEN
    st = record(CFG, st, st.half_open_at + 1.5, ok=True, duration_s=0.5)  # the probe
    assert st.state is CircuitState.CLOSED
    # ...and a late failure of a call older than the probe does not reopen it.
    st = record(CFG, st, st.last_ok_started + 3, ok=False, duration_s=30.0)
    assert st.state is CircuitState.CLOSED and st.consecutive == 0


def test_a_long_stream_ending_does_not_hide_fresh_failures() -> None:
    st = BreakerState()
    for t in range(4):
        st = record(CFG, st, 100.0 + t, ok=False, duration_s=0.05)
    # A stream started at t=0 ends well: it is older news than those failures.
    st = record(CFG, st, 104.5, ok=True, duration_s=104.5)
    assert st.consecutive == 4
    st = record(CFG, st, 105.0, ok=False, duration_s=0.05)
    assert st.state is CircuitState.OPEN


# -- route ordering: slow deployments go last ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(clock: Clock) -> tuple[DeploymentHealth, list[Any]]:
    settings = parse_settings(
        {
            "providers": {"p": {"kind": "openai_compatible", "base_url": "http://x/v1"}},
            "deployments": {"A": {"provider": "p", "model": "a"}, "B": {"provider": "p", "model": "b"}},
            "models": {"ab": {"deployments": ["A", "B"]}},
        }
    )  # fmt: skip
    deps = build_deployments(settings)
    health = DeploymentHealth(settings, deps, LocalState(), Metrics(enabled=False), clock=clock)
    return health, [deps["A"], deps["B"]]


def _call(health: DeploymentHealth, clock: Clock, name: str, seconds: float) -> None:
    assert health.acquire(name)
    clock.now += seconds
    health.release(name, ok=True, duration_s=seconds, counts_as_failure=False)


def names(deps: list[Any]) -> list[str]:
    return [d.name for d in deps]


def test_a_hung_deployment_goes_last_before_any_timeout() -> None:
    clock = Clock()
    health, ab = _health(clock)
    _call(health, clock, "A", 0.1)
    _call(health, clock, "B", 0.1)
    assert health.acquire("A")  # hangs
    clock.now += 0.9
    assert names(health.route_around_slow(ab)) == ["A", "B"]  # 0.9 s: not yet
    clock.now += 0.5
    assert names(health.route_around_slow(ab)) == ["B", "A"]  # 1.4 s > 0.1 + 1 s
    assert health.describe("A")["routed_around_as_slow"] is True


def test_a_hung_deployment_with_nothing_to_compare() -> None:
    clock = Clock()
    health, ab = _health(clock)  # fresh: no latency known anywhere
    assert health.acquire("A")
    clock.now += 0.9
    assert names(health.route_around_slow(ab)) == ["A", "B"]
    clock.now += 0.2  # silent for over a second: the unmeasured peer is tried once
    assert names(health.route_around_slow(ab)) == ["B", "A"]
    _call(health, clock, "B", 0.1)  # it answers in 0.1 s: A, silent for 1.2 s, goes last
    assert names(health.route_around_slow(ab)) == ["B", "A"]
    assert health.describe("A")["routed_around_as_slow"] is True


def test_silent_for_two_seconds_is_slow_even_with_nothing_to_compare() -> None:
    clock = Clock()
    health, ab = _health(clock)  # fresh: no history anywhere
    assert health.acquire("A")
    assert health.acquire("B")  # both silent
    clock.now += 1.5
    health.route_around_slow(ab)
    assert health.describe("A")["routed_around_as_slow"] is False  # 1.5 s vs B's 1.5 s
    # B says 429: no latency sample, nothing waits on it: nothing to compare A with.
    health.release("B", ok=False, duration_s=1.5, counts_as_failure=False, retry_after_s=5)
    clock.now += 0.6
    health.route_around_slow(ab)
    assert health.describe("A")["routed_around_as_slow"] is True  # 2.1 s, nothing to compare


def test_slow_but_working_is_routed_around_with_hysteresis_and_probes() -> None:
    clock = Clock()
    health, ab = _health(clock)
    _call(health, clock, "B", 0.2)
    for _ in range(3):
        _call(health, clock, "A", 2.0)
    assert names(health.route_around_slow(ab)) == ["B", "A"]  # 2 s > max(3 x 0.2, 1.2)
    clock.now += 1
    _call(health, clock, "B", 0.2)
    assert names(health.route_around_slow(ab)) == ["B", "A"]
    clock.now += PROBE_EVERY_S
    assert names(health.route_around_slow(ab)) == ["A", "B"]  # one probe
    assert names(health.route_around_slow(ab)) == ["B", "A"]  # (only one)
    # The probe's sample replaces the stale estimate. Faster, but 0.8 s is still above
    # the way back (max(2 x 0.2, 0.2 + 0.5)): hysteresis, no flapping.
    _call(health, clock, "A", 0.8)
    assert names(health.route_around_slow(ab)) == ["B", "A"]
    clock.now += PROBE_EVERY_S
    _call(health, clock, "B", 0.2)
    assert names(health.route_around_slow(ab)) == ["A", "B"]  # probe
    _call(health, clock, "A", 0.3)
    assert names(health.route_around_slow(ab)) == ["A", "B"]  # recovered: order restored
    assert health.describe("A")["routed_around_as_slow"] is False


def test_an_unmeasured_peer_is_tried_when_the_primary_is_slow() -> None:
    clock = Clock()
    health, ab = _health(clock)
    _call(health, clock, "A", 0.5)
    assert names(health.route_around_slow(ab)) == ["A", "B"]  # 0.5 s: fine, no probing
    for _ in range(5):
        _call(health, clock, "A", 3.0)
    assert names(health.route_around_slow(ab)) == ["B", "A"]  # B measured once
    _call(health, clock, "B", 0.2)
    assert names(health.route_around_slow(ab)) == ["B", "A"]  # and now A is the slow one


# -- default first-byte timeouts per kind ---------------------------------------------------


def test_default_first_byte_by_kind() -> None:
    settings = parse_settings(
        {
            "providers": {"p": {"kind": "openai_compatible", "base_url": "http://x/v1"}},
            "deployments": {
                "chat": {"provider": "p", "model": "c"},
                "emb": {"provider": "p", "model": "e", "kind": "embeddings"},
                "fixed": {"provider": "p", "model": "c", "timeouts": {"first_byte_s": 42}},
            },
        }
    )
    deps = build_deployments(settings)

    def req(**body: Any) -> GatewayRequest:
        return GatewayRequest(Endpoint.CHAT, "m", {"messages": MSG, **body}, b"")

    assert auto_first_byte_s(deps["chat"], req(), stream=True) == 15.0
    assert auto_first_byte_s(deps["emb"], req(), stream=False) == 10.0
    assert auto_first_byte_s(deps["chat"], req(max_tokens=350), stream=False) == 20.0
    assert auto_first_byte_s(deps["chat"], req(), stream=False) == pytest.approx(10 + 4096 / 35)
    assert deps["fixed"].timeouts.first_byte_s == 42


# -- real gateways, the simulated provider ---------------------------------------------------


def _chat(gw: GatewayProcess, client: httpx.Client, stream: bool = False) -> tuple[int, str, float]:
    t = time.monotonic()
    body = {"model": "ab", "messages": MSG, "max_tokens": 8, "stream": stream}
    r = client.post(f"{gw.url}/v1/chat/completions", json=body, headers=ADMIN)
    if stream:
        assert "data: [DONE]" in r.text
    return r.status_code, r.headers.get("x-interlock-deployment", ""), time.monotonic() - t


def _deployment(gw: GatewayProcess, name: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/admin/deployments", headers=ADMIN)
    return next(d for d in r.json()["data"] if d["deployment"] == name)


def _hang_config(sim_url: str, state_dir: Path, first_byte_s: float | None) -> dict[str, Any]:
    cfg = ab_config(
        sim_url,
        state_dir,
        # No retry budget refill at all: the failover of a hung attempt must not need it.
        resilience={"retry_budget": {"ratio": 0.0, "min_per_s": 0.0}},
    )
    timeouts = {} if first_byte_s is None else {"first_byte_s": first_byte_s}
    cfg["deployments"] = {
        "A": {"provider": "sim", "model": "sim-a", "timeouts": timeouts},
        "B": {"provider": "sim", "model": "sim-b", "timeouts": timeouts},
    }
    return cfg


@pytest.mark.parametrize("stream", [False, pytest.param(True, marks=pytest.mark.drill)])
def test_hung_primary_fails_over_within_the_first_byte_timeout(
    sim_url: str, sim: SimControl, tmp_path: Path,
    start_gateway: Callable[..., GatewayProcess], stream: bool,
) -> None:  # fmt: skip
    gw = start_gateway(_hang_config(sim_url, tmp_path / "s", first_byte_s=1.5))
    with httpx.Client(timeout=30) as client:
        assert _chat(gw, client)[:2] == (200, "A")
        sim.set_faults([{"type": "timeout", "match": {"model": "sim-a"}}])
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: _chat(gw, client, stream), range(40)))
        assert all(status == 200 for status, _, _ in results), results
        # Bounded by the first-byte timeout (plus the secondary's answer)...
        assert max(s for _, _, s in results) < 1.5 + 1.0, results
        # ...and paid only until the primary is seen hanging: then it goes last.
        assert sum(1 for _, dep, _ in results if dep == "B") == 40
        assert statistics.median(s for _, _, s in results) < 0.5, results
        assert _deployment(gw, "A")["routed_around_as_slow"] is True
        # The provider recovers: its next probe (within PROBE_EVERY_S) brings it back,
        # and the timeouts still landing from the hang do not open its breaker.
        sim.set_faults([])
        deadline = time.monotonic() + PROBE_EVERY_S + 5
        while _chat(gw, client, stream)[1] != "A":
            assert time.monotonic() < deadline, _deployment(gw, "A")
            time.sleep(0.2)
        served = [_chat(gw, client, stream)[1] for _ in range(10)]
    assert served == ["A"] * 10
    assert _deployment(gw, "A")["circuit"] == "closed"


def test_slow_but_working_primary_is_routed_around(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    gw = start_gateway(_hang_config(sim_url, tmp_path / "s", first_byte_s=None))
    sim.set_faults([{"type": "latency", "ms": 1300, "match": {"model": "sim-a"}}])
    with httpx.Client(timeout=30) as client:
        first = [_chat(gw, client) for _ in range(3)]
        assert [dep for _, dep, _ in first][:1] == ["A"]  # priority: the primary first
        later = [_chat(gw, client) for _ in range(20)]
    # The secondary was measured once and the primary went last: no request after that
    # waits for it except a probe every PROBE_EVERY_S.
    assert all(status == 200 for status, _, _ in first + later)
    assert sum(1 for _, dep, _ in later if dep == "B") >= 18, later
    assert _deployment(gw, "A")["routed_around_as_slow"] is True


@pytest.mark.drill
@pytest.mark.timeout(300)
def test_hung_primary_with_default_settings_figures(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    """Default timeouts, a primary that never answers and a healthy secondary: 20 s of
    traffic from 8 clients (a request each, then 0.1 s of think time). Prints p50/p99 and
    how many requests waited out the first-byte timeout (the first wave, then probes)."""
    cfg = ab_config(sim_url, tmp_path / "s")
    cfg["deployments"] = {
        "A": {"provider": "sim", "model": "sim-a"},
        "B": {"provider": "sim", "model": "sim-b"},
    }
    gw = start_gateway(cfg)
    sim.set_faults([{"type": "timeout", "match": {"model": "sim-a"}}])
    stop = time.monotonic() + 20

    def client_loop(_: int) -> list[tuple[int, str, float]]:
        out = []
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop:
                out.append(_chat(gw, client))
                time.sleep(0.1)
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for chunk in pool.map(client_loop, range(8)) for r in chunk]
    seconds = sorted(s for _, _, s in results)
    p50 = seconds[len(seconds) // 2]
    p99 = seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))]
    waited = sum(1 for s in seconds if s > 1.0)
    print(f"hung primary, defaults: {len(results)} requests, p50 {p50:.3f}s, p99 {p99:.3f}s, "
          f"max {seconds[-1]:.3f}s, waited out the timeout: {waited}, "
          f"statuses {sorted({s for s, _, _ in results})}")  # fmt: skip
    assert all(status == 200 for status, _, _ in results)
    assert p50 < 0.5
    # Only the first wave (and a probe every PROBE_EVERY_S) waits out the timeout.
    first_byte = auto_first_byte_s_for_body({"max_tokens": 8})
    assert seconds[-1] < first_byte + 2


def auto_first_byte_s_for_body(body: dict[str, Any]) -> float:
    settings = parse_settings(
        {"providers": {"p": {"kind": "openai_compatible", "base_url": "http://x/v1", "api_key": SIM_KEY}},
         "deployments": {"d": {"provider": "p", "model": "m"}}}
    )  # fmt: skip
    dep = build_deployments(settings)["d"]
    return auto_first_byte_s(dep, GatewayRequest(Endpoint.CHAT, "m", body, b""), stream=False)
