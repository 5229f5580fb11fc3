"""The table a postgres sink writes: made when missing, kept in step with the config, described.

Layout: headrace's own columns ``_event_id text``, ``_received_at timestamptz`` and
``_created_at timestamptz DEFAULT now()``, the declared ``columns`` (or whatever the ``ddl`` file
makes), the ``derived`` timestamptz columns, and ``_extra jsonb`` for ``keep_json``.

Indexes: a unique index on ``dedupe_key`` and, unless that index already skips a redelivered
event, a unique index on ``_event_id``. The key index alone suffices when headrace made the
table from ``columns`` (so every key value comes from the event: no defaults, no triggers),
``on_conflict`` is ``nothing`` and the index is ``NULLS NOT DISTINCT`` (PostgreSQL 15+): a
redelivered event has the same key values, missing ones included. One index fewer is the
cheapest write there is, and identical rows with a NULL in the key are stored once, which is
what "identical" means to a reader.

Indexes are found by what they index (``pg_index``), never by name: names are per schema and cut
at 63 bytes, so two tables could claim one. A new index's name carries a hash of schema, table
and columns. Columns are added only when missing (``ALTER TABLE`` locks the table, even for a
column that exists).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from headrace.errors import TerminalSinkError
from headrace.sinks.postgres.config import PostgresConfig

SYSTEM_TYPES = {"_event_id": "text", "_received_at": "timestamp with time zone"}
"""headrace's columns whose values it writes, with the types it writes them as."""


class PostgresTable:
    """The sink's table; ``ensure`` makes it ready and learns its column types."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.types: dict[str, str] = {}
        """Every column's type as ``regtype`` names it (``bigint``, ``character varying``…)."""

    @property
    def user_columns(self) -> dict[str, str]:
        """The columns events fill (all but headrace's own), with their types."""
        return {n: t for n, t in self.types.items() if not n.startswith("_")}

    def ident(self) -> Any:
        from psycopg import sql

        return sql.Identifier(self.config.schema_name, self.config.table)

    def read_types(self, conn: Any) -> dict[str, str]:
        """The table's columns and their types now (empty if there is no table)."""
        rows = conn.execute(
            "SELECT attname, atttypid::regtype::text FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (self.ident().as_string(conn),),
        ).fetchall()
        return dict(rows)

    def ensure(self, conn: Any) -> None:
        """Create the schema and table if missing, add columns declared since, make the
        indexes, and learn the column types."""
        from psycopg import sql

        config = self.config
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(config.schema_name))
            )
            types = self.read_types(conn)
            if not types:
                self._create(conn)
                types = self.read_types(conn)
            wanted = {
                "_event_id": "text",
                "_received_at": "timestamptz",
                "_created_at": "timestamptz NOT NULL DEFAULT now()",
                **config.columns,
                **dict.fromkeys(config.derived, "timestamptz"),
            }
            if config.unknown_fields == "keep_json":
                wanted["_extra"] = "jsonb"
            added = {n: t for n, t in wanted.items() if n not in types}
            if added:
                self.add_columns(conn, added)
                types = self.read_types(conn)
            for name, kind in SYSTEM_TYPES.items():
                if types[name] != kind:
                    raise TerminalSinkError(
                        "bad_config",
                        f'column "{name}" of {config.schema_name}.{config.table} is '
                        f"{types[name]}; headrace keeps {kind} there",
                    )
            missing = [k for k in config.dedupe_key if k not in types]
            if missing:
                raise TerminalSinkError(
                    "bad_config",
                    f"dedupe_key names columns the table has not: {', '.join(missing)}",
                )
            self._ensure_indexes(conn)
        self.types = types

    def _create(self, conn: Any) -> None:
        from psycopg import sql

        config = self.config
        if config.ddl is None:
            columns = [
                sql.SQL("_event_id text NOT NULL"),
                sql.SQL("_received_at timestamptz NOT NULL"),
                sql.SQL("_created_at timestamptz NOT NULL DEFAULT now()"),
                *(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                  for n, t in config.columns.items()),
            ]  # fmt: skip
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                    self.ident(), sql.SQL(", ").join(columns)
                )
            )
            return
        try:
            ddl = Path(config.ddl).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TerminalSinkError("bad_config", f"cannot read ddl {config.ddl}: {exc}") from exc
        conn.execute(
            sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(config.schema_name))
        )
        conn.execute(ddl.encode())  # the user's own SQL, run as written
        conn.execute("SET LOCAL search_path TO DEFAULT")
        if not self.read_types(conn):
            raise TerminalSinkError(
                "bad_config",
                f"the ddl file {config.ddl} did not create the table "
                f"{config.schema_name}.{config.table}",
            )

    def add_columns(self, conn: Any, columns: dict[str, str]) -> None:
        """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` for each of ``columns``."""
        from psycopg import sql

        for name, kind in columns.items():
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    self.ident(), sql.Identifier(name), sql.SQL(kind)
                )
            )

    # -- indexes -----------------------------------------------------------------------------

    def _unique_index(self, conn: Any, columns: list[str]) -> tuple[bool, bool] | None:
        """``(valid, nulls_not_distinct)`` of a unique index of exactly ``columns`` (in any
        order, no expression, no predicate) on this table, or ``None``."""
        nulls = "i.indnullsnotdistinct" if conn.info.server_version >= 150000 else "false"
        rows = conn.execute(
            f"SELECT i.indisvalid, {nulls}, ARRAY(SELECT a.attname::text FROM pg_attribute a "
            "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) ORDER BY 1) "
            "FROM pg_index i WHERE i.indrelid = to_regclass(%s) AND i.indisunique "
            "AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = %s",
            (self.ident().as_string(conn), len(columns)),
        ).fetchall()
        wanted = sorted(columns)
        found = [(valid, nnd) for valid, nnd, names in rows if sorted(names) == wanted]
        return max(found) if found else None

    def _create_unique_index(self, conn: Any, columns: list[str], nulls_not_distinct: bool) -> None:
        from psycopg import sql

        digest = hashlib.sha256(
            "\x00".join([self.config.schema_name, self.config.table, *columns]).encode()
        ).hexdigest()[:12]
        prefix = self.config.table.encode()[:32].decode("utf-8", "ignore")
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}){}").format(
                sql.Identifier(f"{prefix}_{digest}_key"),
                self.ident(),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(" NULLS NOT DISTINCT" if nulls_not_distinct else ""),
            )
        )
        found = self._unique_index(conn, columns)
        if found is None or not found[0]:
            raise TerminalSinkError(
                "bad_config",
                f"could not make a unique index on ({', '.join(columns)}) of "
                f"{self.config.schema_name}.{self.config.table}",
            )

    def _ensure_indexes(self, conn: Any) -> None:
        config = self.config
        key = config.dedupe_key
        modern = conn.info.server_version >= 150000
        key_index = None
        if key:
            key_index = self._unique_index(conn, key)
            if key_index is None or not key_index[0]:
                self._create_unique_index(conn, key, nulls_not_distinct=modern)
                key_index = self._unique_index(conn, key)
        covers_redelivery = (
            key_index is not None
            and key_index[1]  # NULLS NOT DISTINCT
            and config.on_conflict == "nothing"
            and config.ddl is None  # every key value comes from the event
        )
        if not covers_redelivery:
            found = self._unique_index(conn, ["_event_id"])
            if found is None or not found[0]:
                self._create_unique_index(conn, ["_event_id"], nulls_not_distinct=False)
