"""``query_token``: a secret in the query string (``?token=...``), compared in constant time."""

from __future__ import annotations

import hmac
from typing import Literal
from urllib.parse import parse_qsl

from pydantic import SecretStr

from headrace.authorizers import ANONYMOUS, AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig
from headrace.registry import register


class QueryTokenConfig(AuthorizerConfig):
    """The query parameter ``token`` must equal the secret."""

    type: Literal["query_token"]
    secret: SecretStr
    """The shared secret."""


class QueryToken:
    header_names: frozenset[bytes] = frozenset()
    reads_all_headers = False

    def __init__(self, config: QueryTokenConfig, setup: AuthSetup) -> None:
        self.secret = config.secret.get_secret_value().encode()

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        given = dict(parse_qsl(request.query.decode("latin-1"))).get("token")
        if given is None:
            return "missing_token"
        return ANONYMOUS if hmac.compare_digest(given.encode(), self.secret) else "invalid_token"


register(
    "authorizer", "query_token", config=QueryTokenConfig,
    implementation="headrace_example.auth:QueryToken",
)  # fmt: skip
