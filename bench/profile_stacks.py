"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) into top functions.

    python bench/profile_stacks.py bench/results/profile-nginx-plain.txt [--top 25]

Self time: samples whose innermost frame is the function. Total time: samples in which
the function appears anywhere on the stack (counted once per sample). Both are percent
of the samples py-spy took while the process was busy (idle samples are not recorded).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")

# Where a file belongs (py-spy names files by their import path: "aiohttp/client.py").
_AREAS = (
    ("interlock", "interlock"),
    ("aiohttp", "aiohttp (upstream client)"),
    ("uvicorn", "uvicorn (server)"),
    ("asyncio", "asyncio (incl. the uvloop C loop)"),
    ("prometheus_client", "prometheus_client"),
    ("sqlalchemy", "sqlalchemy"),
    ("aiosqlite", "aiosqlite"),
    ("pydantic", "pydantic"),
    ("yarl", "yarl"),
    ("multidict", "multidict"),
)


def _name(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    file = m.group("file")
    short = file.split("site-packages/")[-1].split("/src/")[-1]
    return f"{m.group('func')} ({short})", file


def _area(file: str) -> str:
    top = file.split("site-packages/")[-1].split("/src/")[-1].split("/", 1)[0]
    for package, area in _AREAS:
        if top == package:
            return area
    return f"other: {top}" if file else "native"


def summarise(path: Path, top: int = 20) -> dict[str, Any]:
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    area_c: Counter[str] = Counter()
    samples = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += n
        leaf, leaf_file = frames[-1]
        self_c[leaf] += n
        area_c[_area(leaf_file)] += n
        for name in {f for f, _ in frames}:
            total_c[name] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / samples, 1)) for k, v in c.most_common(top)] if samples else []

    return {
        "samples": samples,
        "self": pct(self_c),
        "total": pct(total_c),
        "areas_self": pct(area_c),
        "raw": str(path),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("raw", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    s = summarise(args.raw, args.top)
    print(f"{s.get('samples', 0)} samples")
    for key in ("areas_self", "self", "total"):
        print(f"\n{key}:")
        for name, pc in s.get(key, []):
            print(f"  {pc:5.1f}%  {name}")


if __name__ == "__main__":
    main()
