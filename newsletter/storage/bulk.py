"""A statement compiled once per database dialect and run as one DBAPI ``executemany``.

Why: the ledger writer runs two UPDATEs for every few messages a send delivers. Through SQLAlchemy each run
looked the statement up in the compiled cache, built every row's parameters (``construct_params``) and ran
each value through its type, three datetimes a row: about 25 µs a row, more than SQLite's own work on it.
Here the SQL text, the parameter order and the type's bind processors are taken from SQLAlchemy's own
compilation once; a run processes each value with those same processors (a value shared by every row, such
as the commit's time, once per run) and hands the rows to the driver in one ``executemany`` through
``Connection.exec_driver_sql``, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler


class BulkStatement:
    """One statement with named bind parameters, compiled for one dialect."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):  # pragma: no cover - a DML statement compiles to SQL
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        # By name, the parameter as compiled (typed by its column): ``bind_names`` also holds untyped originals.
        binds = {name: compiled.binds[name] for name in dict.fromkeys(compiled.bind_names.values())}
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ()) if self.positional else tuple(binds)
        self.required = frozenset(name for name, bind in binds.items() if bind.required)
        """Names every row (or the run's shared values) must give; the others are literals of the statement."""
        self._fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)  # the dialect's, as SQLAlchemy
            if processor is not None:
                self._processors[name] = processor
        for name, value in self._fixed.items():
            if name in self._processors:
                self._fixed[name] = self._processors[name](value)

    def parameters(self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any]) -> list[Any]:
        """The driver's parameters for these rows: tuples in order (positional) or dicts (named)."""
        processors = self._processors
        fixed = dict(self._fixed)
        for name, value in shared.items():
            fixed[name] = processors[name](value) if name in processors else value
        names = tuple(dict.fromkeys(self.order)) if not self.positional else self.order
        template = [fixed.get(name) for name in names]  # each row starts as a copy: fixed and shared values in place
        per_row = [(slot, name, processors.get(name)) for slot, name in enumerate(names) if name not in fixed]
        last: dict[str, tuple[Any, Any]] = {}  # per name, the last value processed and its result (rows share some)
        out: list[Any] = []
        for row in rows:
            values = template.copy()
            for slot, name, processor in per_row:
                value = row[name]
                if processor is not None and value is not None:
                    seen = last.get(name)
                    if seen is not None and seen[0] is value:
                        value = seen[1]
                    else:
                        processed = processor(value)
                        last[name] = (value, processed)
                        value = processed
                values[slot] = value
            out.append(tuple(values) if self.positional else dict(zip(names, values, strict=True)))
        return out

    def run(self, connection: sa.Connection, rows: Sequence[Mapping[str, Any]],
            shared: Mapping[str, Any] | None = None) -> int:
        """Run for every row (names → values; ``shared`` values are the same for all); returns the row count."""
        if not rows:
            return 0
        result = connection.exec_driver_sql(self.sql, self.parameters(rows, shared or {}))
        return int(result.rowcount or 0)


class BulkStatements:
    """``BulkStatement`` of one statement per dialect, compiled on first use."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, BulkStatement] = {}

    def for_dialect(self, dialect: Dialect) -> BulkStatement:
        key = f"{dialect.name}+{dialect.driver}"
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = BulkStatement(self.statement, dialect)
        return found
