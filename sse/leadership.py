"""
Leader election among the bridges that share one durable consumer.

Bridges that pull from the same consumer in parallel would hand events to
the channel layer out of order. So only one bridge, the leader, pulls; the
others wait. The leader owns a key in a JetStream key-value bucket whose
entries expire after ``LEADER_TTL_SECONDS``. It rewrites the key well
before that, and deletes it when it stops. When a leader dies, its key
expires and a waiting bridge creates it and takes over.
"""

import logging
import time

import nats.js.errors
from nats.js.api import KeyValueConfig

logger = logging.getLogger(__name__)

# NOTE: the leader refreshes its key between batches only. A batch that
# takes longer than the TTL (a very slow Redis) lets a second bridge take
# over while the first still sends. The streams' duplicate check keeps
# their order, but both bridges pull for a while.
BUCKET = "sse-bridges"
LEADER_TTL_SECONDS = 6.0
# A leader rewrites its key at least this often; the pull loop calls
# hold() after every fetch, which waits at most 2 seconds.
REFRESH_SECONDS = 2.0


class Leadership:
    """The claim of bridge ``node_id`` on the lead for consumer ``name``."""

    def __init__(self, js, name, node_id):
        self.js = js
        self.key = name
        self.node_id = node_id.encode()
        self.bucket = None
        self.revision = None
        self.refreshed_at = 0.0

    @property
    def held(self):
        return self.revision is not None

    async def _bucket(self):
        if self.bucket is None:
            try:
                self.bucket = await self.js.key_value(BUCKET)
            except nats.js.errors.BucketNotFoundError:
                self.bucket = await self.js.create_key_value(KeyValueConfig(bucket=BUCKET, ttl=LEADER_TTL_SECONDS, history=1))
        return self.bucket

    async def hold(self):
        """
        Claim or keep the lead; return ``(held, acquired)``, where
        ``acquired`` is true when the lead was taken just now.
        """
        bucket = await self._bucket()
        now = time.monotonic()

        if self.held:
            if now - self.refreshed_at < REFRESH_SECONDS:
                return True, False
            try:
                self.revision = await bucket.update(self.key, self.node_id, last=self.revision)
                self.refreshed_at = now
                return True, False
            except nats.js.errors.KeyWrongLastSequenceError:
                logger.warning("Lost the lead of consumer %s to another bridge", self.key)
                self.revision = None
                return False, False

        try:
            self.revision = await bucket.create(self.key, self.node_id)
        except nats.js.errors.KeyWrongLastSequenceError:
            # The key may still be this bridge's own, from before a
            # failure that reset its state. Then it takes the lead back at
            # once instead of waiting for the key to expire.
            try:
                entry = await bucket.get(self.key)
            except nats.js.errors.KeyNotFoundError:
                return False, False
            if entry.value != self.node_id:
                return False, False
            self.revision = entry.revision
        self.refreshed_at = now
        logger.info("Took the lead of consumer %s", self.key)
        return True, True

    async def release(self):
        """Give up the lead at once, so that a waiting bridge need not wait for the key to expire."""
        if not self.held:
            return
        try:
            await (await self._bucket()).delete(self.key, last=self.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        self.revision = None
