"""The processes of ``headrace serve``: the supervisor (``supervisor``) starts and watches the
ingest workers and the delivery process; each ingest worker serves the app ``app`` composes
(the ingest routes, the bulk-load endpoints and the dashboard)."""
