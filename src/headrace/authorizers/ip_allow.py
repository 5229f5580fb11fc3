"""The ``ip_allow`` authorizer: the peer's address inside one of the configured networks."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from headrace.authorizers import ANONYMOUS, AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig, network_list
from headrace.registry import register


class IpAllowAuth(AuthorizerConfig):
    """The client address must be in one of the networks (for senders with fixed addresses).
    Fails with 403."""

    type: Literal["ip_allow"]
    cidrs: list[str] = Field(min_length=1)
    """Networks such as ``192.0.2.0/24`` or ``2001:db8::/32``."""

    _networks = field_validator("cidrs")(network_list)


class IpAllowCheck:
    """The peer's address inside one of the networks."""

    reads_all_headers = False
    header_names: frozenset[bytes] = frozenset()

    def __init__(self, config: IpAllowAuth, setup: AuthSetup | None = None) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in config.cidrs]

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        if request.client is None:
            return "forbidden_address"
        try:
            address = ipaddress.ip_address(request.client)
        except ValueError:
            return "forbidden_address"
        if any(address in network for network in self.networks):
            return ANONYMOUS
        return "forbidden_address"


register(
    "authorizer", "ip_allow", config=IpAllowAuth,
    implementation="headrace.authorizers.ip_allow:IpAllowCheck",
)  # fmt: skip
