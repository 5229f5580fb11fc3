"""Warehouses bulk loads write to: PostgreSQL (COPY), DuckDB (embedded) and Redshift (S3 + COPY
MANIFEST), behind one ``Warehouse`` interface (see ``base``). Each is a module of this package
holding its config and its loader, registered by type (``headrace.registry``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headrace.loads.warehouses.base import LoadPlan, LoadResult, Warehouse, settle_schema
from headrace.registry import components

__all__ = ["LoadPlan", "LoadResult", "Warehouse", "build_warehouse", "settle_schema"]


def build_warehouse(config: Any, data_dir: Path) -> Warehouse:
    """The warehouse a source's config describes (drivers are imported on first use)."""
    build = components().get("warehouse", config.type).load()
    warehouse: Warehouse = build(config, data_dir)
    return warehouse
