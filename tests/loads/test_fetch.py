"""The hostile-URL fetcher against real loopback servers.

The export server listens on 127.0.0.2, the only network the policy allows; a canary server on
127.0.0.1 stands for every forbidden address: no test may ever make it see a request.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path

import pytest

from headrace.config.bulk import FetchSettings
from headrace.errors import LoadError
from headrace.loads.fetch import AddressPolicy, Fetcher, redact_url
from support.exportserver import CANARY_HOST, EXPORT_HOST, FileServer

ALLOW = ["127.0.0.2/32"]


def fetcher(**settings: object) -> Fetcher:
    options: dict[str, object] = {"allow_networks": ALLOW, "backoff": 0.05, **settings}
    return Fetcher(FetchSettings.model_validate(options))


def refused(f: Fetcher, url: str, tmp_path: Path) -> LoadError:
    with pytest.raises(LoadError) as caught:
        f.download(url, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out.csv.part").exists()
    return caught.value


def test_download_streams_to_disk_with_checksum(export_server: FileServer, tmp_path: Path) -> None:
    import hashlib

    body = b"id,name\n" + b"".join(b"%d,x\n" % i for i in range(100_000))
    url = export_server.add("/e.csv", body)
    seen: list[int] = []
    got = fetcher().download(
        url + "?X-Amz-Signature=abc&id=1", tmp_path / "e.csv", lambda n, _t: seen.append(n)
    )
    assert got.path.read_bytes() == body
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    assert got.bytes == len(body) and seen[-1] == len(body)
    assert "abc" not in got.url and "X-Amz-Signature=REDACTED" in got.url
    # the Host header names the URL's host, though the connection went to the checked address
    assert export_server.requests[0][1]["Host"] == f"127.0.0.2:{export_server.port}"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0x7f.0.0.1",
        "0177.0.0.1",  # octal
        "127.1",
        "localhost",
        "[::ffff:127.0.0.1]",  # IPv6-mapped
        "[::ffff:7f00:1]",
        "[::1]",
        "[::127.0.0.1]",  # IPv4-compatible
        "0.0.0.0",
    ],
)
def test_loopback_in_any_spelling_is_refused(canary: FileServer, tmp_path: Path, host: str) -> None:
    f = fetcher()
    error = refused(f, f"http://{host}:{canary.port}/e.csv", tmp_path)
    assert error.reason == "forbidden_address"
    assert not error.retriable
    assert "address" in str(error)
    assert canary.requests == [] and f.connections_made == []


def test_redirect_to_a_private_address_is_refused_before_connecting(
    export_server: FileServer, canary: FileServer, tmp_path: Path
) -> None:
    canary.add("/secret.csv", b"id\n1\n")
    url = export_server.add("/r", status=302, headers={"Location": canary.url("/secret.csv")})
    export_server.add("/r2", status=301, headers={"Location": "http://10.0.0.1/x.csv"})
    export_server.add("/r3", status=307, headers={"Location": "http://169.254.169.254/latest/"})
    f = fetcher()
    for target in (url, export_server.url("/r2"), export_server.url("/r3")):
        error = refused(f, target, tmp_path)
        assert error.reason == "forbidden_address", error
    assert canary.requests == []
    assert set(f.connections_made) == {"127.0.0.2"}


def test_redirects_are_followed_and_checked(export_server: FileServer, tmp_path: Path) -> None:
    export_server.add("/final.csv", b"id\n1\n")
    url = export_server.add("/start", status=302, headers={"Location": "/final.csv"})
    assert fetcher().download(url, tmp_path / "x.csv").path.read_bytes() == b"id\n1\n"
    export_server.add("/loop", status=302, headers={"Location": "/loop"})
    assert refused(fetcher(), export_server.url("/loop"), tmp_path).reason == "too_many_redirects"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.2/x.csv", "gopher://127.0.0.2:70/x", "http:///nohost",
     "http://user:pw@127.0.0.2/x.csv"],
)  # fmt: skip
def test_only_plain_http_urls(url: str, tmp_path: Path) -> None:
    error = refused(fetcher(), url, tmp_path)
    assert error.reason in ("forbidden_scheme", "invalid_url")


def test_expired_signed_url_and_missing_file(export_server: FileServer, tmp_path: Path) -> None:
    export_server.add("/e.csv", b"<Error>Request has expired</Error>", status=403)
    error = refused(fetcher(), export_server.url("/e.csv?Expires=1&Signature=zz"), tmp_path)
    assert (error.status, error.reason) == ("expired", "url_expired")
    assert "expired" in str(error) and "zz" not in str(error)
    error = refused(fetcher(), export_server.url("/gone.csv"), tmp_path)
    assert (error.status, error.reason, error.retriable) == ("failed", "not_found", False)


def test_server_errors_are_retried(export_server: FileServer, tmp_path: Path) -> None:
    url = export_server.add("/flaky.csv", b"id\n1\n", fail_first=2)
    assert fetcher(attempts=3).download(url, tmp_path / "f.csv").bytes == 5
    export_server.add("/down.csv", b"id\n", fail_first=10)
    error = refused(fetcher(attempts=2), export_server.url("/down.csv"), tmp_path)
    assert error.reason == "server_error" and error.retriable


def test_slow_server_times_out(export_server: FileServer, tmp_path: Path) -> None:
    url = export_server.add("/slow.csv", b"id\n1\n", delay=3)
    started = time.monotonic()
    error = refused(fetcher(read_timeout=0.5, attempts=1), url, tmp_path)
    assert error.reason == "timeout" and error.retriable
    assert time.monotonic() - started < 2.5
    # a server that keeps dripping bytes is cut by the overall timeout
    export_server.add("/drip.csv", b"x" * 20_000, drip=0.2)
    started = time.monotonic()
    error = refused(fetcher(total_timeout=1, attempts=1), export_server.url("/drip.csv"), tmp_path)
    assert error.reason == "timeout"
    assert time.monotonic() - started < 3


class DripServer:
    """Answers every request with ``head`` at once, then ``drip`` a byte at a time, ``pause``
    seconds apart (each byte well within the read timeout), for at most ``limit`` seconds."""

    def __init__(self, head: bytes, drip: bytes, pause: float = 0.05, limit: float = 10.0):
        self.head, self.drip, self.pause, self.limit = head, drip, pause, limit
        self.listener = socket.create_server((EXPORT_HOST, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            until = time.monotonic() + self.limit
            try:
                conn.sendall(self.head)
                for byte in self.drip:
                    if time.monotonic() > until:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.pause)
            except OSError:  # the client hung up
                pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(
    ("scheme", "head", "drip"),
    [
        ("http", b"", b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"),
        ("http", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         b"0" * 400 + b"1\r\n"),
        # a TLS record header announcing 16 KiB of handshake, then its body a byte at a time
        ("https", b"\x16\x03\x03\x40\x00", b"\x00" * 400),
    ],
    ids=["status-and-headers", "chunk-size-line", "tls-handshake"],
)  # fmt: skip
def test_total_timeout_covers_a_server_dripping_the_head_of_the_answer(
    tmp_path: Path, scheme: str, head: bytes, drip: bytes
) -> None:
    server = DripServer(head, drip)
    try:
        started = time.monotonic()
        error = refused(
            fetcher(read_timeout=5, total_timeout=1, attempts=1),
            f"{scheme}://{EXPORT_HOST}:{server.port}/e.csv",
            tmp_path,
        )
        assert (error.reason, error.retriable) == ("timeout", True)
        assert "fetch.total_timeout" in str(error)
        assert time.monotonic() - started < 2
    finally:
        server.close()


def test_oversize_files_are_cut(export_server: FileServer, tmp_path: Path) -> None:
    url = export_server.add("/big.csv", b"x" * 5000)
    assert refused(fetcher(max_bytes=4000), url, tmp_path).reason == "too_large"
    # no Content-Length: counted while streaming
    export_server.add("/big2.csv", b"x" * 5000, length=False)
    error = refused(fetcher(max_bytes=4000), export_server.url("/big2.csv"), tmp_path)
    assert error.reason == "too_large"


def test_address_policy_sees_through_embedded_ipv4() -> None:
    policy = AddressPolicy.of([])
    for text in ("::ffff:10.0.0.1", "2002:7f00:1::", "64:ff9b::a00:1", "::ffff:169.254.169.254",
                 "2001:0:4136:e378:8000:63bf:80ff:fffe", "fe80::1", "fc00::1", "ff02::1",
                 "100.64.0.1", "192.168.1.1", "172.16.0.1", "224.0.0.1", "240.0.0.1",
                 "255.255.255.255", "::", "fec0::1", "feff::1", "192.0.0.8", "192.0.0.9",
                 "192.88.99.1", "100.64.0.1", "100.127.255.254", "198.18.0.1", "198.19.255.255",
                 "3fff::1", "2002:c000:8::", "::ffff:192.88.99.1"):  # fmt: skip
        assert policy.refusal(ipaddress.ip_address(text)) is not None, text
    # NAT64 is refused even for a public IPv4 inside: Python files the prefix as non-global
    assert policy.refusal(ipaddress.ip_address("64:ff9b::5db8:d70e")) is not None
    for text in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"):
        assert policy.refusal(ipaddress.ip_address(text)) is None, text
    allowed = AddressPolicy.of(["127.0.0.2/32"])
    assert allowed.refusal(ipaddress.ip_address("127.0.0.2")) is None
    assert allowed.refusal(ipaddress.ip_address("::ffff:127.0.0.2")) is not None


def test_redact_url() -> None:
    assert (
        redact_url("https://u:p@x.example/a.csv?X-Amz-Credential=k&X-Amz-Signature=s#f")
        == "https://x.example/a.csv?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
    )


def test_canary_is_reachable_when_allowed(canary: FileServer, tmp_path: Path) -> None:
    """The canary itself works: the refusals above come from the policy, not a dead server."""
    url = canary.add("/ok.csv", b"id\n1\n")
    got = fetcher(allow_networks=[f"{CANARY_HOST}/32"]).download(url, tmp_path / "ok.csv")
    assert got.bytes == 5 and len(canary.requests) == 1


def test_https_connects_to_the_checked_address_with_the_names_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once (DNS is faked: exports.test → 127.0.0.2); the TLS handshake
    carries the name (SNI) and the certificate is checked against it, not against the address."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    from headrace.loads import fetch

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("exports.test").configure_cert(server_context)
    names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"id\n1\n")

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    lookups: list[str] = []

    def resolve(host: str, _port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.2")]

    monkeypatch.setattr(fetch, "_resolve", resolve)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    try:
        f = Fetcher(FetchSettings(allow_networks=ALLOW), tls=client_context)
        got = f.download(f"https://exports.test:{port}/e.csv", tmp_path / "e.csv")
        assert got.bytes == 5
        assert names == ["exports.test"] and hosts == [f"exports.test:{port}"]
        assert lookups == ["exports.test"] and f.connections_made == ["127.0.0.2"]
        # a certificate for another name fails, though the address is the same
        monkeypatch.setattr(fetch, "_resolve", lambda _h, _p: [ipaddress.ip_address("127.0.0.2")])
        error = refused(
            Fetcher(FetchSettings(allow_networks=ALLOW), tls=client_context),
            f"https://other.test:{port}/e.csv",
            tmp_path,
        )
        assert error.reason == "tls_error" and not error.retriable
    finally:
        server.shutdown()
        server.server_close()


def test_non_ascii_and_spaces_are_percent_encoded(
    export_server: FileServer, tmp_path: Path
) -> None:
    export_server.add("/caf%C3%A9%20x.csv", b"id\n1\n")
    url = export_server.url("/caf\u00e9 x.csv") + "?sig=s3cr et&na\u00efve=1"
    got = fetcher().download(url, tmp_path / "out.csv")
    assert got.path.read_bytes() == b"id\n1\n"
    assert export_server.requests[-1][0] == "/caf%C3%A9%20x.csv?sig=s3cr%20et&na%C3%AFve=1"


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"Content-Length": "\u00b2"}, 200, None),  # "²".isdigit() is true; int() refuses it
        ({"Location": "http://[::1/x"}, 302, "bad_redirect"),
    ],
)
def test_malformed_answers_end_as_load_errors(
    export_server: FileServer,
    tmp_path: Path,
    headers: dict[str, str],
    status: int,
    reason: str | None,
) -> None:
    url = export_server.add("/m.csv", b"id\n1\n", status=status, headers=headers, length=False)
    if reason is None:  # an unusable Content-Length is ignored: the body is read to its end
        assert fetcher().download(url, tmp_path / "out.csv").bytes == 5
    else:
        assert refused(fetcher(), url, tmp_path).reason == reason


def test_an_unexpected_error_is_a_load_error_without_the_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = fetcher()

    def broken(*_args: object) -> None:
        raise ValueError("GET /x.csv?Signature=s3cret is not allowed")

    monkeypatch.setattr(f, "_download_once", broken)
    error = refused(f, "http://127.0.0.2:1/x.csv?Signature=s3cret", tmp_path)
    assert error.reason == "bad_response"
    assert "s3cret" not in str(error) and "ValueError" in str(error)
