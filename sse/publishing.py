"""
Sending events from Django code.

``publish`` and ``apublish`` put a SendSSE event on NATS in the oCIS wire
format, so every ``runsse`` process delivers it, with an id, into the
replay history. ``send_local`` and ``asend_local`` hand it straight to the
channel layer of this process, for a project that serves the streams
itself in one process. Those events carry no id and cannot be replayed.
"""

import nats
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .bridge import SUBJECT, target_groups
from .nats_options import nats_connect_options
from .conf import get_config
from .wire import encode_envelope, encode_frame


def _check(user_ids, event_type):
    if isinstance(user_ids, (str, bytes)):
        raise TypeError(f"user_ids must be a list of user ids, not the string {user_ids!r}")
    if not user_ids:
        raise ValueError("user_ids is empty; pass ['all'] to reach every stream")
    if "\r" in event_type or "\n" in event_type:
        raise ValueError(f"event_type {event_type!r} contains a line break")


async def _ignore_error(error):
    pass


async def apublish(user_ids, event_type, message, *, connection=None):
    """
    Publish one event for ``user_ids`` (``["all"]`` for everyone) and
    return its JetStream stream sequence, which becomes its event id.

    ``message`` is text or bytes. Without ``connection`` (a nats-py
    client), each call connects to ``SSE_EVENTS_ENDPOINT`` and closes
    again; pass one to publish many events.
    """
    _check(user_ids, event_type)
    data = encode_envelope(list(user_ids), event_type, message)
    if connection is not None:
        return (await connection.jetstream().publish(SUBJECT, data)).seq

    options = nats_connect_options(get_config())
    # Fail after two attempts per server instead of retrying for ever.
    options.update(max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=_ignore_error)
    connection = await nats.connect(**options)
    try:
        return (await connection.jetstream().publish(SUBJECT, data, timeout=5)).seq
    finally:
        await connection.close()


def publish(user_ids, event_type, message):
    """Publish like ``apublish``, from synchronous code such as views and management commands."""
    return async_to_sync(apublish)(user_ids, event_type, message)


async def asend_local(user_ids, event_type, message):
    """Write one event to the streams of ``user_ids`` on this process, without NATS."""
    _check(user_ids, event_type)
    if isinstance(message, str):
        message = message.encode()
    payload = {"type": "sse.event", "frame": encode_frame(event_type, message)}
    layer = get_channel_layer()
    for group in target_groups(list(user_ids)):
        await layer.group_send(group, payload)


def send_local(user_ids, event_type, message):
    """Send like ``asend_local``, from synchronous code."""
    async_to_sync(asend_local)(user_ids, event_type, message)
