"""
The load client: many ``text/event-stream`` responses on raw asyncio
sockets in one process.

Each stream is an ``asyncio.Protocol`` that removes the chunked framing and
splits the body into blocks. While a scenario runs it only stores each
event block with the time its bytes arrived. Parsing and checking happen
afterwards, so that the client stays cheap compared with the server.
"""

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

from .workload import BROADCAST_KEY, parse_message

CONNECT_CONCURRENCY = 100


class StreamError(Exception):
    """A stream could not be opened or ended while it was expected to stay open."""


@dataclass(frozen=True)
class EventFormat:
    """
    The shape of a server's event blocks, which the client needs to read
    the benchmark's events back.

    ``control_prefixes`` starts every block that is not an event of the
    benchmark (a bytes prefix or a tuple of them, for ``bytes.startswith``).
    The first such block shows that the stream has opened. With
    ``numbered``, each event must carry an ``id:`` that is an integer
    rising over the whole stream. With ``json_data``, the ``data:`` lines
    hold the message as a JSON string.
    """

    control_prefixes: object = b":"
    numbered: bool = True
    json_data: bool = False


# runsse and the floor: comments, then "id: <sequence>" on every event.
PLAIN = EventFormat()

# django-eventstream 5.3 opens with a padding comment and a "stream-open"
# event, sends a "keep-alive" event after 20 s without events, writes no
# id: while event storage is off, and JSON-encodes the data of send_event().
# Its order is per channel, so only the counter of each key is checked.
DJANGO_EVENTSTREAM = EventFormat(
    control_prefixes=(b":", b"event: stream-open\n", b"event: keep-alive\n"),
    numbered=False,
    json_data=True,
)

# The formats by name, for client processes that take one on the command line.
EVENT_FORMATS = {"plain": PLAIN, "django-eventstream": DJANGO_EVENTSTREAM}


class StreamProtocol(asyncio.Protocol):
    """One stream: sends the request, then collects ``(received, block)`` pairs of its events."""

    def __init__(self, client, request):
        self.client = client
        self.request = request
        self.transport = None
        self.raw = bytearray()
        self.body = bytearray()
        self.head_done = False
        self.chunked = False
        # Bytes of chunk data still to come, and whether the CRLF after
        # the chunk data is still to come.
        self.chunk_left = 0
        self.chunk_crlf = False
        self.events = []
        self.control_prefixes = client.event_format.control_prefixes
        self.opened = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(StreamError(f"the connection closed before the stream opened: {exc}"))

    def data_received(self, data):
        received = time.time()
        self.raw += data
        if not self.head_done and not self._parse_head():
            return
        if self.chunked:
            self._dechunk()
        else:
            self.body += self.raw
            del self.raw[:]
        self._split_blocks(received)

    def _parse_head(self):
        end = self.raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.raw[:end]).decode("latin-1").lower()
        del self.raw[: end + 4]
        self.head_done = True
        status_line = head.split("\r\n", 1)[0]
        if status_line.split(" ")[1] != "200":
            self.opened.set_exception(StreamError(f"the server responded {status_line!r} instead of 200"))
            self.transport.close()
            return False
        self.chunked = "transfer-encoding: chunked" in head
        return True

    def _dechunk(self):
        raw = self.raw
        while raw:
            if self.chunk_crlf:
                if len(raw) < 2:
                    return
                del raw[:2]
                self.chunk_crlf = False
            if self.chunk_left == 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(raw[:end]).split(b";")[0], 16)
                del raw[: end + 2]
                if size == 0:
                    return
                self.chunk_left = size
            take = min(self.chunk_left, len(raw))
            self.body += raw[:take]
            del raw[:take]
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.chunk_crlf = True

    def _split_blocks(self, received):
        body = self.body
        start = 0
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            block = bytes(body[start:end])
            start = end + 2
            if block.startswith(self.control_prefixes):
                # The first control block (runsse's ": stream opened",
                # django-eventstream's padding comment) shows that the
                # server has subscribed the stream to its groups or channels.
                if not self.opened.done():
                    self.opened.set_result(None)
                continue
            self.events.append((received, block))
            self.client.delivered += 1
        if start:
            del body[:start]
        if self.client.target and self.client.delivered >= self.client.target:
            self.client.reached.set()


