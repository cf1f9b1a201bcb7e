"""
Back-pressure from the client's socket to the stream consumer, and a
direct way to write events.

daphne writes every ``http.response.body`` message into Twisted's send
buffer at once and never signals the application that the client stopped
reading, so a stalled client would grow the process without bound.
``runsse`` therefore puts a factory of ``FlowControl`` into the ASGI scope
(``scope["extensions"]["sse.flow_control"]``). A ``FlowControl`` is a
Twisted push producer registered on the request, so Twisted pauses it
when the socket's send buffer is full and resumes it when the buffer has
drained. The consumer keeps events back while it is paused, up to a limit.
"""

import asyncio
import collections
import logging
import socket
import time

from twisted.internet import tcp
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

EXTENSION = "sse.flow_control"

logger = logging.getLogger(__name__)


@implementer(IPushProducer)
class FlowControl:
    """The paused state of one response, as Twisted reports it."""

    def __init__(self, request):
        self.request = request
        self.paused_since = None
        # Created only while someone waits for the resume: an asyncio.Event
        # per stream would cost more memory than the rest of this object.
        self._resumed = None
        request.registerProducer(self, True)
        keep_http2_connection_open(request)

    @property
    def paused(self):
        return self.paused_since is not None

    def pauseProducing(self):
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def resumeProducing(self):
        self.paused_since = None
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    async def wait_resumed(self):
        """Return once Twisted is not pausing this producer."""
        if self.paused_since is None:
            return
        if self._resumed is None or self._resumed.done():
            self._resumed = asyncio.get_running_loop().create_future()
        await self._resumed

    def stopProducing(self):
        # The connection is gone; wake anyone who waits to write.
        self.resumeProducing()

    def write(self, body):
        """
        Write ``body`` as the next part of the response, as an
        ``http.response.body`` message with ``more_body`` would, after
        the response has started.

        A stream writes one small body per event, often thousands per
        broadcast, and this skips the ASGI send path through daphne and
        ``Request.write()`` that costs more than the socket write itself.
        """
        request = self.request
        if request.finished or request.channel is None or not request.startedWriting:
            raise RuntimeError("write() needs a started and unfinished response")
        request.sentLength += len(body)
        if request.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        request.channel.write(body)

    def when_finished(self, callback):
        """
        Call ``callback()`` when the response ends: finished, or cut off
        because the client went away (for HTTP/2, also a reset stream).
        """
        if self.request.finished or self.request.channel is None:
            # notifyFinish() would never fire for a response that has ended.
            callback()
            return
        self.request.notifyFinish().addBoth(lambda result: callback())

    def release(self):
        """Unregister from the request; call it before the response ends."""
        if self.request.producer is self and not self.request.finished:
            self.request.unregisterProducer()

    def drop_if_unacknowledged(self, seconds):
        """
        Have the kernel drop the connection when data it sent stays
        unacknowledged for ``seconds``: the client vanished without closing
        (a half-open connection). Keep-alive comments give it data to send.
        """
        sock = tcp_socket(self.request.channel)
        if sock is not None:
            set_unacknowledged_timeout(sock, seconds)

    def abort(self):
        """
        Drop the response at once, with whatever Twisted still buffers for
        it: the connection under HTTP/1.1, only this stream under HTTP/2.
        """
        channel = self.request.channel
        if channel is None:
            return
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()
            return

        # Under HTTP/2 the channel is one stream of a shared connection, with
        # no transport. abortConnection() resets only this stream, so the
        # client's other streams keep running. Twisted does not report that
        # reset to the request, so connectionLost() reports to daphne that it is gone.
        channel.abortConnection()
        channel.connectionLost(Failure(ConnectionAborted("the client stopped reading")))


def keep_http2_connection_open(request):
    """
    Turn off the idle timeout of the HTTP/2 connection that carries
    ``request``, if it is one.

    Twisted (26.10) closes an HTTP/2 connection after 60 seconds without a
    frame in either direction, even while streams are open, so a stream
    that has no event and no keep-alive for a minute would end with a
    GOAWAY. Under HTTP/1.1 Twisted stops that timeout while a response is
    in progress. The timeout stays off for the rest of the connection,
    which the client closes when it no longer needs it.
    """
    # twisted.web._http2.H2Stream keeps its connection in _conn; an
    # HTTP/1.1 channel has no such attribute.
    connection = getattr(request.channel, "_conn", None)
    if connection is not None:
        connection.setTimeout(None)


