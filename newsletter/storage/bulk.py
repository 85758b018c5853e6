"""Statements over many rows: one compiled once per database dialect and run as one DBAPI ``executemany``, and
an insert of many new rows as one statement on PostgreSQL (``insert_new_many``).

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
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from newsletter.storage import db


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


def insert_new_many(connection: sa.Connection, table: sa.Table, values: Sequence[Mapping[str, Any]]) -> int:
    """Insert many rows (all with the same keys), skipping those whose key exists; returns how many were added.

    On PostgreSQL one statement whatever the number of rows: each column that varies is one array parameter,
    ``INSERT … SELECT … FROM unnest(arrays) ON CONFLICT DO NOTHING``, and a value shared by every row (the
    edition, the time) one scalar. The portable form (``db.insert_new``: SQLAlchemy's multi-row VALUES, a
    thousand rows a statement) wrote a statement of 11,000 placeholders per thousand ledger rows, which psycopg
    parses in Python before sending it: at 100,000 readers that parsing was most of the ledger fill's time
    (docs/benchmarks.md). Elsewhere (SQLite) the portable form.
    """
    if not values:
        return 0
    if connection.dialect.name != "postgresql":
        return db.insert_new(connection, table, [dict(row) for row in values])
    first = values[0]
    names = list(first)
    shared = {name for name in names if all(row[name] == first[name] for row in values)}
    varying = [name for name in names if name not in shared]
    if not varying:  # one row, or every row the same: the portable form is as good
        return db.insert_new(connection, table, [dict(row) for row in values])
    arrays = [sa.bindparam(f"each_{name}", [row[name] for row in values], type_=postgresql.ARRAY(table.c[name].type))
              for name in varying]
    each = sa.func.unnest(*arrays).table_valued(*varying).render_derived(name="each")
    columns = [sa.bindparam(f"all_{name}", first[name], type_=table.c[name].type) if name in shared
               else each.c[name] for name in names]
    statement = postgresql.insert(table).from_select(names, sa.select(*columns)).on_conflict_do_nothing()
    return int(connection.execute(statement.execution_options(preserve_rowcount=True)).rowcount)
