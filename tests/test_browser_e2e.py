"""
End-to-end tests in headless Chromium (Debian's package at
/usr/bin/chromium), driven by Playwright, which does not download a
browser when it is given that executable.

The page comes from a small HTTP server of the test on another port than
the service, so every stream request is a cross-origin request with a
CORS preflight. It subscribes with fetch and the x-access-token header,
as the oCIS web client does, and records the events it parses.
"""

import asyncio
import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .service import ServiceProcess

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module", autouse=True)
def chromium_installed():
    """Fail loudly, not skip, when the browser these tests need is missing."""
    assert shutil.which(CHROMIUM) is not None, f"{CHROMIUM} is missing; .ci/run installs it with apt"


# Without these flags Chromium connects to Google's services at start-up,
# and those connections fail on a machine without internet access.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = Path(__file__).with_name("browser_page.html")


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serve the test page at / and nothing else."""

    def do_GET(self):
        if self.path != "/":
            self.send_error(404)
            return
        body = PAGE.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def page_url():
    """The URL of the test page, on its own origin on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def browser():
    """A fresh headless Chromium with an empty profile."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def open_page(browser, page_url, **context_options):
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    await page.goto(page_url)
    return page


async def subscribe(page, name, url, user_id):
    await page.evaluate("([name, url, token]) => window.subscribe(name, url, token)", [name, url, token_for(user_id)])


async def wait_received(page, count, timeout=5.0):
    """Wait until the page has recorded ``count`` events and return them."""
    await page.wait_for_function(f"window.received.length >= {count}", timeout=timeout * 1000)
    return await page.evaluate("window.received")


async def publish(jetstream, user_id, event_type, text):
    return (await jetstream.publish("main-queue", encode_envelope([user_id], event_type, text))).seq


async def wait_active(service, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        active = await asyncio.to_thread(service.metric, "sse_connections_active")
        if active == expected:
            return
        assert time.monotonic() < deadline, f"sse_connections_active is {active}, expected {expected}"
        await asyncio.sleep(0.05)


def stream_url(service, scheme="http"):
    return f"{scheme}://127.0.0.1:{service.http_port}/ocs/v2.php/apps/notifications/api/v1/notifications/sse"


async def test_fetch_stream_records_events(browser, page_url, service, jetstream, user_id):
    page = await open_page(browser, page_url)

    await subscribe(page, "notifications", stream_url(service), user_id)
    first = await publish(jetstream, user_id, "userlog-notification", '{"subject":"hello"}')
    second = await publish(jetstream, user_id, "postprocessing-finished", "line one\nline two")
    received = await wait_received(page, 2)

    assert received == [
        {"stream": "notifications", "id": str(first), "type": "userlog-notification", "data": '{"subject":"hello"}'},
        {"stream": "notifications", "id": str(second), "type": "postprocessing-finished", "data": "line one\nline two"},
    ]
    assert await page.evaluate("window.opened") == [
        {"stream": "notifications", "status": 200, "contentType": "text/event-stream; charset=utf-8"}
    ]
    assert await page.evaluate("window.failures") == []


async def test_reconnect_resumes_last_event_id(browser, page_url, service, jetstream, user_id):
    page = await open_page(browser, page_url)
    await subscribe(page, "notifications", stream_url(service), user_id)
    seen = await publish(jetstream, user_id, "n", "seen")
    await wait_received(page, 1)

    await page.evaluate("window.unsubscribe('notifications')")
    await wait_active(service, 0)
    missed = [await publish(jetstream, user_id, "n", f"missed {number}") for number in range(2)]
    await asyncio.sleep(0.2)
    await subscribe(page, "notifications", stream_url(service), user_id)
    await wait_received(page, 3)
    live = await publish(jetstream, user_id, "n", "live")
    received = await wait_received(page, 4)

    assert [(event["id"], event["type"], event["data"]) for event in received] == [
        (str(seen), "n", "seen"),
        (str(missed[0]), "n", "missed 0"),
        (str(missed[1]), "n", "missed 1"),
        (str(live), "n", "live"),
    ]
    assert len(await page.evaluate("window.opened")) == 2
    assert await page.evaluate("window.failures") == []


async def test_event_source_without_token(browser, page_url, service):
    """A native EventSource cannot send x-access-token, so the 401 closes it with an error event."""
    page = await open_page(browser, page_url)

    await page.evaluate("url => window.openEventSource(url)", stream_url(service))
    await page.wait_for_function("window.sourceEvents.length >= 1", timeout=5000)
    await asyncio.sleep(0.5)
    events = await page.evaluate("window.sourceEvents")

    assert events == [{"type": "error", "readyState": 2}]


async def test_page_reads_rejection_reason(browser, page_url, service):
    """The 401 carries CORS headers, so the page on another origin can read why it was rejected."""
    page = await open_page(browser, page_url)

    status, body = await page.evaluate(
        """async url => {
            const response = await fetch(url, {headers: {"x-access-token": "not-a-token"}});
            return [response.status, await response.json()];
        }""",
        stream_url(service),
    )

    assert status == 401
    assert body == {"code": "token_invalid", "detail": "The token is invalid."}


async def test_http11_six_streams_per_host(browser, page_url, service, user_id):
    """Over HTTP/1.1, Chromium opens six streams to one host and queues the rest."""
    page = await open_page(browser, page_url)

    for number in range(8):
        await page.evaluate(
            "([name, url, token]) => { window.subscribe(name, url, token); }",
            [f"tab {number}", stream_url(service), token_for(user_id)],
        )
    await page.wait_for_function("window.opened.length >= 6", timeout=5000)
    await asyncio.sleep(1.0)

    assert len(await page.evaluate("window.opened")) == 6
    await wait_active(service, 6)


async def test_http2_eight_streams(browser, page_url, nats_url, jetstream, user_id):
    """Over HTTP/2, Chromium opens every stream on one connection."""
    service = ServiceProcess(nats_url, OCIS_HTTP_TLS_ENABLED="true").start()
    try:
        # The service generates a self-signed certificate at every start.
        page = await open_page(browser, page_url, ignore_https_errors=True)
        for number in range(8):
            await page.evaluate(
                "([name, url, token]) => { window.subscribe(name, url, token); }",
                [f"tab {number}", stream_url(service, "https"), token_for(user_id)],
            )
        await page.wait_for_function("window.opened.length >= 8", timeout=5000)
        await wait_active(service, 8)
        sequence = await publish(jetstream, user_id, "n", "to every tab")
        received = await wait_received(page, 8)

        # Aborting a fetch resets its stream; the other seven stay open.
        await page.evaluate("window.unsubscribe('tab 0')")
        await wait_active(service, 7)
        after = await publish(jetstream, user_id, "n", "after one tab closed")
        later = await wait_received(page, 15)
    finally:
        assert service.stop() == 0, service.output()

    assert sorted(event["stream"] for event in received) == [f"tab {number}" for number in range(8)]
    for event in received:
        assert (event["id"], event["type"], event["data"]) == (str(sequence), "n", "to every tab")
    assert sorted(event["stream"] for event in later[8:]) == [f"tab {number}" for number in range(1, 8)]
    for event in later[8:]:
        assert (event["id"], event["type"], event["data"]) == (str(after), "n", "after one tab closed")


async def test_native_event_source_with_ticket(browser, page_url, nats_url, jetstream, user_id):
    # A page on another origin POSTs for its ticket, so POST must be allowed.
    service = ServiceProcess(nats_url, SSE_CORS_ALLOW_METHODS="GET,POST").start()
    try:
        page = await open_page(browser, page_url)
        ticket_url = f"http://127.0.0.1:{service.http_port}/sse/ticket"
        await page.evaluate(
            "([stream, ticket, token]) => window.openTicketedEventSource(stream, ticket, token, 'native')",
            [stream_url(service), ticket_url, token_for(user_id)],
        )
        await page.wait_for_function("window.sourceEvents.length >= 1", timeout=5000)

        sequence = await publish(jetstream, user_id, "native", "to a native EventSource")
        await page.wait_for_function("window.sourceEvents.length >= 2", timeout=5000)
        events = await page.evaluate("window.sourceEvents")
        await page.evaluate("window.ticketedSource.close()")
    finally:
        assert service.stop() == 0, service.output()

    assert events == [
        {"type": "open", "readyState": 1},
        {"type": "native", "id": str(sequence), "data": "to a native EventSource"},
    ]
