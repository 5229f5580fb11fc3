"""Ready-made pipeline files for the jobs headrace is built for (``headrace init --recipe``)."""

from __future__ import annotations

SPLIT_IMPRESSIONS = """\
# Feature-flag impressions (a Split.io-style outgoing webhook) into PostgreSQL, stored once each.
#
#   export DATABASE_URL=postgresql://user@127.0.0.1:5432/analytics
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
# Point the webhook at http://<host>:8080/webhooks/split/impressions. It sends a JSON array of
# impressions every 10 seconds, usually gzip-compressed without saying so (headrace detects
# it), and treats anything but exactly 200 as a failure: it retries once after 300 ms, then
# drops the batch.
sources:
  impressions:
    type: http
    path: /webhooks/split/impressions
    success_status: 200
    success_body: ok               # Split ignores the body; the default lists every event id
    limits:
      # A busy account's 10-second batch passes the default 10,000 events, and a refused batch
      # is lost: 100,000 is four times the largest batch we expect (about 25,000).
      max_events: 100000
      # An impression is 300-500 bytes of JSON: 100,000 of them are about 50 MB once
      # decompressed, so 128 MiB leaves room for impressions with large properties, and an
      # uncompressed batch of 100,000 still fits the 64 MiB as sent (gzip is about 12x smaller).
      max_decompressed_bytes: 128MiB
      max_body_bytes: 64MiB
    # Optional: a shared token the webhook sends in a header...
    # auth: {type: token, header: Authorization, secrets: ["${SPLIT_TOKEN}"]}
    # ...or an HMAC-SHA256 signature of the raw body:
    # auth: {type: hmac, preset: generic, header: X-Signature, secrets: ["${SPLIT_SECRET}"]}

sinks:
  impressions_db:
    type: postgres
    inputs: [impressions]
    dsn: ${DATABASE_URL}
    schema: ${IMPRESSIONS_SCHEMA:-public}
    table: impressions
    columns:
      key: text
      split: text
      environmentId: text
      environmentName: text
      treatment: text
      time: bigint                 # epoch ms, as sent
      bucketingKey: text
      label: text
      machineName: text
      machineIp: text
      splitVersionNumber: bigint
      sdk: text
      sdkVersion: text
      properties: jsonb
    derived:
      time_at: {source: time, unit: epoch_ms}   # the same time as a timestamptz
    write_mode: merge              # identical impressions are stored once
    dedupe_key: [key, split, environmentName, treatment, label, time, splitVersionNumber]
    export:                        # headrace export --sink impressions_db --where treatment=on
      columns: {key: User Key, split: Split, environmentName: Environment, treatment: Treatment,
                label: Rule, time: Time}
      time_column: time
      time_unit: epoch_ms
"""

# The page-hit source and lake sink, shared by the two page-hit recipes ({read} differs).
_HIT_SOURCE = """\
sources:
  analytics:
    type: http
    path: /analytics
    read: {read}
    schema:
      type: object
      required: [pagePath]
      properties:
        pagePath: {{type: string, minLength: 1, maxLength: 2048}}
        timestamp: {{type: [string, number]}}
        referrer: {{type: [string, "null"]}}
        userAgent: {{type: [string, "null"]}}
    map:
      # visitor: for unique visitors, a daily salted hash (no address kept); a server sending
      # hits for its users sends a visitor of its own
      defaults: {{timestamp: $received_at, userAgent: $header.user-agent, visitor: $visitor}}
    # cors: {{allow_origins: ["https://www.example.org"]}}   # pages on other sites that send hits
"""
_HIT_LAKE = """\
  hits_lake:
    type: lake
    inputs: [analytics]
    streams:
      analytics:
        time_field: timestamp
        fields: {pagePath: string, referrer: string, userAgent: string, visitor: string}
"""

PAGE_HITS = (
    """\
# Page-hit analytics: POST a hit, GET hits back, chart them on the dashboard (Page hits tab).
#
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
#   curl -X POST localhost:8080/analytics -d '{"pagePath": "/pricing", "referrer": "https://example.org/"}'
#   curl 'localhost:8080/analytics?pagePath=/pricing&since=2026-01-01T00:00:00Z&limit=50'
#
# A hit is {"pagePath", "timestamp" (ISO 8601 or epoch ms; the receive time if missing),
# "referrer", "userAgent" (the request's User-Agent header if missing), ...}: any other field is
# kept. The key is (pagePath, timestamp): GET filters by pagePath and a time range (at most
# max_range wide, default the last 24 h) and pages with ?cursor=, newest first.
# From a browser: <script src="/sdk/headrace.js"> and headrace.init({endpoint, stream: "analytics"}).
# Each hit gets "visitor": a hash of the client address and User-Agent with a salt that changes
# every UTC day and is deleted after two (set HEADRACE_VISITOR_SECRET to share one count across
# ingest machines); the dashboard counts unique visitors with it, and no address is stored.
"""
    + _HIT_SOURCE.format(read="{default_range: 24h, max_range: 31d}")
    + """
sinks:
  # A Parquet lake under <data dir>/lake/analytics/, partitioned by hit time. For a DynamoDB
  # table keyed (pagePath, timestamp) instead, use the page-hits-dynamodb recipe.
"""
    + _HIT_LAKE
)

