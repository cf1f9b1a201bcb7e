"""
Channel-layer group names shared by the stream consumer and the bridge.

Channels allows only ASCII letters, digits, ``-``, ``_`` and ``.`` in
group names, up to 100 characters, while user ids may contain anything.
A user's group name is therefore derived from a hash of the user id.
"""

import hashlib

BROADCAST_GROUP = "sse.all"


def user_group(user_id):
    """Return the channel-layer group that every stream of ``user_id`` joins."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()
    return f"sse.user.{digest}"
