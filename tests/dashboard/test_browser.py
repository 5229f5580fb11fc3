"""The browser tracker and the pages' security policy in headless Chromium (Debian's package,
driven by Playwright); the dashboard's views are in test_browser_views.py. ``scripts/test``
installs Chromium; without it these tests fail, they never skip."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from dashboard.conftest import wait_until
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]


def stream_events(server: ServerProcess, stream: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/streams/{stream}/events", timeout=10)
    if response.status_code == 404 and response.json()["error"] == "unknown_stream":
        return []  # nothing stored in it yet
    assert response.status_code == 200, response.text  # any other answer must not read as "none"
    return list(response.json()["events"])


def test_demo_sends_views_and_clicks_on_page_hide(serve: Serve, page: Any) -> None:
    server = serve()
    # a big batch and a long interval: nothing leaves until the page is hidden
    page.goto(f"{server.url}/demo?stream=demo&batch=50&interval=600000")
    page.click("#buy")
    page.click("#wish span")  # the marked element is the button around it
    page.click("#untracked")
    page.click("#custom")
    page.click("#spa")  # pushState: a single-page-app page view
    assert page.evaluate("headrace.queued()") == 5
    assert stream_events(server, "demo") == []
    page.goto("about:blank")  # navigate away: pagehide hands the queue to sendBeacon

    events = wait_until(lambda: len(found := stream_events(server, "demo")) >= 5 and found)
    by_name = {e["data"]["event"]: e["data"] for e in events}
    assert sorted(by_name) == ["add_to_cart", "custom_event", "page_view", "wishlist"]
    assert by_name["add_to_cart"]["props"] == {"sku": "SNK-42", "text": "Add to cart"}
    assert by_name["wishlist"]["props"]["sku"] == "SNK-42"
    assert by_name["custom_event"]["props"] == {"plan": "pro", "seats": 3}
    views = sorted(e["data"]["pagePath"] for e in events if e["data"]["event"] == "page_view")
    assert views == ["/demo", "/demo/checkout"]
    checkout = next(e["data"] for e in events if e["data"]["pagePath"] == "/demo/checkout")
    assert checkout["referrer"].endswith("/demo?stream=demo&batch=50&interval=600000")
    assert "Chrome" in by_name["add_to_cart"]["userAgent"]
    assert len(events) == 5  # the untracked button sent nothing


def test_tracker_retries_with_backoff_and_respects_dnt(
    serve: Serve, page: Any, console_allowed: list[str]
) -> None:
    console_allowed.append("status of 503")  # the refusal this test answers itself
    server = serve()
    answers: list[int] = []

    def flaky(route: Any) -> None:
        if not answers:
            answers.append(503)
            route.fulfill(status=503, headers={"Retry-After": "0"}, body="")
        else:
            answers.append(0)
            route.continue_()

    page.route("**/v1/streams/retried/events", flaky)
    page.goto(f"{server.url}/demo?stream=retried&batch=2&interval=100")
    page.click("#buy")  # with the page view: a full batch of 2
    # Playwright runs route handlers only while the test waits on the page
    for _ in range(300):
        events = stream_events(server, "retried")
        if len(events) >= 2:
            break
        page.wait_for_timeout(100)
    assert len(events) == 2 and answers[0] == 503 and len(answers) >= 2

    page.add_init_script("Object.defineProperty(navigator, 'doNotTrack', {get: () => '1'})")
    page.goto(f"{server.url}/demo?stream=private&batch=1&interval=100&dnt=1")
    page.click("#buy")
    assert page.evaluate("headrace.queued()") == 0
    page.goto("about:blank")
    page.goto(
        f"{server.url}/demo?stream=counted&batch=1&interval=100"
    )  # DNT honoured only if asked
    wait_until(lambda: stream_events(server, "counted"))
    assert stream_events(server, "private") == []


def queue_big_events(page: Any, count: int, tag: str) -> None:
    """``count`` events of ~600 bytes each: together far over the browser's 64 KB keepalive cap."""
    page.evaluate(
        f"for (var i = 0; i < {count}; i++) headrace.track('big', {{tag: '{tag}', i: i, blob: 'x'.repeat(550)}})"
    )


def tagged(server: ServerProcess, stream: str, tag: str) -> list[int]:
    response = httpx.get(f"{server.url}/v1/streams/{stream}/events?limit=1000", timeout=10)
    if response.status_code == 404 and response.json()["error"] == "unknown_stream":
        return []  # nothing stored in it yet
    return sorted(
        e["data"]["props"]["i"]
        for e in response.json()["events"]
        if e["data"].get("props", {}).get("tag") == tag
    )


def test_page_hide_sends_a_queue_over_64_kb_in_chunks(serve: Serve, page: Any) -> None:
    server = serve()
    page.goto(f"{server.url}/demo?stream=hide&batch=1000&interval=600000")
    queue_big_events(page, 150, "hide")  # ~90 KB: one sendBeacon body this size is refused
    assert page.evaluate("headrace.queued()") == 151
    page.goto("about:blank")
    # whatever the browser would not take at page hide waits in localStorage for the next visit
    page.goto(f"{server.url}/demo?stream=hide&batch=1000&interval=100")
    assert wait_until(lambda: tagged(server, "hide", "hide") == list(range(150)) or None)


