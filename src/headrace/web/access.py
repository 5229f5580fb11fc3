"""Who may see the dashboard and read events back; which requests may act on operations.

Reads (the dashboard, its JSON endpoints, ``GET`` on streams and readable sources, bad rows and
dead letters, ``/metrics``) need a credential when the pipeline names any, and always when the
server listens on anything but loopback: ``headrace serve --host 0.0.0.0`` with no credential
refuses to start. The probes (``/healthz``, ``/readyz``) need none: ``ingest.health`` says what
each shows to whom.

A credential is sent in ``api.read_header`` (``Authorization`` by default) as
``Bearer <read token>``, the bare token, or HTTP basic auth whose password is a read token (any
user name) or the password of one of ``api.users``. Basic auth is what a browser asks a person
for, so the dashboard needs no login page. Every comparison runs in constant time over all
secrets, so the time taken says nothing about which one nearly matched.

While reads are open (loopback, no credential), they are answered only to requests whose
``Host`` is a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``, any port). A web page can
point a name of its own at 127.0.0.1 (DNS rebinding) and read the answers as same-origin; the
Host header still carries that name, and no credential would stop it. The probes and
``/metrics`` are under the same Host check: ``/metrics`` names every source and sink.

Write endpoints are not governed here: they stay under each source's own ``auth``. Operator
requests (retry or cancel a load) must also not come from another site's page (``cross_site``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os

from headrace.config.models import ApiSettings, Pipeline
from headrace.errors import HeadraceError, RequestRejected
from headrace.web.asgi import Scope, Send, send_error
from headrace.web.request import request_headers

ADMIN_TOKEN_ENV = "HEADRACE_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret


class DashboardExposed(HeadraceError):
    """The server would listen beyond loopback with its reads open to anyone."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


MISDIRECTED = (
    "reads without a credential are answered only to localhost, 127.0.0.1 or [::1]: "
    "configure api.read_tokens or api.users to serve other names"
)


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8080`` gives ``[::1]``)."""
    host = host.strip()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0] if ":" in host else host


class ReadAccess:
    """The read credentials of one pipeline, ready to check."""

    def __init__(self, pipeline: Pipeline | ApiSettings, *, listen_host: str = "127.0.0.1") -> None:
        api = pipeline.api if isinstance(pipeline, Pipeline) else pipeline
        tokens = [t.get_secret_value().encode() for t in api.read_tokens]
        extra = os.environ.get(ADMIN_TOKEN_ENV)
        if extra:
            tokens.append(extra.encode())
        self.tokens = tokens
        self.users = {
            name.encode(): secret.get_secret_value().encode() for name, secret in api.users.items()
        }
        self.header = api.read_header.lower()
        self.header_bytes = self.header.encode("latin-1")
        self.header_set = frozenset({self.header_bytes})
        self.loopback = is_loopback(listen_host)

    @property
    def open(self) -> bool:
        """Whether reads need no credential (loopback and none configured)."""
        return not self.tokens and not self.users

    def misdirected(self, host: str | None) -> bool:
        """Whether open reads must refuse this ``Host``: a name other than loopback's, as a
        DNS-rebinding page would send. With credentials configured, any name may ask."""
        if not self.open or host is None:  # no Host: not a browser, which always sends it
            return False
        return not is_loopback(host_name(host).lower())

    def host_refusal(self, host: str | None) -> RequestRejected | None:
        """403 ``misdirected_host`` for a ``Host`` open reads must refuse, else ``None``."""
        if self.misdirected(host):
            return RequestRejected(403, "misdirected_host", MISDIRECTED)
        return None

    def read_refusal(self, host: str | None, given: str | None) -> RequestRejected | None:
        """Why a read with this ``Host`` and credential header value must be refused (403
        ``misdirected_host``, 401 ``unauthorized_read``), or ``None`` if it may go on."""
        refusal = self.host_refusal(host)
        if refusal is None and not self.allows(given):
            return UNAUTHORIZED_READ
        return refusal

    def allows(self, given: str | None) -> bool:
        """Whether the header value ``given`` carries a valid credential."""
        if self.open:
            return True
        if not given:
            return False
        raw = given.strip()
        scheme, _, rest = raw.partition(" ")
        if scheme.lower() == "basic" and rest:
            try:
                decoded = base64.b64decode(rest.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            if not sep:
                return False
            return self._token_matches(password) | self._user_matches(user, password)
        token = rest.strip() if scheme.lower() == "bearer" else raw
        return self._token_matches(token.encode("latin-1", "replace"))

    def _token_matches(self, token: bytes) -> bool:
        matched = False
        for expected in self.tokens:
            matched |= hmac.compare_digest(token, expected)
        return matched

    def _user_matches(self, user: bytes, password: bytes) -> bool:
        matched = False
        for name, expected in self.users.items():
            matched |= hmac.compare_digest(user, name) & hmac.compare_digest(password, expected)
        return matched


def check_exposure(pipeline: Pipeline, host: str, *, flag: str = "--host") -> None:
    """Refuse to listen beyond loopback while reads are open; raises ``DashboardExposed``.
    ``flag`` names the option that chose ``host`` (``--metrics-host`` for a delivery machine)."""
    if is_loopback(host):
        return
    if ReadAccess(pipeline, listen_host=host).open:
        shown = "the dashboard and stored events" if flag == "--host" else "metrics and health"
        raise DashboardExposed(
            f"{flag} {host} would show {shown} to anyone who can reach it: set "
            f"api.read_tokens or api.users in the pipeline file, or {ADMIN_TOKEN_ENV} in the "
            "environment"
        )


UNAUTHORIZED_READ = RequestRejected(401, "unauthorized_read", "reading needs a read token")
_HOST = frozenset({b"host"})
_SITE_HEADERS = frozenset({b"origin", b"host", b"sec-fetch-site"})


def read_headers(access: ReadAccess, scope: Scope) -> tuple[str | None, str | None]:
    """The request's ``Host`` and the value of its read-credential header."""
    headers = request_headers(scope, access.header_set | _HOST)
    return headers.get("host"), headers.get(access.header)


async def require_read(access: ReadAccess, scope: Scope, send: Send) -> bool:
    """Whether the request may read: a loopback ``Host`` while reads are open, else a read
    credential. If not, answers 403 ``misdirected_host`` or 401 ``unauthorized_read``."""
    refusal = access.read_refusal(*read_headers(access, scope))
    if refusal is not None:
        await send_error(send, refusal)
        return False
    return True


def cross_site(scope: Scope) -> bool:
    """Whether an operator request (retry, cancel) comes from another site's page rather than
    this server's own pages or a client outside a browser. A browser sends saved basic-auth
    credentials along with a form another site submits, and names that site in ``Origin`` and
    ``Sec-Fetch-Site``: such a request must not act."""
    headers = request_headers(scope, _SITE_HEADERS)
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    return site in ("cross-site", "same-site") or (
        origin is not None and origin.partition("://")[2].rstrip("/") != headers.get("host")
    )
