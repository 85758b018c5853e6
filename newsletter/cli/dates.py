"""Date options that speak in the operator's terms: help shows ``YYYY-MM-DD``, not ``[%Y-%m-%d]``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

_SPELLED = {"%Y-%m-%d": "YYYY-MM-DD", "%Y-%m-%dT%H:%M": "YYYY-MM-DDTHH:MM", "%Y-%m-%dT%H:%M:%S": "YYYY-MM-DDTHH:MM:SS",
            "%Y-%m-%d %H:%M": "'YYYY-MM-DD HH:MM'"}


class Date(click.DateTime):
    """``click.DateTime`` whose metavar and error name the formats as people write them."""

    name = "date"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "YYYY-MM-DD" if len(self.formats) == 1 else "YYYY-MM-DD[THH:MM]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        for format_ in self.formats:
            try:
                return datetime.strptime(value, format_)
            except ValueError:
                continue
        expected = " or ".join(_SPELLED.get(f, f) for f in self.formats)
        self.fail(f"{value!r} is not a date; expected {expected}", param, ctx)


DAY = Date(["%Y-%m-%d"])
MOMENT = Date(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"])