def test_a_batch_over_64_kb_is_sent_in_chunks(serve: Serve, page: Any) -> None:
    server = serve()
    page.goto(f"{server.url}/demo?stream=bulk&batch=200&interval=600000")
    queue_big_events(page, 200, "bulk")  # reaching batchSize flushes ~120 KB of events
    for _ in range(300):
        if len(tagged(server, "bulk", "bulk")) >= 200:
            break
        page.wait_for_timeout(100)
    assert tagged(server, "bulk", "bulk") == list(range(200))
    assert page.evaluate("headrace.queued()") == 0


def test_tracker_waits_out_retry_after_while_events_keep_coming(
    serve: Serve, page: Any, console_allowed: list[str]
) -> None:
    console_allowed.append("status of 429")  # the refusal this test answers itself
    server = serve()
    seen: list[float] = []

    def busy_once(route: Any) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            route.fulfill(status=429, headers={"Retry-After": "2"}, body="")
        else:
            route.continue_()

    page.route("**/v1/streams/patient/events", busy_once)
    page.goto(f"{server.url}/demo?stream=patient&batch=2&interval=100")
    page.click("#buy")  # with the page view, a full batch: answered 429, Retry-After: 2
    for _ in range(50):
        if seen:
            break
        page.wait_for_timeout(20)
    for _ in range(3):  # new events, a full batch each time, must not hurry the retry
        page.click("#custom")
        page.wait_for_timeout(300)
    for _ in range(100):
        if len(stream_events(server, "patient")) >= 5:
            break
        page.wait_for_timeout(100)
    assert len(stream_events(server, "patient")) == 5
    assert seen[1] - seen[0] >= 1.8, [round(t - seen[0], 2) for t in seen]


def test_pages_work_under_their_content_security_policy(
    serve: Serve, page: Any, console_allowed: list[str]
) -> None:
    console_allowed.append("Framing .* violates .*frame-ancestors")  # the refusal tested last
    server = serve()
    assert httpx.post(f"{server.url}/v1/streams/shop/events", json=[{"a": 1}]).status_code == 202
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    page.goto(f"{server.url}/demo?stream=csp&batch=50&interval=600000")
    page.click("#buy")
    assert page.evaluate("headrace.queued()") == 2  # the demo's script ran
    page.goto(f"{server.url}/#/pagehits?stream=analytics&range=1h")
    page.wait_for_selector("body[data-ready=pagehits] #snippet")  # nothing sent there yet
    page.goto(f"{server.url}/")
    page.wait_for_selector("#stream-shop .arrivals canvas")
    assert violations == []
    # another site cannot frame the dashboard
    page.set_content(f'<iframe id="f" src="{server.url}/"></iframe>')
    page.wait_for_timeout(1000)
    assert page.frame_locator("#f").locator("#autorefresh").count() == 0


def test_a_page_on_another_origin_waits_out_the_servers_retry_after(
    serve: Serve, page: Any, console_allowed: list[str]
) -> None:
    """The real server's 429 to a page of another site (another port: another origin): the
    tracker can read Retry-After only because the CORS answer exposes it; otherwise it would
    retry within a second."""
    console_allowed.append("status of 429")  # the rate limit this test runs into on purpose
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body: list[bytes] = []

    class ShopPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, *args: Any) -> None:
            pass

    shop = ThreadingHTTPServer(("127.0.0.1", 0), ShopPage)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{shop.server_address[1]}"
    try:
        server = serve(
            f"""
sources:
  shop:
    type: http
    rate_limit: {{rate: 0.25, burst: 1}}
    cors: {{allow_origins: ["{origin}"]}}
sinks:
  lake: {{type: lake, inputs: [shop]}}
"""
        )
        body.append(
            f"""<!doctype html><title>shop</title>
<script src="{server.url}/sdk/headrace.js"></script>
<script>headrace.init({{endpoint: "{server.url}", stream: "shop", batchSize: 1, flushInterval: 50}});
headrace.track("second", {{}});</script>""".encode()
        )
        sent: list[tuple[float, int]] = []
        page.on(
            "response",
            lambda r: (
                "/v1/streams/shop/events" in r.url
                and r.request.method == "POST"
                and sent.append((time.monotonic(), r.status))
            ),
        )
        page.goto(f"{origin}/")
        for _ in range(150):  # the page view goes in; "second" meets 429 until the bucket refills
            if len(stream_events(server, "shop")) >= 2:
                break
            page.wait_for_timeout(100)
        assert len(stream_events(server, "shop")) == 2
        statuses = [status for _, status in sent]
        assert statuses[:2] == [202, 429] and statuses[-1] == 202, statuses
        assert sent[2][0] - sent[1][0] >= 3.0, [round(t - sent[0][0], 2) for t, _ in sent]
    finally:
        shop.shutdown()
