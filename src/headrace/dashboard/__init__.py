"""The web dashboard served at ``/`` by every ingest worker: static files (``static/``), their
JSON endpoints (``routes``), the numbers behind them (``overview``, ``lake_stats``,
``pg_stats``, ``readers``, ``history``); who may see them is ``headrace.web.access``."""
