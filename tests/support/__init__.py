"""Helpers that test files share (import them as ``support.<module>``).

- ``events``: event factories (ids, keys, a replay of a batch, a raw record).
- ``tcpproxy``: a TCP proxy a test can cut and restore, to play a server outage.
- ``volumes``: a directory on a "volume" that can be detached and attached again.
- ``pgschema``: throwaway PostgreSQL schemas and reading a table back.
- ``objectstores``: the objects an s3 sink wrote (a bucket or a directory), decoded.
- ``dynamodb``: the items of a DynamoDB table, as plain JSON values.
- ``statedb``: what the state database holds for a sink (positions, dead letters).
"""
