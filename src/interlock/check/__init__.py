"""``interlock check``: the launch-readiness checklist as a command.

Each item is a pure function of the configuration (and, for some, a file or an HTTP
answer already fetched) returning a :class:`~interlock.check.findings.Finding`: pass,
warn or fail, what was seen, and how to fix it. The command prints them and exits
non-zero on any failure, so it can gate a CI pipeline.
"""

from interlock.check.findings import Finding, Status, worst

__all__ = ["Finding", "Status", "worst"]
