"""Arrival schedules are fixed in advance and bounded: they are what makes the test open-loop."""

from __future__ import annotations

import pytest

from interlock.loadtest.schedule import Schedule


def test_constant_rate_sends_evenly_spaced_requests_within_the_duration() -> None:
    offsets = list(Schedule(rate=100, duration_s=2).offsets())
    assert len(offsets) == 200 == Schedule(rate=100, duration_s=2).expected_count()
    assert offsets[0] == 0 and offsets[1] == pytest.approx(0.01)
    assert max(offsets) < 2


def test_a_request_count_stops_the_schedule_before_the_duration() -> None:
    s = Schedule(rate=1000, duration_s=60, requests=50)
    assert len(list(s.offsets())) == 50 == s.expected_count()


def test_a_ramp_follows_the_integral_of_the_rate() -> None:
    # 0 → 100 req/s over 10 s: 500 arrivals during the ramp, then 100/s for 5 s more.
    s = Schedule(rate=100, duration_s=15, ramp_s=10, start_rate=0)
    offsets = list(s.offsets())
    assert len(offsets) == pytest.approx(1000, abs=1) and s.expected_count() == len(offsets)
    assert sum(1 for t in offsets if t < 10) == pytest.approx(500, abs=1)
    assert sum(1 for t in offsets if t < 5) == pytest.approx(125, abs=1)  # a quarter of the area
    assert offsets == sorted(offsets)


def test_poisson_arrivals_average_the_rate_and_are_reproducible() -> None:
    s = Schedule(rate=200, duration_s=10, arrival="poisson", seed=3)
    offsets = list(s.offsets())
    assert len(offsets) == pytest.approx(2000, rel=0.05)
    assert offsets == list(Schedule(rate=200, duration_s=10, arrival="poisson", seed=3).offsets())


@pytest.mark.parametrize("kwargs", [{"rate": 0, "duration_s": 1}, {"rate": 10, "duration_s": 0},
                                    {"rate": 10, "duration_s": 1, "requests": 0}])  # fmt: skip
def test_unbounded_or_empty_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Schedule(**kwargs)  # type: ignore[arg-type]