def tcp_socket(channel):
    """Return the TCP socket under ``channel``'s transport, through a TLS layer if there is one."""
    transport = getattr(channel, "transport", None)
    while transport is not None:
        get_handle = getattr(transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def set_unacknowledged_timeout(sock, seconds):
    """Set ``TCP_USER_TIMEOUT`` (Linux only; elsewhere nothing happens)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is not None:
        sock.setsockopt(socket.IPPROTO_TCP, option, max(int(seconds * 1000), 1))


def flow_control_factory(request):
    """Return the scope extension that attaches a ``FlowControl`` to ``request`` on demand."""
    return lambda: FlowControl(request)


class Outbox:
    """
    The events of one stream on their way to the socket.

    ``put()`` writes at once while the client reads. While Twisted reports
    the socket's buffer as full, events wait here in order, and a drain task
    writes them when the buffer empties. ``put()`` returns ``False`` once
    more than ``max_events`` events or ``max_bytes`` bytes are waiting: the
    client cannot keep up and the stream must end.
    """

    def __init__(self, write, flow, max_events, max_bytes):
        self.write = write
        self.flow = flow
        self.max_events = max_events
        self.max_bytes = max_bytes
        # A deque only while events wait, which for a client that reads is never.
        self.waiting = None
        self.waiting_bytes = 0
        self.drain_task = None

    async def put(self, frame, *context):
        if self.flow is None or not (self.flow.paused or self.waiting):
            await self.write(frame, *context)
            return True

        if self.waiting is None:
            self.waiting = collections.deque()
        self.waiting.append((frame, context))
        self.waiting_bytes += len(frame)
        if len(self.waiting) > self.max_events or self.waiting_bytes > self.max_bytes:
            return False
        if self.drain_task is None or self.drain_task.done():
            self.drain_task = asyncio.create_task(self.drain())
        return True

    async def drain(self):
        try:
            while self.waiting:
                await self.flow.wait_resumed()
                while self.waiting and not self.flow.paused:
                    frame, context = self.waiting.popleft()
                    self.waiting_bytes -= len(frame)
                    await self.write(frame, *context)
            self.waiting = None
        except Exception as error:
            # The connection went away under the write; the consumer ends
            # the stream when daphne reports the disconnect.
            logger.debug("Writing held-back events failed: %s", error)

    def stalled_for(self):
        """Seconds since the client stopped reading, or 0 while it reads."""
        if self.flow is None or not self.flow.paused:
            return 0.0
        return time.monotonic() - self.flow.paused_since

    def discard(self):
        """Stop draining and return how many events were still waiting."""
        if self.drain_task is not None:
            self.drain_task.cancel()
        dropped = len(self.waiting) if self.waiting else 0
        self.waiting = None
        self.waiting_bytes = 0
        return dropped


class EagerWriteServer(tcp.Server):
    """
    A TCP connection that hands a write to the socket at once when nothing
    is queued before it.

    Twisted queues every write and sends it on the next turn of the event
    loop. It registers the socket for writability before and removes it
    after, which costs two ``epoll_ctl`` calls, a loop callback and, in
    asyncio, a dictionary lookup that raises and catches ``KeyError``. That
    happened for every event of every stream. Writing at once skips all of that whenever the
    kernel's send buffer has room, which for a client that reads is always.
    What the socket does not take is queued as before, so back-pressure and
    the ``FlowControl`` producer keep working.

    The first writes of a connection are queued as usual, so that the
    response head and the first part of the body leave in one ``send()``.
    """

    # Set once the first queued write went out.
    _flushed = False

    def doWrite(self):
        self._flushed = True
        return super().doWrite()

    def write(self, data):
        if self._flushed and self._idle() and data:
            sent = self.writeSomeData(data)
            if not isinstance(sent, int):
                # The connection is gone; the queued write reports it.
                super().write(data)
                return
            if sent == len(data):
                return
            data = bytes(memoryview(data)[sent:])
        super().write(data)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _idle(self):
        return (
            self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        )


def send_eagerly(port):
    """Make the connections that ``port`` (a listening TCP port) accepts from now on write eagerly."""
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = EagerWriteServer
