"""
Publish oCIS ``SendSSE`` events on the NATS subject ``main-queue``, which
the JetStream stream of the same name stores.

Run as ``python -m bench.publisher``, so that its CPU time does not count
against the load client. It prints one JSON line with what it published.
"""

import argparse
import asyncio
import json
import sys
import time

import nats
import nats.js.errors

from sse.wire import encode_envelope

from .workload import BROADCAST_KEY, event_message, user_ids

SUBJECT = "main-queue"
EVENT_TYPE = "bench"

# As fast as possible still waits for the server's PONG after this many
# messages, so that the publisher cannot run far ahead of JetStream.
FLUSH_EVERY = 500


async def ensure_stream(nats_url):
    """Create the ``main-queue`` stream if it is missing, as the bridge of runsse would."""
    connection = await nats.connect(nats_url)
    try:
        await add_stream_if_missing(connection.jetstream())
    finally:
        await connection.close()


async def add_stream_if_missing(js):
    """Create the ``main-queue`` stream through the JetStream context ``js`` if it is missing."""
    try:
        await js.stream_info(SUBJECT)
    except nats.js.errors.NotFoundError:
        await js.add_stream(name=SUBJECT, subjects=[SUBJECT])


async def publish(nats_url, users, count, rate, broadcast=False):
    """
    Publish ``count`` events at ``rate`` per second (0 means as fast as
    possible) and return a summary.

    Per-user event ``j`` goes to ``users[j % len(users)]``; with
    ``broadcast`` every event has ``UserIDs: ["all"]``.
    """
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    before = (await js.stream_info(SUBJECT)).state.last_seq
    cpu_start = time.process_time()
    start = time.monotonic()

    for j in range(count):
        if rate:
            delay = start + j / rate - time.monotonic()
            if delay > 0.001:
                await asyncio.sleep(delay)
        if broadcast:
            key, n = BROADCAST_KEY, j
        else:
            key, n = users[j % len(users)], j // len(users)
        message = event_message(key, n, time.time())
        await connection.publish(SUBJECT, encode_envelope([key], EVENT_TYPE, message))
        if (j + 1) % FLUSH_EVERY == 0:
            await connection.flush()

    await connection.flush()
    seconds = time.monotonic() - start
    after = (await js.stream_info(SUBJECT)).state.last_seq
    await connection.close()
    return {
        "published": count,
        "stored": after - before,
        "seconds": round(seconds, 3),
        "rate": round(count / seconds, 1) if seconds else None,
        "cpu_seconds": round(time.process_time() - cpu_start, 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--nats", required=True, help="NATS URL, such as nats://127.0.0.1:4222")
    parser.add_argument("--users", type=int, default=1, help="number of users, named as bench.workload.user_ids names them")
    parser.add_argument("--user-prefix", default="u", help="prefix of the user ids")
    parser.add_argument("--count", type=int, required=True, help="number of events to publish")
    parser.add_argument("--rate", type=float, default=0, help="events per second; 0 publishes as fast as possible")
    parser.add_argument("--broadcast", action="store_true", help='address every event to "all"')
    args = parser.parse_args(argv)

    summary = asyncio.run(
        publish(args.nats, user_ids(args.users, args.user_prefix), args.count, args.rate, args.broadcast)
    )
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
