"""Downloading an export file whose URL came from a request body (so: hostile).

Rules, each enforced here and nowhere else:

- only ``http`` and ``https``; no user:password in the URL;
- the host is resolved once per hop, *every* address it resolves to is checked, and the
  connection goes to an address that was checked (no second DNS lookup, so a name cannot
  resolve to a public address for the check and to 127.0.0.1 for the connection); the
  ``Host`` header and the TLS SNI/certificate check still use the name from the URL;
- an address is refused when it, or an IPv4 address embedded in it (IPv4-mapped, IPv4-
  compatible, 6to4, Teredo, NAT64), is loopback, private, link-local, site-local, multicast,
  reserved, unspecified or otherwise not globally routable, unless it lies in a configured
  allow-list;
- redirects are followed here, one hop at a time, each hop checked like the first URL;
- the body is streamed to disk with a size cap, and connect and read timeouts; an overall
  deadline (``total_timeout``) covers the whole exchange, status line and headers too;
- timeouts, lost connections, 429 and 5xx are retried with backoff; 403 on a signed URL means
  the signature expired (status ``expired``); 404 and the rest fail for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from headrace.config.bulk import FetchSettings
from headrace.errors import LoadError, TerminalLoadError, TransientLoadError
from headrace.retry import RetryPolicy

log = logging.getLogger("headrace.loads.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CHUNK = 1024 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = {301, 302, 303, 307, 308}
_SIGNED_QUERY_KEYS = ("signature", "x-amz-signature", "sig", "token", "expires", "x-goog-signature")
_SIGNED_QUERY_PREFIXES = ("x-amz-", "x-goog-")  # S3 and GCS presigned URLs: signature, date, expiry
# not globally reachable, but filed as global by some Python versions' ipaddress (3.11 among them)
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(n)
    for n in ("100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "3fff::/20")
)


def is_signing_param(name: str) -> bool:
    """Whether a query parameter belongs to a URL's signature or expiry (it changes when the
    same file is signed again) rather than naming the file."""
    key = name.lower()
    return key in _SIGNED_QUERY_KEYS or key.startswith(_SIGNED_QUERY_PREFIXES)


def redact_url(url: str) -> str:
    """``url`` with every query-string value and any user:password replaced (for logs and history)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, "REDACTED") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _embedded_ipv4(address: IPAddress) -> list[IPAddress]:
    """IPv4 addresses an IPv6 address carries (and would reach through a translator or tunnel)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[IPAddress] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or int(address) >> 32 == 0:  # NAT64, or IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _category(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"  # fec0::/10, deprecated but still routed inside some networks
    if any(address.version == n.version and address in n for n in _SPECIAL_PURPOSE):
        return "special-purpose"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses may be connected to."""

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, networks: list[str]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` must not be reached, or ``None`` if it may."""
        if any(address.version == n.version and address in n for n in self.allow):
            return None
        for candidate in [address, *_embedded_ipv4(address)]:
            category = _category(candidate)
            if category is not None:
                shown = f"{address}" if candidate == address else f"{address} (embeds {candidate})"
                return f"{category} address {shown}"
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientLoadError("unresolvable_host", f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    return addresses


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address, while Host names the URL's host.

    Socket timeouts bound each read, not the exchange: a server dripping a byte of the status
    line, a header or a chunk-size line just within every read timeout would hold the fetch for
    ever. So a watchdog shuts the socket down when the download's deadline passes (``expired``
    then tells a cut connection from a server that hung up); ``close`` stops it."""

    def __init__(
        self, host: str, port: int, address: IPAddress, connect: float, read: float, deadline: float
    ):
        super().__init__(host, port, timeout=connect)
        self.address = address
        self.read_timeout = read
        self.expired = False
        self._guard = threading.Lock()  # between the watchdog and connect / close
        self._watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), self._expire)
        self._watchdog.daemon = True
        self._watchdog.name = "fetch-deadline"

    def _expire(self) -> None:
        with self._guard:
            self.expired = True
            if self.sock is not None:
                # the plain socket's shutdown: SSLSocket's own drops its TLS state first
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def _open(self) -> socket.socket:
        self._watchdog.start()
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        sock.settimeout(self.read_timeout)
        return sock

    def _attach(self, sock: socket.socket) -> None:
        with self._guard:
            if self.expired:
                sock.close()
                raise TimeoutError("the deadline passed while connecting")
            self.sock = sock

    def connect(self) -> None:
        self._attach(self._open())

    def close(self) -> None:
        self._watchdog.cancel()
        with self._guard:
            super().close()


class _PinnedHTTPS(_PinnedHTTP):
    """The same over TLS; SNI and certificate checks use the URL's host name."""

    default_port = 443

    def __init__(
        self,
        host: str,
        port: int,
        address: IPAddress,
        connect: float,
        read: float,
        deadline: float,
        context: ssl.SSLContext | None = None,
    ):
        super().__init__(host, port, address, connect, read, deadline)
        self.context = context or ssl.create_default_context()

    def connect(self) -> None:
        # the handshake runs once the socket is attached, so the watchdog can cut it too
        sock = self.context.wrap_socket(
            self._open(), server_hostname=self.host, do_handshake_on_connect=False
        )
        self._attach(sock)
        sock.do_handshake()


@dataclass(frozen=True)
class Downloaded:
    """A file fetched to disk."""

    path: Path
    bytes: int
    sha256: str
    url: str  # the final URL after redirects, redacted


Progress = Callable[[int, int | None], None]  # (bytes so far, total if known)


# characters sent as they are in a request target; everything else (spaces, controls,
# non-ASCII) is percent-encoded, and existing escapes are kept
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def request_target(url: str) -> str:
    """The path and query of ``url`` as an HTTP request line needs them: ASCII, no spaces or
    control characters (http.client refuses those with an error quoting the whole URL)."""
    parts = urlsplit(url)
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return target


class Fetcher:
    """Downloads URLs under a ``FetchSettings`` policy; see the module docstring."""

    def __init__(
        self,
        settings: FetchSettings,
        stop: threading.Event | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.tls = tls  # certificate authorities to trust (None: the system's)
        self.policy = AddressPolicy.of(settings.allow_networks)
        self.stop = stop or threading.Event()
        self.connections_made: list[str] = []  # addresses connected to (for tests and logs)

    def check_url(self, url: str) -> tuple[str, str, int, list[IPAddress]]:
        """Scheme, host, port and the checked addresses of ``url``; ``LoadError`` if refused."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TerminalLoadError("invalid_url", f"not a usable URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise TerminalLoadError(
                "forbidden_scheme", f'only http and https URLs are fetched, not "{scheme}:"'
            )
        host = parts.hostname
        if not host:
            raise TerminalLoadError("invalid_url", "the URL names no host")
        try:  # an international name goes out in its ASCII (IDNA) form, in DNS and in Host
            host = host if host.isascii() else host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise TerminalLoadError("invalid_url", f"not a usable host name: {exc}") from exc
        if parts.username is not None or parts.password is not None:
            raise TerminalLoadError("invalid_url", "URLs with user:password are not fetched")
        port = port or (443 if scheme == "https" else 80)
        addresses = _resolve(host, port)
        if not addresses:
            raise TransientLoadError("unresolvable_host", f"{host} resolves to no address")
        for address in addresses:
            refusal = self.policy.refusal(address)
            if refusal is not None:
                raise TerminalLoadError(
                    "forbidden_address",
                    f"{host} resolves to a {refusal}; such addresses are never fetched "
                    "(fetch.allow_networks lists exceptions)",
                )
        return scheme, host, port, addresses

    def download(self, url: str, dest: Path, progress: Progress | None = None) -> Downloaded:
        """Fetch ``url`` into ``dest`` (retrying transient failures); ``LoadError`` on failure."""
        deadline = time.monotonic() + self.settings.total_timeout
        retry = RetryPolicy(initial=self.settings.backoff, maximum=300.0, jitter="half",
                            attempts=self.settings.attempts)  # fmt: skip
        attempt = 1
        while True:
            try:
                try:
                    return self._download_once(url, dest, deadline, progress)
                except LoadError:
                    raise
                except Exception as exc:
                    # only the exception's type: its text may quote the signed URL
                    raise TerminalLoadError(
                        "bad_response",
                        f"cannot fetch {redact_url(url)}: {type(exc).__name__}",
                    ) from exc
            except LoadError as exc:
                if not exc.retriable or retry.exhausted(attempt):
                    raise
                delay = retry.delay(attempt)
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "fetch attempt %d of %s failed (%s); retrying", attempt, redact_url(url), exc
                )
                if self.stop.wait(delay):
                    raise TransientLoadError("interrupted", "stopped") from exc
                attempt += 1

    def _download_once(
        self, url: str, dest: Path, deadline: float, progress: Progress | None
    ) -> Downloaded:
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            scheme, host, port, addresses = self.check_url(current)
            response, conn = self._request(scheme, host, port, addresses, current, deadline)
            try:
                status = response.status
                if status in _REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise TerminalLoadError(
                            "bad_redirect", f"{status} without a Location header"
                        )
                    try:
                        current = urljoin(current, location.strip())
                    except ValueError as exc:
                        raise TerminalLoadError(
                            "bad_redirect", f"{status} to an unusable Location: {exc}"
                        ) from exc
                    continue
                if status == 200:
                    return self._save(response, conn, current, dest, deadline, progress)
                raise self._status_error(status, current)
            finally:
                conn.close()
        raise TerminalLoadError(
            "too_many_redirects", f"more than {self.settings.max_redirects} redirects"
        )

    def _request(
        self,
        scheme: str,
        host: str,
        port: int,
        addresses: list[IPAddress],
        url: str,
        deadline: float,
    ) -> tuple[http.client.HTTPResponse, _PinnedHTTP]:
        target = request_target(url)
        last: Exception | None = None
        for address in addresses:  # every one was checked; try them in order
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connect = min(self.settings.connect_timeout, remaining)
            read = min(self.settings.read_timeout, remaining)
            conn = (
                _PinnedHTTPS(host, port, address, connect, read, deadline, self.tls)
                if scheme == "https"
                else _PinnedHTTP(host, port, address, connect, read, deadline)
            )
            try:
                self.connections_made.append(str(address))
                conn.request("GET", target, headers={"Accept-Encoding": "identity"})
                return conn.getresponse(), conn
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise TerminalLoadError("tls_error", f"{host}: {exc.verify_message}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if conn.expired:
                    raise _past_deadline() from exc
                last = exc
            except BaseException:
                conn.close()  # and its watchdog, which would wait for the deadline
                raise
        if last is None:
            raise _past_deadline()
        kind_of = "timeout" if isinstance(last, TimeoutError) else "connection_failed"
        # an HTTPException's text may quote the request line, signature and all
        why = str(last) if isinstance(last, OSError) else type(last).__name__
        raise TransientLoadError(kind_of, f"cannot reach {host}:{port}: {why}") from last

    def _status_error(self, status: int, url: str) -> LoadError:
        shown = redact_url(url)
        if status == 403:
            if any(is_signing_param(k) for k, _ in parse_qsl(urlsplit(url).query)):
                return TerminalLoadError(
                    "url_expired",
                    f"403 Forbidden from {shown}: the signed URL has expired (or was revoked); "
                    "ask the sender for a new export",
                    status="expired",
                )
            return TerminalLoadError("forbidden", f"403 Forbidden from {shown}")
        if status in (404, 410):
            return TerminalLoadError("not_found", f"{status}: no file at {shown}")
        if status == 429 or status >= 500:
            return TransientLoadError("server_error", f"{status} from {shown}")
        return TerminalLoadError("http_error", f"{status} from {shown}")

    def _save(
        self,
        response: http.client.HTTPResponse,
        conn: _PinnedHTTP,
        url: str,
        dest: Path,
        deadline: float,
        progress: Progress | None,
    ) -> Downloaded:
        cap = self.settings.max_bytes
        declared = response.getheader("Content-Length")
        # str.isdigit() is true of "²" too, which int() refuses
        total = int(declared) if declared and declared.isascii() and declared.isdigit() else None
        if total is not None and total > cap:
            raise TerminalLoadError(
                "too_large", f"the file is {total} bytes; fetch.max_bytes is {cap}"
            )
        digest = hashlib.sha256()
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        try:
            with open(partial, "wb") as out:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _past_deadline()
                    if self.stop.is_set():
                        raise TransientLoadError("interrupted", "stopped")
                    chunk = self._read(response, conn, remaining)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > cap:
                        raise TerminalLoadError(
                            "too_large", f"the file is larger than fetch.max_bytes ({cap} bytes)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(size, total)
                if total is not None and size != total:
                    raise TransientLoadError("truncated", f"got {size} of {total} bytes")
                out.flush()
                os.fsync(out.fileno())
        except LoadError:
            partial.unlink(missing_ok=True)
            raise
        except OSError as exc:  # reading errors became LoadErrors in _read: this is the disk
            partial.unlink(missing_ok=True)
            raise TransientLoadError("disk_error", f"cannot write {dest}: {exc}") from exc
        partial.replace(dest)
        return Downloaded(dest, size, digest.hexdigest(), redact_url(url))

    def _read(
        self, response: http.client.HTTPResponse, conn: _PinnedHTTP, remaining: float
    ) -> bytes:
        """The next piece of the body, waiting at most the read timeout (or what is left)."""
        try:
            if conn.sock is not None:
                conn.sock.settimeout(min(self.settings.read_timeout, remaining))
            chunk = response.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            if conn.expired:
                raise _past_deadline() from exc
            if isinstance(exc, TimeoutError):
                raise TransientLoadError(
                    "timeout", f"no data for {self.settings.read_timeout:g}s"
                ) from exc
            raise TransientLoadError("connection_failed", f"download cut off: {exc}") from exc
        if conn.expired:  # the watchdog's shutdown reads as the end of the body: it is not
            raise _past_deadline()
        return chunk


def _past_deadline() -> LoadError:
    return TransientLoadError("timeout", "the download took longer than fetch.total_timeout")
