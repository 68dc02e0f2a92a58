"""``interlock simulate``: what recorded (or synthetic) traffic would do at N× against a
candidate configuration, before that configuration or that load exists.

A discrete-event model, not a live replay: arrivals × gateway CPU × rate limits ×
deployment quotas × service times × cache hits, in virtual time. It is deterministic
(seeded), runs a day of traffic in seconds, and can be run twice to compare two
configurations. Each deployment becomes a simulated provider with its real price (the
candidate's price table and overrides), its latency fitted from the ledger, and its
``rpm``/``tpm``/``max_concurrency`` from the candidate configuration. The model is
validated against a real load test at 1× by ``bench/simulate_validation.py``.

- :mod:`.demand`   ledger calls or a synthetic profile -> arrivals; scaling by N
- :mod:`.service`  per-deployment latency models fitted from the ledger
- :mod:`.routing`  the candidate's routes, prices, limits and budgets, as plain data
- :mod:`.engine`   the event loop in virtual time
- :mod:`.outcome`  percentiles, per-day money, peaks; the JSON result and comparisons
- :mod:`.predict`  a run under the limits plus an unconstrained one (quota needed)
"""

from interlock.simulate.demand import Demand, demands_from_calls, scaled, synthetic
from interlock.simulate.engine import SimOptions, simulate
from interlock.simulate.outcome import SimResult, compare
from interlock.simulate.predict import predict
from interlock.simulate.service import LatencyModel, fit_latency_models

__all__ = [
    "Demand",
    "LatencyModel",
    "SimOptions",
    "SimResult",
    "compare",
    "demands_from_calls",
    "fit_latency_models",
    "predict",
    "scaled",
    "simulate",
    "synthetic",
]
