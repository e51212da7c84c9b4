"""One way to run the gallery's SQL on either backend: an SQLite file (sqlite3) or a
PostgreSQL server (psycopg 3).

The gallery's statements are written once, in the SQL both databases speak (``?``
placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``, ``CASE``); this adapter
gives them the driver's placeholders and offers the few table helpers the gallery
uses (insert returning the new id, update and delete by id, a table's columns).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@functools.lru_cache(maxsize=1024)
def _format_style(sql: str) -> str:
    """``?`` -> ``%s`` for psycopg. The gallery's SQL is static text with its values
    always bound, so it holds neither ``%`` nor a literal ``?``."""
    if "%" in sql:
        raise ValueError(f"a gallery statement cannot contain '%': {sql[:80]}")
    return sql.replace("?", "%s")


class Table:
    """The helpers the gallery uses on one table (ids are the ``id`` column)."""

    def __init__(self, db: Sql, name: str):
        self.db, self.name = db, name

    def insert(self, record: Mapping[str, object]) -> Inserted:
        columns = ", ".join(record)
        marks = ", ".join("?" * len(record))
        row = self.db.execute(f"INSERT INTO {self.name}({columns}) VALUES ({marks}) "
                              "RETURNING id", list(record.values())).fetchone()
        return Inserted(row[0])

    def insert_all(self, records: Iterable[Mapping[str, object]]) -> None:
        for record in records:
            columns = ", ".join(record)
            marks = ", ".join("?" * len(record))
            self.db.execute(f"INSERT INTO {self.name}({columns}) VALUES ({marks})",
                            list(record.values()))

    def update(self, pk: int, values: Mapping[str, object]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.db.execute(f"UPDATE {self.name} SET {assignments} WHERE id = ?",
                        [*values.values(), pk])

    def delete(self, pk: int) -> None:
        self.db.execute(f"DELETE FROM {self.name} WHERE id = ?", [pk])

    @property
    def columns_dict(self) -> dict[str, str]:
        return self.db.columns(self.name)


class Inserted:
    def __init__(self, pk: int):
        self.last_pk = pk


class Sql:
    """A connection of either backend, seen the same way by the gallery's code."""

    def __init__(self, conn, dialect: str):
        if dialect not in (SQLITE, POSTGRESQL):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence | None = None):
        if self.dialect == SQLITE:
            return self.conn.execute(sql, list(params or ()))
        # binary results: a million templates load without hex-decoding each blob
        return self.conn.execute(_format_style(sql), list(params or ()), binary=True)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        rows = [list(r) for r in rows]
        if not rows:
            return
        if self.dialect == SQLITE:
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(_format_style(sql), rows)

    def __getitem__(self, table: str) -> Table:
        return Table(self, table)

    def table_names(self) -> list[str]:
        if self.dialect == SQLITE:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY name")
        else:
            rows = self.execute("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = current_schema() ORDER BY table_name")
        return [r[0] for r in rows]

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> declared type."""
        if self.dialect == SQLITE:
            return {r[1]: r[2] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        rows = self.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = ? "
                            "ORDER BY ordinal_position", [table])
        return {r[0]: r[1] for r in rows}
