"""Capacity planning from the ledger: what the recorded traffic asks of each deployment,
each provider quota and each gateway replica, and what it would ask at a multiple.

The ledger already holds everything a capacity review needs: one row per request with
its end time, latency and token counts. Little's law (in flight = arrival rate × time in
system) turns rates and latencies into concurrency, so no extra metric has to have been
scraped while the traffic happened.

- :mod:`.traffic`  ledger rows -> :class:`~.traffic.Call` (arrival time, tokens, latency)
- :mod:`.peaks`    per-minute counts: the observed peak minute, rpm and tpm
- :mod:`.report`   the ``interlock report capacity`` figures (pure)
"""

from interlock.capacity.peaks import MinuteLoad, peak_minute, per_minute
from interlock.capacity.report import CapacityParams, CapacityReport, capacity_report
from interlock.capacity.traffic import Call, calls_from_rows, read_calls

__all__ = [
    "Call",
    "CapacityParams",
    "CapacityReport",
    "MinuteLoad",
    "calls_from_rows",
    "capacity_report",
    "peak_minute",
    "per_minute",
    "read_calls",
]
