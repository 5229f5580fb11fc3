"""Throwaway PostgreSQL schemas on the test server (127.0.0.1:5432, trust auth), and reading a
sink's table back as plain values.

A schema's name has a space and capitals in it, so that code which forgets to quote an
identifier fails here rather than in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
HOST, PORT = "127.0.0.1", 5432


def dsn_via(port: int, host: str = "127.0.0.1") -> str:
    """The test server's DSN, reached through ``host:port`` (a proxy)."""
    return f"host={host} port={port} user=postgres dbname=postgres"


@contextmanager
def throwaway_schema(prefix: str = "Contract") -> Iterator[str]:
    """A schema name no one uses; the schema (made by whoever needs it) is dropped after."""
    name = f"{prefix} {uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def table_rows(schema: str, table: str, *, order_by: str = "_event_id") -> list[dict[str, Any]]:
    """Every row of ``schema.table`` as a dict, ordered; an empty list if there is no table."""
    with psycopg.connect(DSN, row_factory=dict_row) as conn:
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AS found",
            (sql.Identifier(schema, table).as_string(conn),),
        ).fetchone()
        if not found or not found["found"]:
            return []
        query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(
            sql.Identifier(schema, table), sql.Identifier(order_by)
        )
        return conn.execute(query).fetchall()


__all__ = ["DSN", "HOST", "PORT", "dsn_via", "table_rows", "throwaway_schema"]
