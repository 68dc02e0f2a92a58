"""The one backoff: bounds of both jitters and the Retry-After floor, for any input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from interlock.resilience.backoff import Backoff

delays = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
draws = st.floats(min_value=-1.0, max_value=2.0, allow_nan=False)  # clamped to [0, 1]


@given(delays, delays, st.integers(min_value=-5, max_value=10_000), draws)
def test_full_jitter_stays_within_zero_and_the_ceiling(base: float, top: float, n: int,
                                                       r: float) -> None:  # fmt: skip
    b = Backoff(base, top)
    assert 0.0 <= b.delay(n, lambda: r) <= b.ceiling(n) <= top


@given(delays, delays, st.integers(min_value=0, max_value=10_000), draws)
def test_equal_jitter_never_retries_sooner_than_half_the_ceiling(base: float, top: float,
                                                                 n: int, r: float) -> None:  # fmt: skip
    b = Backoff(base, top, jitter="equal")
    assert b.ceiling(n) / 2 <= b.delay(n, lambda: r) <= b.ceiling(n)


@given(delays, delays, st.integers(min_value=0, max_value=100), delays, delays)
def test_retry_after_is_a_floor_up_to_its_cap(base: float, top: float, n: int, after: float,
                                              cap: float) -> None:  # fmt: skip
    wait = Backoff(base, top).delay(n, lambda: 0.0, after, cap)
    assert wait == min(after, cap)


def test_exponential_and_capped() -> None:
    b = Backoff(0.5, 30.0)
    assert [b.ceiling(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert b.ceiling(10_000) == 30.0  # no float overflow
    assert Backoff(1.0, 8.0, jitter="equal").delay(2, lambda: 0.5) == 3.0


def test_backoff_has_one_home() -> None:
    """No other module doubles a delay by hand: they all use Backoff (resilience/backoff.py)."""
    import re
    from pathlib import Path

    import interlock

    doubling = re.compile(r"\b2(\.0)?\s*\*\*\s*\(?[a-z_]")  # 2**n for a variable n
    root = Path(interlock.__file__).parent
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path.name != "backoff.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if doubling.search(line.split("#")[0]) and '"""' not in line
    ]
    assert found == []
