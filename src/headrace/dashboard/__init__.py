"""The web dashboard served at ``/`` by every ingest worker: static files (``static/``), their
JSON endpoints (``routes``), the numbers behind them (``overview``, ``lake_stats``,
``pg_stats``, ``readers``, ``history``), and who may see them (``access``)."""

from __future__ import annotations

from headrace.dashboard.access import ReadAccess, check_exposure
from headrace.dashboard.routes import Dashboard

__all__ = ["Dashboard", "ReadAccess", "check_exposure"]
