"""Bulk table loads: a table-export webhook becomes a load job that is fetched (SSRF-guarded),
staged with a checksum, and loaded into a warehouse table (full → atomic replace, incremental →
append or merge), tracked in the batch history and announced by a signed webhook.

    config      the ``bulk_export`` source and warehouse models
    webhook     the endpoint: checks the event and records the job before answering 200
    fetch       the hostile-URL downloader
    csvfile     compression, header and samples of export files
    schema      target schemas from DDL, an existing table, or inference
    warehouses  PostgreSQL, DuckDB, Redshift
    history     the ``loads`` table (statuses, leases, retries)
    worker      the runner inside ``headrace serve``'s delivery process
    notify      Standard Webhooks signed notifications
    api, cli    ``/v1/loads`` and ``headrace loads`` / ``headrace load``
"""
