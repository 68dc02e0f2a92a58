"""The graceful-degradation ladder: full → limited → cached → minimal, with hysteresis.

``evaluate`` is pure: signals and the time in, the next :class:`LadderState` out. The
level steps *down* (more degraded) as soon as a signal has stayed over a level's
threshold for ``down_after_s``; it steps back *up* one level at a time, and only after
every signal has stayed under ``recover_ratio`` × the current level's thresholds for
``up_after_s``. The asymmetry is deliberate: shedding load needs a sustained signal,
and each step up is taken on fresh evidence from the level below it.

The defaults (5 s down, 2 s of calm per level up, a 5 s measuring window in the
controller) bring a gateway from ``minimal`` back to ``full`` within about 11 s of the
last upstream failure (window + 3 levels x 2 s), from ``limited`` within about 7 s; the
``recover_ratio`` hysteresis, not a long wait, is what prevents flapping around a
threshold. Only upstream failures reach the signals at all (routing/ladder.py), so a
cause the gateway does not answer for (a Redis stall, a flood of bad requests) never
moves the level in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum


class Level(IntEnum):
    FULL = 0
    LIMITED = 1
    CACHED = 2
    MINIMAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown degradation level {text!r}") from None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Signal values at which each level is entered (None: this signal never triggers it)."""

    limited: float | None = None
    cached: float | None = None
    minimal: float | None = None

    def level_for(self, value: float) -> Level:
        for level, limit in (
            (Level.MINIMAL, self.minimal),
            (Level.CACHED, self.cached),
            (Level.LIMITED, self.limited),
        ):
            if limit is not None and value >= limit:
                return level
        return Level.FULL

    def of(self, level: Level) -> float | None:
        return {
            Level.LIMITED: self.limited,
            Level.CACHED: self.cached,
            Level.MINIMAL: self.minimal,
        }.get(level)


@dataclass(frozen=True, slots=True)
class LadderConfig:
    signals: dict[str, Thresholds] = field(
        default_factory=lambda: {
            "error_rate": Thresholds(limited=0.10, cached=0.30, minimal=0.60),
            "open_circuit_ratio": Thresholds(limited=0.34, cached=0.67, minimal=1.0),
            "queue_depth": Thresholds(limited=1_000, cached=10_000),
            "latency_ratio": Thresholds(limited=2.0, cached=5.0),
            "budget_burn": Thresholds(limited=1.2, cached=1.5),
        }
    )
    down_after_s: float = 5.0
    up_after_s: float = 2.0
    recover_ratio: float = 0.5


@dataclass(frozen=True, slots=True)
class LadderState:
    level: Level = Level.FULL
    forced: Level | None = None
    pending: Level | None = None  # a deeper level the signals ask for
    pending_since: float = 0.0
    calm_since: float | None = None  # since when signals allow one step up
    changed_at: float = 0.0
    reason: str = ""

    @property
    def effective(self) -> Level:
        return self.forced if self.forced is not None else self.level


def target(cfg: LadderConfig, signals: dict[str, float]) -> tuple[Level, str]:
    worst, why = Level.FULL, ""
    for name, value in signals.items():
        th = cfg.signals.get(name)
        if th is None:
            continue
        lvl = th.level_for(value)
        if lvl > worst:
            worst, why = lvl, f"{name}={value:g}"
    return worst, why


def _calm(cfg: LadderConfig, level: Level, signals: dict[str, float]) -> bool:
    for name, value in signals.items():
        th = cfg.signals.get(name)
        if th is None:
            continue
        # Every threshold at or below the current level must be comfortably clear.
        for lvl in Level:
            limit = th.of(lvl)
            if (
                Level.FULL < lvl <= level
                and limit is not None
                and value >= limit * cfg.recover_ratio
            ):
                return False
    return True


def evaluate(
    cfg: LadderConfig, st: LadderState, signals: dict[str, float], now: float
) -> LadderState:
    want, why = target(cfg, signals)
    if want > st.level:
        if st.pending is None or want > st.pending:
            st = replace(st, pending=want, pending_since=now, reason=why)
        if now - st.pending_since >= cfg.down_after_s:
            assert st.pending is not None
            return replace(
                st, level=st.pending, pending=None, calm_since=None, changed_at=now, reason=why
            )
        return replace(st, calm_since=None)
    st = replace(st, pending=None)
    if st.level == Level.FULL:
        return st
    if not _calm(cfg, st.level, signals):
        return replace(st, calm_since=None)
    if st.calm_since is None:
        return replace(st, calm_since=now)
    if now - st.calm_since >= cfg.up_after_s:
        return replace(
            st, level=Level(st.level - 1), calm_since=now, changed_at=now, reason="recovered"
        )
    return st


def force(st: LadderState, level: Level | None, now: float) -> LadderState:
    """Pin the level (operator override), or hand control back to the signals with None."""
    return replace(
        st, forced=level, changed_at=now, reason="forced" if level is not None else "auto"
    )