PAGE_HITS_DYNAMODB = (
    """\
# Page-hit analytics kept in a DynamoDB table keyed (pagePath, timestamp), as the serverless
# page-hit microservice does: POST stores a hit, GET /analytics?pagePath=... reads one page's
# hits with a DynamoDB Query (newest first, a time range, a cursor; never a Scan). The hits also
# go to the lake, which the dashboard's Page hits tab charts (drop hits_lake if you need no charts).
#
#   # credentials and region come from the usual AWS chain (environment, ~/.aws, instance role);
#   # for a DynamoDB-compatible server instead of AWS: export AWS_ENDPOINT_URL=http://127.0.0.1:8000
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
#   curl -X POST localhost:8080/analytics -d '{"pagePath": "/pricing", "referrer": "https://example.org/"}'
#   curl 'localhost:8080/analytics?pagePath=/pricing&since=2026-01-01T00:00:00Z&limit=50'
#
# A hit is {"pagePath", "timestamp" (ISO 8601 or epoch ms; the receive time if missing),
# "referrer", "userAgent" (the request's User-Agent header if missing), ...}. In the table,
# timestamp is epoch milliseconds (the sort key); two hits of one page in the same millisecond
# are one item.
"""
    + _HIT_SOURCE.format(read="{sink: hits_table, default_range: 24h, max_range: 31d}")
    + """
transforms:
  hit_time:                          # the sort key is a number: epoch ms, whatever was sent
    type: remap
    inputs: [analytics]
    cast: {timestamp: timestamp_ms}

sinks:
  hits_table:
    type: dynamodb
    inputs: [hit_time]
    table: ${PAGE_HITS_TABLE:-page-hits}
    partition_key: {name: pagePath}
    sort_key: {name: timestamp, type: N}
    create_table: true
    endpoint_url: ${AWS_ENDPOINT_URL:-}
"""
    + _HIT_LAKE
)

CONTROLSHIFT_BULK = """\
# ControlShift-style table exports (data.full_table_exported / data.incremental_table_exported)
# loaded into PostgreSQL: a full export replaces the table atomically, an incremental one appends.
#
#   export DATABASE_URL=postgresql://user@127.0.0.1:5432/crm
#   export CONTROLSHIFT_WEBHOOK_SECRET=...      # the webhook's signing secret
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
# Point the webhook at http://<host>:8080/webhooks/controlshift. Each export is downloaded
# (public addresses only), staged with a checksum in the data directory and loaded; follow the
# jobs with `headrace loads list` or GET /v1/loads.
sources:
  controlshift:
    type: bulk_export
    path: /webhooks/controlshift
    auth: {type: hmac, preset: controlshift, secrets: ["${CONTROLSHIFT_WEBHOOK_SECRET}"]}
    warehouse:
      type: postgres
      dsn: ${DATABASE_URL}
      schema: ${CONTROLSHIFT_SCHEMA:-controlshift}
    # tables: [signatures, members, petitions, events]   # only these; others are skipped
    unknown_table: skip
    # schemas: tables.sql    # ControlShift's published tables.sql, as is (else types are inferred)
    incremental: append                   # or merge (on each table's primary key)
    batch: {max_files: 20, max_bytes: 2GiB, max_age: 30s}
    fetch: {max_bytes: 20GiB, total_timeout: 6h}
    # notify: {url: "https://ops.example/hooks/loads", secret: "${LOADS_NOTIFY_SECRET}"}
"""

