"""Ingest: HTTP requests into the buffer, in the order of the data flow.

- ``app``: the ingest routes of a worker (its route table) and their lifespan;
- ``routes``: which source a path leads to;
- ``pipeline``: one source's request path, its stages strung together, and the answer;
- ``stages``: authorize → limit → decode → validate → assign ids → map → commit, over
  ``decode``, ``limits``, ``validation``, ``mapping`` (and ``visitor``) and ``headrace.authorizers``;
- ``reads``, ``badrows_api``, ``health``: reading events back, the kept refusals
  (``badrows``), liveness, readiness and metrics;
- ``openapi``: the pipeline's sources as an OpenAPI document.
"""
