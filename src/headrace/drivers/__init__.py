"""Third-party drivers' exceptions, translated once per driver into headrace's error tree.

Each module is the one place that knows a driver's exception classes and what they mean for a
retry: ``postgres`` (psycopg, used by the PostgreSQL sink, the PostgreSQL and Redshift warehouses
and the read API) and ``aws`` (boto3, used by the s3 and dynamodb sinks and the DynamoDB read).
Drivers are imported inside the functions, so importing these modules costs nothing.
"""
