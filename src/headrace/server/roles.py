"""What one machine does: ``ingest`` (the HTTP workers), ``deliver`` (the sinks), or both
(``headrace serve``)."""

INGEST = "ingest"
DELIVER = "deliver"
ROLES = frozenset({INGEST, DELIVER})

__all__ = ["DELIVER", "INGEST", "ROLES"]