@dataclass
class StreamCheck:
    """The outcome of comparing what the streams received with what they should have."""

    expected: int = 0
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    closed_streams: int = 0
    latencies: list = field(default_factory=list, repr=False)
    broadcast_latencies: list = field(default_factory=list, repr=False)
    first_published: float = None
    last_received: float = None

    @property
    def correct(self):
        return not (self.missing or self.duplicates or self.out_of_order or self.unexpected or self.closed_streams)

    def latency_ms(self, quantile, broadcast=False):
        """
        Return the ``quantile`` (0 to 1) of publish-to-receive latency in
        milliseconds, of the per-user events or, with ``broadcast``, of the broadcasts.
        """
        latencies = self.broadcast_latencies if broadcast else self.latencies
        if not latencies:
            return None
        ordered = sorted(latencies)
        index = min(len(ordered) - 1, int(quantile * len(ordered)))
        return ordered[index] * 1000

    def summary(self):
        return (
            f"{self.delivered}/{self.expected} delivered, {self.missing} missing, {self.duplicates} duplicated, "
            f"{self.out_of_order} out of order, {self.unexpected} unexpected, {self.closed_streams} streams closed"
        )


class LoadClient:
    """
    Open streams against one server and check what they receive.

    ``streams`` contains ``(user_id, protocol)`` pairs in the order they were
    opened. ``event_format`` describes how the server writes events.
    """

    def __init__(self, port, host="127.0.0.1", path="/sse", event_format=PLAIN):
        self.host = host
        self.port = port
        self.path = path
        self.event_format = event_format
        self.streams = []
        self.delivered = 0
        self.target = 0
        self.reached = asyncio.Event()

    def _request(self, token):
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\nx-access-token: {token}\r\n\r\n"
        ).encode()

    async def open(self, users_and_tokens, timeout=120.0):
        """Open one stream per ``(user_id, token)`` pair and wait until all have opened."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one(user_id, token):
            async with limit:
                protocol = StreamProtocol(self, self._request(token))
                await loop.create_connection(lambda: protocol, self.host, self.port)
                await protocol.opened
                return user_id, protocol

        opened = await asyncio.wait_for(
            asyncio.gather(*(open_one(user_id, token) for user_id, token in users_and_tokens)), timeout
        )
        self.streams.extend(opened)

    def close(self):
        for _, protocol in self.streams:
            if protocol.transport is not None:
                protocol.transport.close()
        self.streams = []

    def reset(self):
        """Forget received events before the next scenario."""
        for _, protocol in self.streams:
            protocol.events = []
        self.delivered = 0
        self.target = 0
        self.reached.clear()

    async def wait_for(self, total, timeout):
        """Wait until ``total`` events arrived across all streams; return whether they did in time."""
        self.target = total
        if self.delivered >= total:
            return True
        try:
            await asyncio.wait_for(self.reached.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def check(self, per_user, broadcasts=0):
        """
        Compare the received events with ``per_user`` (user id to number of
        per-user events) and ``broadcasts`` events for everyone.

        Every stream must get each of its user's events and every broadcast
        exactly once, numbered from 0 up, and, for a numbered event format,
        with rising ``id:``.
        """
        result = StreamCheck()
        for user_id, protocol in self.streams:
            if protocol.lost:
                result.closed_streams += 1
            expected = {user_id: per_user.get(user_id, 0), BROADCAST_KEY: broadcasts}
            result.expected += sum(expected.values())
            self._check_stream(protocol.events, expected, result, self.event_format)
        return result

    @staticmethod
    def _check_stream(events, expected, result, event_format=PLAIN):
        next_n = dict.fromkeys(expected, 0)
        seen = {key: set() for key in expected}
        last_id = 0
        for received, block in events:
            result.delivered += 1
            try:
                event_id, data = _parse_block(block, event_format)
                key, n, published = parse_message(data)
            except ValueError:
                result.unexpected += 1
                continue
            if key == BROADCAST_KEY:
                result.broadcast_latencies.append(received - published)
            else:
                result.latencies.append(received - published)
            if result.first_published is None or published < result.first_published:
                result.first_published = published
            if result.last_received is None or received > result.last_received:
                result.last_received = received

            if key not in next_n or n >= expected[key]:
                result.unexpected += 1
                continue
            if n in seen[key]:
                result.duplicates += 1
                continue
            if n != next_n[key] or (event_format.numbered and event_id <= last_id):
                result.out_of_order += 1
            last_id = max(last_id, event_id)
            seen[key].add(n)
            next_n[key] = max(next_n[key], n + 1)

        for key, count in expected.items():
            result.missing += count - len(seen[key])


def _parse_block(block, event_format=PLAIN):
    """
    Return ``(id, data)`` of one event block. The id is 0 when it is
    missing or when ``event_format`` is not numbered. Raises ``ValueError``
    for a block that the format cannot read.
    """
    event_id = 0
    data = []
    for line in block.decode().split("\n"):
        if line.startswith("id: ") and event_format.numbered:
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data.append(line[6:])
    text = "\n".join(data)
    if event_format.json_data:
        text = json.loads(text)
        if not isinstance(text, str):
            raise ValueError(f"the data is JSON but not a string: {text!r}")
    return event_id, text


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None
