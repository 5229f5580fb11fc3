"""The pipeline-file models of bulk loads (defined in ``headrace.config.bulk``, beside the other
models, so that importing either module first works)."""

from __future__ import annotations

from headrace.config.bulk import (
    BulkExportSource,
    DuckDBWarehouse,
    FetchSettings,
    LoadBatching,
    NotifySettings,
    PostgresWarehouse,
    RedshiftWarehouse,
    Warehouse,
)

__all__ = [
    "BulkExportSource",
    "DuckDBWarehouse",
    "FetchSettings",
    "LoadBatching",
    "NotifySettings",
    "PostgresWarehouse",
    "RedshiftWarehouse",
    "Warehouse",
]
