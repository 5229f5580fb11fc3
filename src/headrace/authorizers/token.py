"""The ``token`` authorizer: a header equal to one of the configured secrets."""

from __future__ import annotations

import hmac
from typing import Literal

from pydantic import Field

from headrace.authorizers import ANONYMOUS, AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig, NonEmptySecret
from headrace.registry import register


class TokenAuth(AuthorizerConfig):
    """A header must equal one of the secrets (compared in constant time), e.g.
    ``Authorization: ALLOW=ORDERAPP``. Fails with 401."""

    type: Literal["token"]
    header: str = "Authorization"
    """Header holding the token."""
    secrets: list[NonEmptySecret] = Field(min_length=1)
    """Accepted tokens; list two while rotating."""


class TokenCheck:
    """A header equal to one of the configured tokens."""

    reads_all_headers = False

    def __init__(self, config: TokenAuth, setup: AuthSetup | None = None) -> None:
        self.header = config.header.lower()
        self.tokens = [s.get_secret_value().encode() for s in config.secrets]
        self.header_names = frozenset({self.header.encode("latin-1")})

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        value = request.headers.get(self.header)
        if value is None:
            return "missing_token"
        given = value.encode("latin-1")
        matched = False
        for token in self.tokens:  # every token compared: the time does not tell which matched
            matched |= hmac.compare_digest(given, token)
        return ANONYMOUS if matched else "invalid_token"


register(
    "authorizer", "token", config=TokenAuth,
    implementation="headrace.authorizers.token:TokenCheck",
)  # fmt: skip
