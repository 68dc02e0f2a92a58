"""``interlock loadtest``: an open-loop load generator for any OpenAI-compatible URL.

Open loop means the send times are fixed before the run starts (constant, ramped or
Poisson arrivals) and every latency is measured from the *intended* send time. A slow
answer therefore cannot delay the next request and hide its own cost: the mistake a
closed-loop tool (N connections, send-wait-send) makes, known as coordinated omission.

Modules, one noun each:

- :mod:`.schedule`  arrival offsets (pure)
- :mod:`.workload`  what to send: a mix from a YAML/JSONL file or synthetic lengths
- :mod:`.target`    refuses URLs that are not loopback unless explicitly allowed
- :mod:`.runner`    the asyncio engine: dispatch at the intended times, record outcomes
- :mod:`.stats`     percentiles, timeline, histogram, the JSON result
- :mod:`.slo`       ``p95_ms=800``-style objectives and their verdict
- :mod:`.html`      the self-contained HTML report (inline SVG, no CDN)
- :mod:`.progress`  the live progress bar (rich)
"""

from interlock.loadtest.schedule import Schedule
from interlock.loadtest.slo import Slo, evaluate_slos, parse_slo
from interlock.loadtest.workload import Workload, load_workload, synthetic_workload

__all__ = [
    "Schedule",
    "Slo",
    "Workload",
    "evaluate_slos",
    "load_workload",
    "parse_slo",
    "synthetic_workload",
]
