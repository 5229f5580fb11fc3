"""The OpenAPI 3.1 description of a running pipeline, served at ``GET /openapi.json``.

Built from the pipeline: every http source's ingest paths (its JSON Schema, when it has one, as
the request body), the read API, bad rows and the health endpoints.
"""

from __future__ import annotations

from typing import Any

from headrace.config.models import Pipeline
from headrace.config.sources import HttpSource

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}


def _error_responses(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "refused; `error` says why",
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code in codes
    }


def _ingest_operation(source_id: str, source: HttpSource) -> dict[str, Any]:
    event = source.json_schema if isinstance(source.json_schema, dict) else {"type": "object"}
    event = {k: v for k, v in event.items() if k != "$schema"}
    body = {"oneOf": [event, {"type": "array", "items": event}]}
    security: list[dict[str, list[str]]] = []
    for auth in source.auth:
        if auth.type == "token":
            security.append({f"{source_id}_token": []})
        elif auth.type == "api_key":
            security.append({f"{source_id}_api_key": []})
    operation: dict[str, Any] = {
        "summary": f"Send events to source {source_id}",
        "operationId": f"ingest_{source_id}".replace("-", "_").replace(".", "_"),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            str(source.success_status): {"description": "stored durably"},
            **_error_responses(400, 401, 403, 404, 413, 415, 429, 503),
        },
    }
    if security:
        operation["security"] = security
    return operation


def openapi_document(pipeline: Pipeline) -> dict[str, Any]:
    """The OpenAPI document of ``pipeline``."""
    paths: dict[str, Any] = {}
    schemes: dict[str, Any] = {}
    stream_param = {"name": "stream", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"}}  # fmt: skip
    for source_id, source in pipeline.http_sources().items():
        operation = _ingest_operation(source_id, source)
        paths[f"/v1/streams/{source_id}/events"] = {"post": operation}
        if source.path and source.path.rstrip("/") != f"/v1/streams/{source_id}/events":
            item: dict[str, Any] = {
                "post": {**operation, "operationId": operation["operationId"] + "_path"}
            }
            if "{stream}" in source.path:
                item["parameters"] = [stream_param]
            paths[source.path] = item
        for auth in source.auth:
            if auth.type == "token":
                schemes[f"{source_id}_token"] = {
                    "type": "apiKey",
                    "in": "header",
                    "name": getattr(auth, "header", "Authorization"),
                }
            elif auth.type == "api_key":
                schemes[f"{source_id}_api_key"] = {
                    "type": "apiKey",
                    "in": "header",
                    "name": getattr(auth, "header", "X-Api-Key"),
                }
    read = {
        "summary": "Stored events, newest first",
        "parameters": [
            {"name": "since", "in": "query", "schema": {"type": "string"}},
            {"name": "until", "in": "query", "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "a page of events (empty when none is in the range)"},
            **_error_responses(400),
            "404": {
                "description": "`unknown_stream`: nothing has ever been stored in this stream "
                "and the pipeline does not name it",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    for path, item in list(paths.items()):
        if path.startswith("/v1/streams/"):
            item["get"] = {**read, "operationId": "read_" + item["post"]["operationId"]}
    simple = {"200": {"description": "ok"}}
    paths["/healthz"] = {"get": {"summary": "Liveness", "responses": simple}}
    paths["/readyz"] = {"get": {"summary": "Readiness", "responses": {
        **simple, "503": {"description": "not ready; `problems` says why"}}}}  # fmt: skip
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": simple}}
    paths["/v1/badrows"] = {"get": {"summary": "Refused events and requests", "parameters": [
        {"name": "source", "in": "query", "schema": {"type": "string"}},
        {"name": "reason", "in": "query", "schema": {"type": "string"}},
        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    ], "responses": {**simple, **_error_responses(400)}}}  # fmt: skip
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "headrace", "version": "1"},
        "paths": paths,
    }
    if schemes:
        document["components"] = {"securitySchemes": schemes}
    return document
