"""psycopg's exceptions read once: which mean "retry on a new connection", which "the data"."""

from __future__ import annotations

import psycopg
import pytest

from headrace.drivers.postgres import connection_errors, data_errors, lost_connection_errors

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def raised(statement: str) -> Exception:
    with psycopg.connect(DSN, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    return caught.value


def test_the_real_server_s_errors_are_read_as_their_kind() -> None:
    too_long = raised(
        "CREATE TEMP TABLE k (v text); CREATE UNIQUE INDEX ON k (v); "
        "INSERT INTO k SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i"
    )
    assert isinstance(too_long, data_errors())  # a row's fault, though an OperationalError
    assert isinstance(raised("SELECT 'x'::int"), data_errors())
    missing = raised("SELECT * FROM headrace_no_such_table")
    assert isinstance(missing, connection_errors()) and not isinstance(
        missing, lost_connection_errors()
    )
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 user=postgres connect_timeout=2")
    assert isinstance(refused.value, lost_connection_errors())
