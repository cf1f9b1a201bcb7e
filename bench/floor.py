"""
The floor of the benchmark: a minimal SSE server written directly against
ASGI and served by uvicorn (httptools, uvloop).

It does what runsse does on the hot path and nothing else. It checks the
``x-access-token`` JWT and keeps one ``asyncio.Queue`` per stream. It
consumes ``main-queue`` with the pull consumer of the runsse bridge
(``sse.pull.PullConsumer``), acknowledges once per batch as the bridge
does, and puts each encoded frame into the
queues of the users it addresses. There is no channel layer, no limit on slow
clients, no metrics and no keep-alive.

Run as ``python -m bench.floor --port PORT --nats URL --jwt-secret SECRET``;
``GET /ready`` returns 200 once the consumer exists.
"""

import argparse
import asyncio
import contextlib
import logging
import resource
import uuid

import jwt
import nats
import uvicorn
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.publisher import add_stream_if_missing
from sse.exceptions import MalformedEvent
from sse.pull import PullConsumer
from sse.wire import BROADCAST_USER_ID, decode_event, encode_comment, encode_frame

logger = logging.getLogger(__name__)

SUBJECT = "main-queue"
# The batch size and acknowledgement window of the runsse bridge.
FETCH_BATCH = 256
MAX_ACK_PENDING = 4 * FETCH_BATCH
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
OPENING = encode_comment("stream opened")


class FloorApp:
    """The ASGI application: ``/sse`` streams and ``/ready``."""

    def __init__(self, nats_url, jwt_secret):
        self.nats_url = nats_url
        self.jwt_secret = jwt_secret
        self.queues = {}
        self.ready = False
        self.consumer_task = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["path"] == "/ready":
            status = 200 if self.ready else 503
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self.stream(scope, receive, send)

    async def lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.consumer_task = asyncio.create_task(self.consume())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.consumer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.consumer_task
                await send({"type": "lifespan.shutdown.complete"})
                return

    def user_of(self, scope):
        token = dict(scope["headers"]).get(b"x-access-token", b"").decode()
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], audience="reva", leeway=5)
            return claims["user"]["id"]["opaque_id"]
        except (jwt.InvalidTokenError, KeyError, TypeError):
            return None

    async def stream(self, scope, receive, send):
        user_id = self.user_of(scope)
        if user_id is None:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return

        queue = asyncio.Queue()
        self.queues.setdefault(user_id, set()).add(queue)
        watcher = asyncio.create_task(self.watch_disconnect(receive, queue))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": OPENING, "more_body": True})
            while True:
                frame = await queue.get()
                if frame is None:
                    break
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            watcher.cancel()
            members = self.queues[user_id]
            members.discard(queue)
            if not members:
                del self.queues[user_id]

    @staticmethod
    async def watch_disconnect(receive, queue):
        while (await receive())["type"] != "http.disconnect":
            pass
        queue.put_nowait(None)

    async def consume(self):
        connection = await nats.connect(self.nats_url)
        js = connection.jetstream()
        await add_stream_if_missing(js)
        name = f"floor-{uuid.uuid4()}"
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.ALL,
            max_ack_pending=MAX_ACK_PENDING,
            filter_subject=SUBJECT,
        )
        await js.add_consumer(SUBJECT, config=config)
        subscription = PullConsumer(connection, SUBJECT, name, batch=FETCH_BATCH, expires=2.0)
        await subscription.start()
        self.ready = True
        try:
            while True:
                messages = await subscription.next_batch(2.0)
                for message in messages:
                    self.fan_out(message)
                if messages:
                    await messages[-1].ack()
        finally:
            await connection.close()

    def fan_out(self, message):
        try:
            event = decode_event(message.data)
        except MalformedEvent as error:
            logger.warning("Skipped malformed event: %s", error)
            return
        if event is None:
            return

        frame = encode_frame(event.type, event.message, message.metadata.sequence.stream)
        if BROADCAST_USER_ID in event.user_ids:
            targets = [queue for members in self.queues.values() for queue in members]
        else:
            targets = [queue for user_id in event.user_ids for queue in self.queues.get(user_id, ())]
        for queue in targets:
            queue.put_nowait(frame)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the benchmark's floor SSE server on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True, help="TCP port of the streams")
    parser.add_argument("--nats", required=True, help="NATS URL, such as nats://127.0.0.1:4222")
    parser.add_argument("--jwt-secret", required=True, help="HS256 secret of the x-access-token JWTs")
    args = parser.parse_args(argv)

    # Every stream uses a socket, so allow as many as the hard limit does.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    app = FloorApp(args.nats, args.jwt_secret)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