CLICK_LOGS = """\
# Web click logs: authorized, validated clicks land as Parquet (declared schema, zstd) in S3 under
# Firehose-style keys (clicklogs/YYYY/MM/DD/HH/), and, with a timestamp added, as items in a
# DynamoDB table. A click's requestid is its event id, so a client that resends a click (a
# timeout, a retry) has it stored once: once in S3 (ids are kept for the sink's dedupe_window,
# 7 days) and one item in the table, whose key it is.
#
#   export CLICKLOGGER_TOKEN='ALLOW=ORDERAPP'
#   export CLICK_LOGS_BUCKET=my-click-logs      # the bucket must exist
#   # an S3/DynamoDB-compatible server instead of AWS (MinIO, moto...); credentials and region
#   # come from the usual AWS chain (environment, ~/.aws, instance role):
#   # export AWS_ENDPOINT_URL=http://127.0.0.1:9000
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
#   curl -X POST http://127.0.0.1:8080/clicklogger -H 'Authorization: ALLOW=ORDERAPP' \\
#     -d '{"requestid":"r1","contextid":"c1","callerid":"web","component":"cart",
#          "action":"click","type":"button"}'
sources:
  clicklogger:
    type: http
    path: /clicklogger
    id_field: requestid             # the click's own unique id (the table's key) is its event id
    auth: {type: token, header: Authorization, secrets: ["${CLICKLOGGER_TOKEN}"]}
    unknown_fields: reject
    schema:
      type: object
      required: [requestid, contextid, callerid, component, action, type]
      properties:
        requestid: {type: string, minLength: 1}
        contextid: {type: string}
        callerid: {type: string}
        component: {type: string}
        action: {type: string}
        type: {type: string}

transforms:
  add_timestamp:                    # the table's items also carry when the click arrived
    type: remap
    inputs: [clicklogger]
    copy: {timestamp: $received_at_ms, receivedAt: $received_at}

sinks:
  clicks_s3:
    type: s3
    inputs: [clicklogger]
    bucket: ${CLICK_LOGS_BUCKET}
    endpoint_url: ${AWS_ENDPOINT_URL:-}
    format: parquet
    compression: zstd
    schema:
      fields: {requestid: string, contextid: string, callerid: string, component: string,
               action: string, type: string}
      required: [requestid, contextid, callerid, component, action, type]
      unknown_fields: drop          # exactly the declared columns (the source refuses others)
    prefix: clicklogs/              # + YYYY/MM/DD/HH/ (UTC), as Firehose does
    buffer_size: 64MiB
    buffer_interval: ${CLICK_LOGS_BUFFER_INTERVAL:-60s}
  clicks_table:
    type: dynamodb
    inputs: [add_timestamp]
    table: ${CLICK_LOGS_TABLE:-clicklogger-table}
    partition_key: {name: requestid}
    create_table: true
    endpoint_url: ${AWS_ENDPOINT_URL:-}
"""

MYSFITS_CLICKS = """\
# Profile clicks (Mythical Mysfits style): only {userId, mysfitId} is accepted (unknown fields are
# refused with 400), each click is enriched with the mysfit's attributes from another HTTP
# service (cached, with a timeout and retries; a failed lookup sends only that click to the
# dead-letter store), and clicks are aggregated into gzip NDJSON objects under firehose/.
#
#   export MYSFITS_SERVICE=https://mysfits.example.com   # answers GET /mysfits/{mysfitId}
#   export MYSFITS_BUCKET=my-mysfits-clicks
#   # export AWS_ENDPOINT_URL=http://127.0.0.1:9000      # an S3-compatible server instead of AWS
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
sources:
  mysfits_clicks:
    type: http
    path: /mysfits/clicks
    unknown_fields: reject
    schema:
      type: object
      required: [userId, mysfitId]
      properties:
        userId: {type: string, minLength: 1}
        mysfitId: {type: string, minLength: 1}

transforms:
  mysfit_attributes:
    type: enrich_http
    inputs: [mysfits_clicks]
    url: ${MYSFITS_SERVICE}/mysfits/{mysfitId}
    select: [species, goodevil, lawchaos]
    timeout: 2s
    retries: 2
    concurrency: 16
    cache_ttl: 5m
    on_failure: dead_letter         # headrace dlq list / replay once the service is back

sinks:
  clicks_bucket:
    type: s3
    inputs: [mysfit_attributes]
    bucket: ${MYSFITS_BUCKET}
    endpoint_url: ${AWS_ENDPOINT_URL:-}
    format: ndjson                  # gzip-compressed
    prefix: firehose/               # + YYYY/MM/DD/HH/
    buffer_interval: ${MYSFITS_BUFFER_INTERVAL:-60s}
"""

RECIPES: dict[str, tuple[str, str]] = {
    "split-impressions": ("Feature-flag impressions webhook into PostgreSQL", SPLIT_IMPRESSIONS),
    "page-hits": ("Page-hit analytics: POST and GET /analytics, into the lake", PAGE_HITS),
    "page-hits-dynamodb": (
        "Page-hit analytics in a DynamoDB table keyed (pagePath, timestamp)",
        PAGE_HITS_DYNAMODB,
    ),
    "controlshift-bulk": ("Table-export webhooks loaded into PostgreSQL", CONTROLSHIFT_BULK),
    "click-logs": ("Authorized web click logs into S3 Parquet and a DynamoDB table", CLICK_LOGS),
    "mysfits-clicks": (
        "Validated profile clicks, enriched over HTTP, into S3 NDJSON",
        MYSFITS_CLICKS,
    ),
}
