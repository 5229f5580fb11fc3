"""Impressions over HTTP into PostgreSQL through a real server: stored once each."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from headrace.config.load import load_pipeline
from support.serverproc import ServerProcess

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
FIELDS = {"key": "text", "split": "text", "environmentName": "text", "treatment": "text",
          "label": "text", "time": "bigint", "splitVersionNumber": "bigint"}  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args], capture_output=True, text=True, timeout=120
    )


SPLITS = ["new-checkout", "dark-mode", "pricing-v2"]
LABELS = ["default rule", "in segment beta", "whitelisted"]


def impressions(n: int) -> list[dict[str, object]]:
    return [{"key": f"user-{i % 120}", "split": SPLITS[i % 3], "environmentId": "env1",
             "environmentName": "production" if i % 5 else "staging",
             "treatment": "on" if i % 2 else "off", "time": 1_763_800_000_000 + i,
             "bucketingKey": None, "label": LABELS[(i // 3) % 3], "machineName": "web-1",
             "machineIp": "10.0.0.1", "splitVersionNumber": 7, "sdk": "java", "sdkVersion": "4.1",
             "properties": None} for i in range(n)]  # fmt: skip


def exported_rows(path: Path) -> set[tuple[str, int]]:
    """(User Key, Time) of each row of an exported CSV, checking the header."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["User Key", "Split", "Environment", "Treatment", "Rule", "Time"]
        return {(row[0], int(row[5])) for row in reader}


def selected_rows(schema: str, where: dict[str, object]) -> set[tuple[str, int]]:
    """The same selection by a query of the test's own (values bound as parameters)."""
    from psycopg import sql

    conditions = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in where]
    query = sql.SQL('SELECT "key", "time" FROM {} WHERE {}').format(
        sql.Identifier(schema, "impressions"), sql.SQL(" AND ").join(conditions)
    )
    with psycopg.connect(DSN) as conn:
        return {(k, t) for k, t in conn.execute(query, list(where.values())).fetchall()}


def count(schema: str) -> int:
    with psycopg.connect(DSN) as conn:
        query = psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(schema, "impressions")
        )
        try:
            return int(conn.execute(query).fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return -1


def test_the_recipe_stores_gzip_impressions_once_and_exports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"hr_e2e_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv("IMPRESSIONS_SCHEMA", schema)
    config = tmp_path / "pipeline.yaml"
    assert cli("init", "--recipe", "split-impressions", "-o", str(config)).returncode == 0
    assert cli("validate", str(config)).returncode == 0
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        body = gzip.compress(json.dumps(impressions(500)).encode())
        url = f"{server.url}/webhooks/split/impressions"
        assert httpx.post(url, content=body).status_code == 200  # gzip, no Content-Encoding
        assert (
            httpx.post(url, content=body, headers={"content-encoding": "gzip"}).status_code == 200
        )
        deadline = time.monotonic() + 30
        while count(schema) != 500 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the second request is delivered too, and adds nothing
        assert count(schema) == 500
        assert server.metrics()['headrace_events_delivered_total{sink="impressions_db"}'] == 1000
        with psycopg.connect(DSN) as conn:
            query = psycopg.sql.SQL('SELECT "time", time_at FROM {} ORDER BY "time" LIMIT 1').format(
                psycopg.sql.Identifier(schema, "impressions"))  # fmt: skip
            epoch_ms, time_at = conn.execute(query).fetchone()  # type: ignore[misc]
            assert int(time_at.timestamp() * 1000) == epoch_ms
        # each filter the impressions job needs, checked against a query of our own
        selections: list[tuple[dict[str, object], list[str]]] = [
            ({"treatment": "on", "environmentName": "production"}, []),
            ({"environmentName": "staging"}, []),
            ({"label": "in segment beta"}, []),
            ({"split": "dark-mode", "key": "user-7"}, []),
            ({"split": "pricing-v2", "treatment": "off"},
             ["--since", "1763800000100", "--until", "2025-11-22T08:26:40.300Z"]),
        ]  # fmt: skip
        for n, (where, times) in enumerate(selections):
            out = tmp_path / f"export-{n}.csv"
            filters = [
                arg for column, value in where.items() for arg in ("--where", f"{column}={value}")
            ]
            exported = cli("export", "--config", str(config), "--sink", "impressions_db",
                           *filters, *times, "-o", str(out))  # fmt: skip
            assert exported.returncode == 0, exported.stderr
            expected = selected_rows(schema, where)
            if times:  # 1763800000100 <= time < 1763800000300
                expected = {
                    (k, t) for k, t in expected if 1_763_800_000_100 <= t < 1_763_800_000_300
                }
            assert expected and exported_rows(out) == expected, where
    finally:
        assert server.stop() == 0
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )


