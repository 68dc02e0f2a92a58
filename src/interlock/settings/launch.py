"""Launch readiness and capacity planning (`interlock check`, `report capacity`, `simulate`)."""

from __future__ import annotations

from pydantic import Field

from interlock.settings.base import SettingsModel


class LaunchSettings(SettingsModel):
    """What ``interlock check`` (launch readiness) compares the deployment against."""

    peak_rps: float | None = Field(default=None, gt=0)  # the declared expected peak, requests/s
    peak_tpm: int | None = Field(default=None, ge=1)  # expected peak tokens per minute
    # alias -> its share of the peak (0..1); aliases left out are not quota-checked
    traffic_share: dict[str, float] = Field(default_factory=dict)
    loadtest_multiple: float = Field(default=2.0, ge=1)  # the load test must reach this × peak
    loadtest_report: str | None = None  # an `interlock loadtest --json` result
    loadtest_max_age_days: float = Field(default=7.0, gt=0)
    runbooks_dir: str = "docs/runbooks"
    # Capacity planning (`interlock report capacity`, `interlock simulate`): non-streaming
    # req/s one gateway replica sustains at 100 % of one core (docs/benchmarks.md: ~470 µs
    # of CPU per request), a stream's CPU in requests (917 / 470 µs), and the utilisation
    # replicas are sized for at the peak.
    replica_rps: float = Field(default=2100.0, gt=0)
    stream_cost: float = Field(default=1.95, ge=1)
    target_utilisation: float = Field(default=0.7, gt=0, le=1)
