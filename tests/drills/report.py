"""``python -m tests.drills.report``: the latest figures of each drill in
test-output/drills.json, as the Markdown table docs/reliability.md quotes."""

from __future__ import annotations

import json
import sys

from tests.drills.harness import DRILLS_JSON


def latest() -> dict[str, dict[str, object]]:
    try:
        runs = json.loads(DRILLS_JSON.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, object]] = {}
    for entry in runs if isinstance(runs, list) else []:
        out[str(entry.get("drill"))] = entry
    return out


def main() -> int:
    entries = latest()
    if not entries:
        print(f"no drill figures in {DRILLS_JSON}")
        return 0
    print(f"\nDrill figures ({DRILLS_JSON}; latest run of each drill)\n")
    print("| drill | passed | failed checks | commit | at | figures |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, e in sorted(entries.items()):
        figures = json.dumps(e.get("figures"), default=str).replace("|", "\\|")
        passed = "yes" if e.get("passed") else "**no**"
        checks = e.get("checks")
        failed = (
            ", ".join(k for k, ok in checks.items() if not ok) if isinstance(checks, dict) else ""
        )
        print(f"| {name} | {passed} | {failed} | {e.get('commit')} | {e.get('at')} | `{figures}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
