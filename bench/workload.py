"""
The events the publisher sends, and the events every stream should therefore receive.

Each event's message is ``"<key> <n> <published>"``: the key is the user id
it addresses or ``all`` for a broadcast, ``n`` counts the events of that key
from 0, and ``published`` is ``time.time()`` when the publisher encoded it.
"""

BROADCAST_KEY = "all"


def user_ids(count, prefix="u"):
    """Return ``count`` distinct user ids, the same ones in every process."""
    return [f"{prefix}{index:05d}" for index in range(count)]


def event_message(key, n, published):
    return f"{key} {n} {published:.6f}"


def parse_message(data):
    """Return ``(key, n, published)`` from the ``data:`` of one event."""
    key, n, published = data.split(" ")
    return key, int(n), float(published)


def per_user_counts(users, count):
    """
    Return how many of ``count`` per-user events each user gets, for the
    publisher's round robin: event ``j`` goes to ``users[j % len(users)]``.
    """
    base, extra = divmod(count, len(users))
    return {user: base + (1 if index < extra else 0) for index, user in enumerate(users)}
