"""What the HTTP layers share (ingest, the bulk-load endpoints, the dashboard): the ASGI
contract and the answers they send (``asgi``), reading a request within limits (``request``),
and who may read what was stored (``access``)."""
