"""A progress bar for long bulk commands, drawn on standard error and only when it is a terminal.

Standard output stays the command's result (an export, a report, JSON) whatever the bar does, and a pipe or a
log file never receives the bar's redraws.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None] | None]:
    """A callback ``(done, total)`` that moves a bar on a terminal's standard error; None when ``quiet`` or when
    standard error is not a terminal (the library then reports no progress at all)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True,
                   redirect_stdout=False, redirect_stderr=False)  # stdout is the command's output, never the bar's
    task = bar.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield advance
