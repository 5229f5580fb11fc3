"""Ready-made pipeline files for the jobs headrace is built for (``headrace init --recipe``)."""

from __future__ import annotations

SPLIT_IMPRESSIONS = """\
# Feature-flag impressions (a Split.io-style outgoing webhook) into PostgreSQL, stored once each.
#
#   export DATABASE_URL=postgresql://user@127.0.0.1:5432/analytics
#   headrace validate pipeline.yaml && headrace serve --config pipeline.yaml
#
# Point the webhook at http://<host>:8080/webhooks/split/impressions. It sends a JSON array of
# impressions every few seconds, usually gzip-compressed without saying so (headrace detects
# it), and treats anything but exactly 200 as a failure.
sources:
  impressions:
    type: http
    path: /webhooks/split/impressions
    success_status: 200
    # auth: {type: token, header: Authorization, secrets: ["${SPLIT_TOKEN}"]}

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

RECIPES: dict[str, tuple[str, str]] = {
    "split-impressions": ("Feature-flag impressions webhook into PostgreSQL", SPLIT_IMPRESSIONS),
}