def test_an_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    from support.pgproxy import CuttableProxy

    proxy = CuttableProxy(("127.0.0.1", 5432))
    schema = f"hr_outage_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps({
        "sources": {"split": {"type": "http"}},
        "sinks": {"db": {"type": "postgres", "inputs": ["split"], "schema": schema, "table": "impressions",
                         "dsn": f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres",
                         "columns": FIELDS, "retry": {"initial_backoff": "100ms", "max_backoff": "500ms"}}},
    }))  # fmt: skip
    server = ServerProcess(tmp_path / "data", config=config).start()
    url = f"{server.url}/v1/streams/split/events"
    try:
        assert httpx.post(url, json=impressions(100)).status_code == 202
        deadline = time.monotonic() + 30
        while count(schema) != 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        proxy.cut()
        for _ in range(5):  # the database is gone; ingest goes on acknowledging
            assert httpx.post(url, json=impressions(100)).status_code == 202
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sinks.db" in httpx.get(f"{server.url}/readyz").json()["problems"]
        proxy.restore()
        deadline = time.monotonic() + 60
        while count(schema) != 600 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count(schema) == 600  # every acknowledged event, once
        with psycopg.connect(DSN) as conn:
            query = psycopg.sql.SQL("SELECT count(DISTINCT _event_id) FROM {}").format(
                psycopg.sql.Identifier(schema, "impressions")
            )
            assert conn.execute(query).fetchone() == (600,)
    finally:
        proxy.cut()
        assert server.stop() == 0
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )


def busy_batch(n: int) -> list[dict[str, object]]:
    """One 10-second batch of a busy account: ``n`` distinct impressions of realistic size."""
    flags = ["new_checkout_flow", "dark_mode_rollout", "pricing_page_v2", "onboarding_wizard"]
    rules = ["default rule", "in segment beta_testers", "whitelisted", "targeting rule 3"]
    return [{"key": str(uuid.UUID(int=i * 7919 + 12345)), "split": flags[i % 4],
             "environmentId": "194da2f0-3e22-11ea-b9bd-0a9b5f5e3b7c",
             "environmentName": "Prod-US-East", "treatment": ("on", "off", "v2")[i % 3],
             "time": 1_763_800_000_000 + i, "bucketingKey": None, "label": rules[i % 4],
             "machineName": f"ip-10-0-{i % 250}-{i % 200}.ec2.internal",
             "machineIp": f"10.0.{i % 250}.{i % 200}", "splitVersionNumber": 1_763_799_000_000,
             "sdk": "java", "sdkVersion": "4.13.1",
             "properties": {"plan": "pro", "country": "US"}} for i in range(n)]  # fmt: skip


def test_the_recipe_takes_a_busy_accounts_batch_of_25000(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than 10,000 impressions in one POST: exactly 200, a small body, every row stored."""
    schema = f"hr_busy_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv("IMPRESSIONS_SCHEMA", schema)
    config = tmp_path / "pipeline.yaml"
    assert cli("init", "--recipe", "split-impressions", "-o", str(config)).returncode == 0
    limits = load_pipeline(config).sources["impressions"].limits
    # as many impressions as it takes, of 500 bytes, fit once decompressed and even uncompressed
    assert limits is not None and limits.max_events >= 4 * 25_000
    assert min(limits.max_decompressed_bytes, limits.max_body_bytes) >= limits.max_events * 500
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        raw = json.dumps(busy_batch(25_000)).encode()
        assert 300 <= len(raw) / 25_000 <= 500  # bytes an impression, as Split sends them
        body = gzip.compress(raw)
        answer = httpx.post(f"{server.url}/webhooks/split/impressions", content=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.content == b"ok"  # not 25,000 event ids
        deadline = time.monotonic() + 60
        while count(schema) != 25_000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count(schema) == 25_000, server.log()
    finally:
        assert server.stop() == 0
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )
