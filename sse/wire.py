"""
The two wire formats the service speaks: the go-micro event envelope that
oCIS publishes on NATS, and the ``text/event-stream`` framing sent to
browsers.

An oCIS event on NATS is the JSON of go-micro's ``events.Event``::

    {"Timestamp": "...", "Metadata": {"eventtype": "events.SendSSE", ...},
     "ID": "<uuid>", "Topic": "main-queue", "Payload": "<base64 JSON>"}

and the payload of a ``SendSSE`` event is
``{"UserIDs": [...], "Type": "...", "Message": "<base64 bytes>"}``. Older
reva releases sent one ``"UserID"`` string instead of the list. Go matches
JSON keys case-insensitively, so ``decode_event`` does too.
"""

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from .exceptions import MalformedEvent

SEND_SSE = "events.SendSSE"
BROADCAST_USER_ID = "all"

# The Event Stream spec ends a line at CRLF, LF or CR, and nowhere else.
# str.splitlines() would also split on U+2028, U+0085 and others.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class SendSSE:
    """A decoded ``SendSSE`` event."""

    user_ids: tuple
    type: str
    message: bytes
    event_id: str = ""
    timestamp: str = ""
    traceparent: str = ""


def _lookup(mapping, key):
    """Find ``key`` the way Go's encoding/json does: exact match first, then any case."""
    if key in mapping:
        return mapping[key]
    folded = key.casefold()
    for candidate, value in mapping.items():
        if candidate.casefold() == folded:
            return value
    raise KeyError(key)


def _b64decode(value, what):
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedEvent(f"{what} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvent(f"{what} is not valid base64") from None


def _load_object(data, what):
    try:
        decoded = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedEvent(f"{what} is not JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise MalformedEvent(f"{what} must be a JSON object, got {type(decoded).__name__}")
    return decoded


def _metadata(envelope):
    try:
        metadata = _lookup(envelope, "Metadata")
    except KeyError:
        return {}
    if not isinstance(metadata, dict):
        raise MalformedEvent(f"Metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


def event_type_of(envelope):
    """Return ``Metadata.eventtype`` of a decoded envelope, or ``""`` when absent."""
    event_type = _metadata(envelope).get("eventtype", "")
    if not isinstance(event_type, str):
        raise MalformedEvent(f"Metadata.eventtype must be a string, got {type(event_type).__name__}")
    return event_type


def decode_event(data):
    """
    Decode the bytes of a NATS message into a ``SendSSE`` event.

    Returns ``None`` for a well-formed envelope of another event type.
    Raises ``MalformedEvent`` for anything that cannot be decoded.
    """
    envelope = _load_object(data, "the message")
    if event_type_of(envelope) != SEND_SSE:
        return None

    try:
        payload = _load_object(_b64decode(_lookup(envelope, "Payload"), "Payload"), "Payload")
        event_type = _lookup(payload, "Type")
        message = _b64decode(_lookup(payload, "Message"), "Message")
    except KeyError as error:
        raise MalformedEvent(f"the SendSSE event has no {error.args[0]} field") from None

    if not isinstance(event_type, str):
        raise MalformedEvent(f"Type must be a string, got {type(event_type).__name__}")
    if "\r" in event_type or "\n" in event_type:
        raise MalformedEvent(f"Type {event_type!r} contains a line break")

    user_ids = _user_ids(payload)
    if not user_ids:
        raise MalformedEvent("the SendSSE event addresses no user (UserIDs and UserID are empty)")

    return SendSSE(
        user_ids=user_ids,
        type=event_type,
        message=message,
        event_id=_optional_string(envelope, "ID"),
        timestamp=_optional_string(envelope, "Timestamp"),
        traceparent=_optional_string(_metadata(envelope), "traceparent"),
    )


def _user_ids(payload):
    """Merge the current ``UserIDs`` list and the older ``UserID`` string, without duplicates."""
    user_ids = []
    try:
        listed = _lookup(payload, "UserIDs")
    except KeyError:
        listed = None
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            raise MalformedEvent("UserIDs must be a list of strings")
        user_ids.extend(listed)

    try:
        single = _lookup(payload, "UserID")
    except KeyError:
        single = None
    if single is not None:
        if not isinstance(single, str):
            raise MalformedEvent(f"UserID must be a string, got {type(single).__name__}")
        user_ids.append(single)

    return tuple(dict.fromkeys(user_id for user_id in user_ids if user_id))


def _optional_string(mapping, key):
    try:
        value = _lookup(mapping, key)
    except KeyError:
        return ""
    return value if isinstance(value, str) else ""


def timestamp_seconds(timestamp):
    """Return an RFC 3339 timestamp (as Go writes it) as seconds since the epoch, or ``None``."""
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def encode_frame(event_type, message, event_id=None):
    """
    Encode one event in the ``text/event-stream`` format.

    Every line of ``message`` becomes its own ``data:`` line, so a message
    with line breaks, a trailing newline or no content at all reaches the
    browser's ``MessageEvent.data`` unchanged (line breaks become LF).
    """
    parts = []
    if event_id is not None:
        parts.append(b"id: %d\n" % event_id)
    if event_type:
        parts.append(b"event: " + event_type.encode() + b"\n")
    for line in _LINE_BREAK.split(message):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def encode_comment(text):
    """Encode an Event Stream comment, which clients ignore."""
    return b"".join(b": " + line + b"\n" for line in _LINE_BREAK.split(text.encode())) + b"\n"


def encode_envelope(user_ids, event_type, message, *, event_id=None, now=None):
    """
    Encode a ``SendSSE`` event as oCIS publishes it on NATS.

    ``message`` is bytes or text; text is encoded as UTF-8.
    """
    if isinstance(message, str):
        message = message.encode()
    now = now or datetime.now(timezone.utc)
    payload = json.dumps(
        {
            "UserIDs": list(user_ids),
            "Type": event_type,
            "Message": base64.b64encode(message).decode(),
        },
        separators=(",", ":"),
    )
    envelope = {
        "Timestamp": now.isoformat().replace("+00:00", "Z"),
        "Metadata": {
            "eventid": str(uuid.uuid4()),
            "eventtype": SEND_SSE,
            "initiatorid": "",
            "traceparent": "",
        },
        "ID": event_id or str(uuid.uuid4()),
        "Topic": "main-queue",
        "Payload": base64.b64encode(payload.encode()).decode(),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()
