"""One prediction: the run under the candidate's limits, plus an unconstrained run that
says what provider quota the traffic would need for no request to wait or be refused.

Both runs draw from the same seed, so their difference is the limits' doing alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from interlock.simulate.demand import Demand, scaled
from interlock.simulate.engine import SimOptions, simulate
from interlock.simulate.routing import Candidate
from interlock.simulate.service import LatencyModel

__all__ = ["predict"]


def predict(
    demands: list[Demand],
    span_s: float,
    cand: Candidate,
    models: dict[str, LatencyModel],
    hit_model: LatencyModel,
    opts: SimOptions,
) -> dict[str, Any]:
    """The ``to_json`` of the constrained run at ``opts.scale``, each deployment with its
    ``quota_needed`` (peak rpm/tpm unconstrained) added."""
    traffic = scaled(demands, opts.scale, span_s, opts.seed)
    result = simulate(traffic, span_s, cand, models, hit_model, opts).to_json()
    free = simulate(traffic, span_s, cand, models, hit_model, replace(opts, unconstrained=True))
    for name, dep in free.deployments.items():
        row = result["deployments"].setdefault(name, {"requests": 0})
        row["quota_needed"] = {"rpm": dep["peak_rpm"], "tpm": dep["peak_tpm"]}
    return result
