"""
Pulling messages from a JetStream consumer with requests kept in flight.

nats-py's ``PullSubscription.fetch()`` sends a pull request, waits for each
message of the batch with ``asyncio.wait_for`` and sends the next request
only when it is called again. So the bridge waited for a round trip
between batches and paid for a timeout per message: about 30 µs per
message on loopback. ``PullConsumer`` keeps pull requests outstanding, so
the server streams messages while the bridge handles the previous ones,
and receives them with a plain subscription callback.

The wire protocol is JetStream's: a request is a JSON message on
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` whose reply subject is
our inbox. The server sends the messages to that inbox, and with status messages
(headers only) when a request expires or cannot be served.
"""

import asyncio
import collections
import json
import time

from nats.js.api import Header

# Status codes that JetStream sends to the inbox of a pull request.
IDLE_HEARTBEAT = "100"
NO_MESSAGES = "404"
REQUEST_TIMEOUT = "408"
CONFLICT = "409"
NO_RESPONDERS = "503"

# Conflicts after which the request is merely over; any other conflict,
# such as "Consumer Deleted", means the consumer must be bound again.
FINISHED_REQUEST_CONFLICTS = ("Exceeded MaxWaiting", "Leadership Change", "Message Size Exceeds MaxBytes")

PENDING_MESSAGES = "Nats-Pending-Messages"


class PullError(Exception):
    """JetStream refused the pull requests: the consumer or stream is gone, or unreachable."""


class PullConsumer:
    """
    Receive the messages of JetStream consumer ``consumer`` of ``stream``
    over ``connection`` (a connected ``nats.aio.client.Client``).

    Up to two requests of ``batch`` messages each are in flight. Each one
    expires after ``expires`` seconds with a status message from the
    server, which shows that the consumer still exists. ``next_batch()``
    returns up to ``batch`` messages in the order the server sent them.
    """

    def __init__(self, connection, stream, consumer, *, batch, expires):
        self.connection = connection
        self.request_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.batch = batch
        self.expires = expires
        self.inbox = connection.new_inbox()
        self.subscription = None
        self.messages = collections.deque()
        self.arrived = asyncio.Event()
        # Messages asked for that have neither arrived nor expired.
        self.requested = 0
        self.requested_at = 0.0
        # When JetStream last sent anything to the inbox.
        self.answered_at = 0.0
        self.error = None

    async def start(self):
        self.subscription = await self.connection.subscribe(self.inbox, cb=self._receive)

    async def stop(self):
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await subscription.unsubscribe()

    async def next_batch(self, timeout):
        """
        Return the next messages, at most ``batch``, waiting up to
        ``timeout`` seconds for the first; an empty list when none came.
        Raises ``PullError`` when JetStream refuses the requests, and
        ``TimeoutError`` when it has sent nothing for several expiry
        periods.
        """
        await self._request_more()
        if not self.messages and self.error is None:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout)
            except TimeoutError:
                pass
        if self.error is not None:
            raise self.error
        if not self.messages and self.requested and time.monotonic() - max(self.answered_at, self.requested_at) > 3 * self.expires:
            # A request lost with a connection never expires with a status.
            self.requested = 0
            raise TimeoutError(f"JetStream sent no response to pull requests for {3 * self.expires:.0f}s")
        count = min(len(self.messages), self.batch)
        return [self.messages.popleft() for _ in range(count)]

    def forget_requests(self):
        """Forget the requests in flight; call it after a reconnect, which ends them on the server."""
        self.requested = 0

    async def _request_more(self):
        # Ask for the next batch once less than one batch is on its way, so
        # that the server keeps sending while earlier messages are handled.
        if self.requested >= self.batch or len(self.messages) >= self.batch:
            return
        request = {"batch": self.batch, "expires": int(self.expires * 1_000_000_000)}
        await self.connection.publish(self.request_subject, json.dumps(request).encode(), reply=self.inbox)
        self.requested += self.batch
        self.requested_at = time.monotonic()

    async def _receive(self, message):
        self.answered_at = time.monotonic()
        headers = message.headers
        status = headers.get(Header.STATUS) if headers else None
        if not status:
            self.messages.append(message)
            self.requested -= 1
            self.arrived.set()
            return
        if status == IDLE_HEARTBEAT:
            return
        description = headers.get(Header.DESCRIPTION, "")
        if status in (REQUEST_TIMEOUT, NO_MESSAGES) or (status == CONFLICT and description in FINISHED_REQUEST_CONFLICTS):
            pending = headers.get(PENDING_MESSAGES)
            self.requested -= int(pending) if pending and pending.isdigit() else self.requested
            self.requested = max(self.requested, 0)
        elif status == NO_RESPONDERS:
            self.error = PullError(f"no JetStream consumer responds on {self.request_subject}")
        else:
            self.error = PullError(f"JetStream rejected a pull request with status {status} {description}".strip())
        self.arrived.set()
