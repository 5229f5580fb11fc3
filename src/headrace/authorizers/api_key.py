"""The ``api_key`` authorizer: a live key issued for the source (``headrace keys create``), in a
header or a query parameter; keys are stored only as hashes."""

from __future__ import annotations

import time
from typing import Literal
from urllib.parse import parse_qsl

from headrace.authorizers import AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig
from headrace.registry import register
from headrace.storage.api_keys import ApiKey, KeyStore, hash_key


class ApiKeyAuth(AuthorizerConfig):
    """A key issued with ``headrace keys create --source <id>``, in a header or a query
    parameter. Keys are stored only as hashes. Fails with 401."""

    type: Literal["api_key"]
    header: str = "X-Api-Key"
    """Header holding the key."""
    query: str | None = None
    """Query parameter that may hold the key instead (for senders that cannot set headers)."""


class ApiKeyCheck:
    """A live key issued for this source, in a header or a query parameter."""

    RELOAD_EVERY = 2.0
    reads_all_headers = False

    def __init__(self, config: ApiKeyAuth, setup: AuthSetup) -> None:
        assert setup.data_dir is not None, "api keys live in the data directory"
        self.header = config.header.lower()
        self.query = config.query
        self.store = KeyStore(setup.data_dir)
        self.source_id = setup.source_id
        self.header_names = frozenset({self.header.encode("latin-1")})
        self._keys: dict[str, ApiKey] = {}
        self._loaded_at = -1e9

    def _presented(self, request: RequestFacts) -> str | None:
        value = request.headers.get(self.header)
        if value is None and self.query and request.query:
            for name, given in parse_qsl(request.query.decode("latin-1")):
                if name == self.query:
                    return given
        return value

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        """The key presented (as the principal), or why there is none."""
        clock = time.monotonic()
        if clock - self._loaded_at >= self.RELOAD_EVERY:  # new and revoked keys within seconds
            self._keys, self._loaded_at = self.store.live_hashes(self.source_id), clock
        presented = self._presented(request)
        if presented is None:
            return "missing_api_key"
        key = self._keys.get(hash_key(presented))  # a hash of 256 random bits: nothing to time
        return Principal(key.name or None, {}, key) if key is not None else "invalid_api_key"


register(
    "authorizer", "api_key", config=ApiKeyAuth,
    implementation="headrace.authorizers.api_key:ApiKeyCheck",
)  # fmt: skip
