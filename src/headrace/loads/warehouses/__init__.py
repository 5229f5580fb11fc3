"""Warehouses bulk loads write to: PostgreSQL (COPY), DuckDB (embedded) and Redshift (S3 + COPY
MANIFEST), behind one ``Warehouse`` interface (see ``base``)."""

from __future__ import annotations

from pathlib import Path

from headrace.loads.config import DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from headrace.loads.warehouses.base import LoadPlan, LoadResult, Warehouse, settle_schema

__all__ = ["LoadPlan", "LoadResult", "Warehouse", "build_warehouse", "settle_schema"]


def build_warehouse(
    config: PostgresWarehouse | DuckDBWarehouse | RedshiftWarehouse, data_dir: Path
) -> Warehouse:
    """The warehouse a source's config describes (drivers are imported on first use)."""
    if isinstance(config, PostgresWarehouse):
        from headrace.loads.warehouses.postgres import PostgresLoader

        return PostgresLoader(config)
    if isinstance(config, DuckDBWarehouse):
        from headrace.loads.warehouses.duckdb import DuckDBLoader

        return DuckDBLoader(config, data_dir)
    from headrace.loads.warehouses.redshift import RedshiftLoader

    return RedshiftLoader(config)
