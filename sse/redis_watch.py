"""
Health of the Redis server behind the shared channel layer.

Redis pub/sub keeps nothing for a subscriber that is disconnected: what
the bridges publish while a process is cut off from Redis, or before it
has subscribed again, never reaches that process. ``RedisWatch`` pings
Redis every second, and while it fails, ``/readyz`` reports ``redis``.
When it works again, the process ends its open streams with a ``retry:``.
Every client then reconnects with its ``Last-Event-ID`` and learns what
it may have missed, instead of silently missing it.
"""

import asyncio
import logging

import redis.asyncio

logger = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 2.0


class RedisWatch:
    """Ping the Redis at ``url``; ``on_recovered`` is awaited after every outage."""

    def __init__(self, url, on_recovered):
        self.client = redis.asyncio.Redis.from_url(url, socket_timeout=PING_TIMEOUT_SECONDS)
        self.on_recovered = on_recovered
        self.ready = False
        self.lost = False

    async def run(self):
        while True:
            try:
                await asyncio.wait_for(self.client.ping(), PING_TIMEOUT_SECONDS)
            except Exception as error:
                if not self.lost:
                    logger.error("Redis of the channel layer is unreachable: %s", str(error) or type(error).__name__)
                self.lost = True
                self.ready = False
            else:
                self.ready = True
                if self.lost:
                    self.lost = False
                    logger.warning("Redis of the channel layer is back; ending streams so that clients resume")
                    await self.on_recovered()
            await asyncio.sleep(PING_INTERVAL_SECONDS)

    async def close(self):
        await self.client.aclose()
