"""What accounting tells the rest of the world about each finished request.

:class:`RecordObserver` is the Accountant's ``on_finish`` hook. From the final ledger
record it updates the cost metrics (per model, and per key, user, team and feature with
capped labels), counts waste (streams cut short, reservations that outlived their hold),
and fills in the current request's :class:`RequestInfo` so its log line and span carry
the key id, deployment, cost and cache status without another lookup.
"""

from __future__ import annotations

from interlock.spend.cost import format_usd
from interlock.spend.ledger import LedgerRecord
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.requestinfo import current


class RecordObserver:
    def __init__(self, metrics: Metrics, hold_s: float) -> None:
        self._metrics = metrics
        self._hold_s = hold_s

    def __call__(self, rec: LedgerRecord, reservation_age_s: float | None) -> None:
        info = current()
        if info is not None:
            info.key_id, info.user, info.team = rec.key_id, rec.user_id, rec.team_id
            info.model, info.deployment, info.provider = rec.model, rec.deployment, rec.provider
            info.outcome, info.cache, info.stream = rec.outcome, rec.cache, rec.stream
            info.cost_usd = format_usd(rec.cost_usd)
            info.prompt_tokens, info.completion_tokens = rec.prompt_tokens, rec.completion_tokens
            info.attempts, info.fallback = rec.attempts, rec.fallback
        m = self._metrics
        if not m.enabled:
            return
        ok = rec.outcome == "ok"
        outcome = "ok" if ok else ("refused" if 400 <= rec.status < 500 else "error")
        m.observe_spend(
            model=rec.model or "-",
            deployment=rec.deployment or "-",
            cost_usd=float(rec.cost_usd),
            saved_usd=float(rec.saved_usd),
            prompt=rec.prompt_tokens,
            completion=rec.completion_tokens,
            outcome=outcome,
            # Request tags (x-interlock-tags, metadata.tags) are client-chosen: they stay
            # ledger dimensions; only the tags the operator declared on the key are labels.
            subjects=(
                ("key", rec.key_id),
                ("user", rec.user_id),
                ("team", rec.team_id),
                *(("feature", t) for t in rec.label_tags),
            ),
            tenant=f"team:{rec.team_id}" if rec.team_id else f"key:{rec.key_id}",
        )
        if not ok and rec.status < 400:
            m.wasted("partial_stream")  # charged for what was generated, but unfinished
        if reservation_age_s is not None and reservation_age_s > self._hold_s:
            m.wasted("expired_reservation")
