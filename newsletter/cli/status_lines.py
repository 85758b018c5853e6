"""The scheduler part of `newsletter status`: is a `serve` running, what runs next, what ran."""

from __future__ import annotations

from typing import Any

from newsletter.cli.app import console
from newsletter.cli.output import term


def print_scheduler(view: dict[str, Any]) -> None:
    scheduler = view["scheduler"]
    if scheduler["running"]:
        pid = f", pid {scheduler['pid']}" if scheduler["pid"] is not None else ""
        since = f", since {scheduler['since']}" if scheduler["since"] else ""
        console.print(f"serve: running on {scheduler['host']}{pid}{since}", highlight=False, soft_wrap=True)
        console.print("next runs: " + (", ".join(f"{job} {when}" for job, when in view["schedule"].items())
                                       or "none"), highlight=False, soft_wrap=True)
    elif scheduler.get("stale_holder"):
        console.print(f"serve: not running ({term(scheduler['stale_holder'])} holds the scheduler lease but that "
                      "process is gone; the next `newsletter serve` takes it over at once); nothing is scheduled",
                      highlight=False, soft_wrap=True)
    else:
        console.print("serve: not running (no `newsletter serve` holds the scheduler lease); nothing is scheduled",
                      highlight=False, soft_wrap=True)
    if scheduler.get("lease_ahead_seconds"):
        console.print(f"[yellow]warning[/yellow]: the scheduler lease expires {scheduler['lease_ahead_seconds']} s "
                      "later than a renewal now would set: a clock ahead of this one wrote it (check NTP)",
                      highlight=False, soft_wrap=True)
    for run in view["runs"]:
        times = f" ({run['repeated']} times since {run['first_started']})" if run.get("repeated", 1) > 1 else ""
        console.print(f"  {run['started']} {term(run['job'])} \\[{term(run['status'])}] {term(run['summary'])}{times}",
                      highlight=False, soft_wrap=True)
    for edition in view.get("awaiting_approval", []):
        console.print(f"awaiting approval: {edition} (`newsletter edition show {edition}`, then "
                      f"`newsletter edition approve {edition}`)", highlight=False, soft_wrap=True)
