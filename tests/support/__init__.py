"""Helpers that test files share (import them as ``support.<module>``).

- ``events``: event factories (ids, keys, a replay of a batch, a raw record).
- ``tcpproxy``: a TCP proxy a test can cut and restore, to play a server outage.
- ``volumes``: a directory on a "volume" that can be detached and attached again.
- ``pgschema``: throwaway PostgreSQL schemas and reading a table back.
- ``objectstores``: the objects an s3 sink wrote (a bucket or a directory), decoded.
- ``dynamodb``: the items of a DynamoDB table, as plain JSON values.
- ``statedb``: what the state database holds for a sink (positions, dead letters).
- ``buffer``: the local buffer filled and read back, checkpoints that acknowledge positions.
- ``serverproc``: ``headrace serve`` as a subprocess (start, wait ready, metrics, kill).
- ``motoserver``: a moto server process for S3 and DynamoDB.
- ``exportserver``: HTTP servers for bulk-export files, throwaway schemas, CSV fixtures.
- ``pgproxy``: a TCP proxy in front of PostgreSQL that can drop or delay connections.
- ``enrichservice``: a lookup service that answers, fails or stalls as a test asks.
"""
