"""Suite item 9, SSRF: the URLs headrace fetches because a request body named them (a bulk
export's ``data.url``, ``loads/fetch.py``: the one fetcher of hostile URLs) never reach this
machine's loopback, in any spelling, through a redirect, or through a DNS answer that changes
between lookups.

A canary TCP server on 127.0.0.1 counts every connection it accepts; the only allowed network
is 127.0.0.2/32, where a real origin server answers (and redirects). We cannot run a DNS server
here, so names are answered by a stub at the seam the guard resolves through
(``socket.getaddrinfo``, called once per hop by ``loads.fetch``): it can answer differently at
each lookup, as a rebinding DNS server does. The ``enrich_http`` transform is not a target:
its host comes from the pipeline file, and event values are only percent-encoded into the path.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.config.bulk import FetchSettings
from headrace.errors import LoadError
from headrace.loads.fetch import Fetcher
from support.exportserver import EXPORT_HOST, FileServer, serving


class Canary:
    """A TCP server on 127.0.0.1 that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


@pytest.fixture
def origin() -> Iterator[FileServer]:
    yield from serving(EXPORT_HOST)


def hostile_urls(port: int) -> list[str]:
    """Spellings of this machine's loopback (and its other non-public addresses)."""
    hosts = [
        "127.0.0.1", "2130706433", "017700000001", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1",
        "127.1", "127.0.1", "127.000.000.001", "127.255.255.254", "localhost", "LOCALHOST",
        "localhost.", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::]", "0.0.0.0", "0", "[::]", "10.0.0.1", "169.254.169.254", "[fe80::1]",
    ]  # fmt: skip
    urls = [f"http://{host}:{port}/export.csv" for host in hosts]
    urls += [
        f"http://a@127.0.0.1:{port}/x.csv",  # userinfo tricks
        f"http://{EXPORT_HOST}:{port}@127.0.0.1:{port}/x.csv",
        f"http://user:pw@{EXPORT_HOST}/x.csv",
        f"https://127.0.0.1:{port}/x.csv",
        f"http://127.0.0.1:{port}#@{EXPORT_HOST}/x.csv",
        "file:///etc/passwd", f"gopher://127.0.0.1:{port}/_x", f"ftp://127.0.0.1:{port}/x",
    ]  # fmt: skip
    return urls


class Resolver:
    """``socket.getaddrinfo`` for the test's names: each lookup takes the next answer of its
    list (the last one repeats); any other name goes to the real resolver."""

    def __init__(self, real: Callable[..., Any], answers: dict[str, list[list[str]]]) -> None:
        self.real = real
        self.answers = answers
        self.lookups: dict[str, int] = {}

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self.real(host, port, *args, **kwargs)
        n = self.lookups.get(name, 0)
        self.lookups[name] = n + 1
        addresses = self.answers[name][min(n, len(self.answers[name]) - 1)]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, int(port or 80)))
            for a in addresses
        ]  # fmt: skip


def fetcher() -> Fetcher:
    settings = {"allow_networks": [f"{EXPORT_HOST}/32"], "attempts": 1, "backoff": 0.01}
    return Fetcher(FetchSettings.model_validate(settings))


def refused(url: str, dest: Path) -> str:
    try:
        fetcher().download(url, dest)
    except LoadError as exc:
        assert not dest.exists()
        return exc.reason
    raise AssertionError(f"{url} was fetched")


def test_no_hostile_url_reaches_the_loopback_canary(
    canary: Canary, origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    record: Callable[..., Any],
) -> None:  # fmt: skip
    # DNS: a name that answers the allowed origin for the check and loopback afterwards, a
    # name answering both at once, a redirect to a name that rebinds between hops, and the
    # root-qualified "localhost." (which this machine's resolver may not know)
    resolver = Resolver(socket.getaddrinfo, {
        "rebind.example": [[EXPORT_HOST], ["127.0.0.1"]],
        "both.example": [[EXPORT_HOST, "127.0.0.1"]],
        "mapped.example": [["::ffff:127.0.0.1"]],
        "later.example": [["127.0.0.1"]],
        "localhost.": [["127.0.0.1"]],
    })  # fmt: skip
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    direct = hostile_urls(canary.port)
    reasons: dict[str, int] = {}

    def note(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1

    for url in direct:
        note(refused(url, tmp_path / "out.csv"))
    # the same places as the target of a redirect from the allowed origin, by every status
    redirects = 0
    for i, url in enumerate(direct):
        status = (301, 302, 303, 307, 308)[i % 5]
        start = origin.add(f"/r{i}", status=status, headers={"Location": url})
        note(refused(start, tmp_path / "out.csv"))
        redirects += 1
    origin.add("/ok.csv", b"id\n1\n")
    got = fetcher().download(f"http://rebind.example:{origin.port}/ok.csv", tmp_path / "a.csv")
    assert got.path.read_bytes() == b"id\n1\n"  # fetched from the address that was checked
    assert origin.requests[-1][1]["Host"] == f"rebind.example:{origin.port}"
    assert resolver.lookups["rebind.example"] == 1  # one lookup: no second answer to follow
    note(refused(f"http://both.example:{canary.port}/x.csv", tmp_path / "b.csv"))
    note(refused(f"http://mapped.example:{canary.port}/x.csv", tmp_path / "c.csv"))
    hop = origin.add(
        "/hop", status=302, headers={"Location": f"http://later.example:{canary.port}/"}
    )
    note(refused(hop, tmp_path / "d.csv"))
    dns_cases = 4
    monkeypatch.undo()
    total = len(direct) + redirects + dns_cases
    record(load=f"{total} fetches of hostile URLs ({len(direct)} forms, {redirects} redirects, "
                f"{dns_cases} DNS answers)", faults="loopback/private spellings, redirects, "
           "DNS rebinding (resolver stub)", acknowledged=canary.connections,
           refusals=reasons)  # fmt: skip
    assert canary.connections == 0
    assert len(direct) >= 20
    assert set(reasons) <= {"forbidden_address", "forbidden_scheme", "invalid_url"}


def test_the_canary_counts_a_fetch_that_is_allowed_to_reach_it(
    canary: Canary, tmp_path: Path
) -> None:
    import time

    allowed = {"allow_networks": ["127.0.0.1/32"], "attempts": 1}
    with pytest.raises(LoadError):  # the canary hangs up without answering
        Fetcher(FetchSettings.model_validate(allowed)).download(
            f"http://127.0.0.1:{canary.port}/x.csv", tmp_path / "x.csv"
        )
    deadline = time.monotonic() + 10
    while canary.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert canary.connections == 1
