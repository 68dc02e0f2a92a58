"""The live progress bar (rich): sent of planned, in flight, errors and the recent p95.

It is fed by the runner's ticker four times a second and never touches the hot path;
when stderr is not a terminal (CI) it prints nothing until the summary.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from interlock.loadtest.runner import Live
from interlock.loadtest.stats import percentile

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(self, planned: int, *, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self.enabled = enabled and console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]loadtest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.enabled,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task("run", total=planned, status="")

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._progress.__exit__(et, ev, tb)

    def update(self, live: Live) -> None:
        if not self.enabled:
            return
        recent = sorted(live.recent_ms[-500:])
        p95 = percentile(recent, 95)
        status = (f"in flight {live.in_flight} · errors {live.errors} · "
                  f"p95 {'-' if p95 is None else f'{p95:.1f} ms'}")  # fmt: skip
        self._progress.update(self._task, completed=live.done, status=status)
