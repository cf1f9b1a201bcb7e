"""
End-to-end delivery: events published on a real NATS JetStream reach
streams served by a real ``runsse`` process over real sockets.
"""

import asyncio
import base64
import json

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import envelope_json

OCS_PATH = "/ocs/v2.php/apps/notifications/api/v1/notifications/sse"
OPENING = b": stream opened\n\n"


async def open_stream(service, user_id, path="/sse", headers=()):
    response = await request(service.http_port, path, [("x-access-token", token_for(user_id)), *headers])
    assert response.status == 200
    assert await response.read_block() == OPENING
    return response


async def publish(jetstream, data):
    """Publish raw bytes on main-queue and return the stream sequence."""
    acknowledgement = await jetstream.publish("main-queue", data)
    return acknowledgement.seq


def recode(envelope, user_ids):
    """Return ``envelope`` (a decoded oCIS message) addressed to ``user_ids``."""
    payload = json.loads(base64.b64decode(envelope["Payload"]))
    payload["UserIDs"] = user_ids
    envelope = dict(envelope, Payload=base64.b64encode(json.dumps(payload).encode()).decode())
    return json.dumps(envelope).encode(), base64.b64decode(payload["Message"])


async def test_stream_response_head(service, user_id):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])

    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.header("cache-control") == "no-cache"
    assert response.header("x-accel-buffering") == "no"
    assert response.header("content-length") is None
    assert response.header("content-encoding") is None
    assert response.header("transfer-encoding") == "chunked"
    assert await response.read_block() == OPENING
    await response.close()


async def test_ocis_userlog_notification_delivered(service, jetstream, user_id):
    data, message = recode(envelope_json("userlog-notification.json"), [user_id])
    stream = await open_stream(service, user_id)

    sequence = await publish(jetstream, data)

    expected = b"id: %d\nevent: userlog-notification\ndata: %s\n\n" % (sequence, message)
    assert await stream.read_event() == expected
    await stream.close()


async def test_ocis_example_message_verbatim(service, jetstream):
    """The reference message, byte for byte, reaches both of its recipients."""
    raw = json.dumps(envelope_json("postprocessing-finished.json")).encode()
    payload = json.loads(base64.b64decode(envelope_json("postprocessing-finished.json")["Payload"]))
    first, second = payload["UserIDs"]
    message = base64.b64decode(payload["Message"])
    streams = [await open_stream(service, first), await open_stream(service, second, path=OCS_PATH)]

    sequence = await publish(jetstream, raw)

    expected = b"id: %d\nevent: postprocessing-finished\ndata: %s\n\n" % (sequence, message)
    for stream in streams:
        assert await stream.read_event() == expected
        await stream.close()


async def test_ocis_path_serves_stream(service, jetstream, user_id):
    stream = await open_stream(service, user_id, path=OCS_PATH)

    sequence = await publish(jetstream, encode_envelope([user_id], "item-renamed", '{"itemid":"a$b!c"}'))

    assert await stream.read_event() == b'id: %d\nevent: item-renamed\ndata: {"itemid":"a$b!c"}\n\n' % sequence
    await stream.close()


async def test_old_user_id_layout(service, jetstream, user_id):
    payload = {"UserID": user_id, "Type": "postprocessing-finished", "Message": base64.b64encode(b"{}").decode()}
    envelope = {"Metadata": {"eventtype": "events.SendSSE"}, "Payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    stream = await open_stream(service, user_id)

    sequence = await publish(jetstream, json.dumps(envelope).encode())

    assert await stream.read_event() == b"id: %d\nevent: postprocessing-finished\ndata: {}\n\n" % sequence
    await stream.close()


async def test_lower_case_envelope_keys(service, jetstream, user_id):
    payload = {"userids": [user_id], "type": "file-locked", "message": base64.b64encode(b"locked").decode()}
    envelope = {"metadata": {"eventtype": "events.SendSSE"}, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    stream = await open_stream(service, user_id)

    sequence = await publish(jetstream, json.dumps(envelope).encode())

    assert await stream.read_event() == b"id: %d\nevent: file-locked\ndata: locked\n\n" % sequence
    await stream.close()


async def test_other_event_types_ignored(service, jetstream, user_id):
    ignored_before = service.metric('sse_events_received_total{result="ignored"}')
    other = json.loads(encode_envelope([user_id], "x", "not for streams"))
    other["Metadata"]["eventtype"] = "events.UploadReady"
    stream = await open_stream(service, user_id)

    await publish(jetstream, json.dumps(other).encode())
    sequence = await publish(jetstream, encode_envelope([user_id], "after", "second"))

    assert await stream.read_event() == b"id: %d\nevent: after\ndata: second\n\n" % sequence
    assert service.metric('sse_events_received_total{result="ignored"}') == ignored_before + 1
    await stream.close()


async def test_malformed_messages_skipped_without_redelivery(service, jetstream, user_id):
    malformed_before = service.metric('sse_events_received_total{result="malformed"}')
    bad_payload = base64.b64encode(b'{"UserIDs": "not-a-list", "Type": "t", "Message": ""}').decode()
    malformed = [
        b"not json",
        b"[1, 2]",
        b'{"Metadata": {"eventtype": "events.SendSSE"}, "Payload": "%%% not base64"}',
        b'{"Metadata": {"eventtype": "events.SendSSE"}, "Payload": "' + bad_payload.encode() + b'"}',
        b'{"Metadata": {"eventtype": "events.SendSSE"}}',
        encode_envelope([user_id], "evil\r\nevent: injected", "x"),
        encode_envelope([], "nobody", "x"),
    ]
    stream = await open_stream(service, user_id)

    for data in malformed:
        await publish(jetstream, data)
    sequence = await publish(jetstream, encode_envelope([user_id], "good", "still delivered"))

    assert await stream.read_event() == b"id: %d\nevent: good\ndata: still delivered\n\n" % sequence
    assert service.metric('sse_events_received_total{result="malformed"}') == malformed_before + len(malformed)

    # Terminated messages are not redelivered: nothing is pending and
    # nothing was delivered twice on the service's consumer.
    (consumer,) = await jetstream.consumers_info("main-queue")
    assert consumer.num_ack_pending == 0
    assert consumer.num_redelivered == 0
    await stream.close()


async def test_multi_line_data(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    sequence = await publish(jetstream, encode_envelope([user_id], "lines", b"a\nb\r\nc\rd"))

    assert await stream.read_event() == b"id: %d\nevent: lines\ndata: a\ndata: b\ndata: c\ndata: d\n\n" % sequence
    await stream.close()


async def test_unicode_line_separators_not_split(service, jetstream, user_id):
    stream = await open_stream(service, user_id)
    message = "one\u2028two\u0085three"

    sequence = await publish(jetstream, encode_envelope([user_id], "unicode", message))

    assert await stream.read_event() == b"id: %d\nevent: unicode\ndata: %s\n\n" % (sequence, message.encode())
    await stream.close()


async def test_trailing_newline_kept(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    sequence = await publish(jetstream, encode_envelope([user_id], "trailing", b"last line\n"))

    assert await stream.read_event() == b"id: %d\nevent: trailing\ndata: last line\ndata: \n\n" % sequence
    await stream.close()


async def test_empty_message_then_normal(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    empty = await publish(jetstream, encode_envelope([user_id], "empty", b""))
    normal = await publish(jetstream, encode_envelope([user_id], "normal", b"after the empty one"))

    assert await stream.read_event() == b"id: %d\nevent: empty\ndata: \n\n" % empty
    assert await stream.read_event() == b"id: %d\nevent: normal\ndata: after the empty one\n\n" % normal
    await stream.close()


async def test_users_isolated(service, jetstream, user_id):
    other_user = user_id + "-other"
    mine = await open_stream(service, user_id)
    theirs = await open_stream(service, other_user)

    for_other = await publish(jetstream, encode_envelope([other_user], "private", "for the other user"))
    for_me = await publish(jetstream, encode_envelope([user_id], "private", "for me"))

    assert await mine.read_event() == b"id: %d\nevent: private\ndata: for me\n\n" % for_me
    assert await theirs.read_event() == b"id: %d\nevent: private\ndata: for the other user\n\n" % for_other
    await mine.close()
    await theirs.close()


async def test_three_tabs_each_get_event_once(service, jetstream, user_id):
    tabs = [await open_stream(service, user_id) for _ in range(3)]

    first = await publish(jetstream, encode_envelope([user_id], "tab", "one"))
    second = await publish(jetstream, encode_envelope([user_id], "tab", "two"))

    for tab in tabs:
        assert await tab.read_event() == b"id: %d\nevent: tab\ndata: one\n\n" % first
        assert await tab.read_event() == b"id: %d\nevent: tab\ndata: two\n\n" % second
        await tab.close()


async def test_duplicate_recipient_gets_event_once(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    first = await publish(jetstream, encode_envelope([user_id, user_id], "dup", "once"))
    second = await publish(jetstream, encode_envelope([user_id], "dup", "next"))

    assert await stream.read_event() == b"id: %d\nevent: dup\ndata: once\n\n" % first
    assert await stream.read_event() == b"id: %d\nevent: dup\ndata: next\n\n" % second
    await stream.close()


async def test_all_broadcast_reaches_every_stream_once(service, jetstream, user_id):
    streams = [
        await open_stream(service, user_id),
        await open_stream(service, user_id),
        await open_stream(service, user_id + "-second"),
    ]

    broadcast = await publish(jetstream, encode_envelope(["all", user_id], "console-notification", '{"itemid":"reload"}'))
    after = await publish(jetstream, encode_envelope(["all"], "console-notification", "after"))

    for stream in streams:
        assert await stream.read_event() == b'id: %d\nevent: console-notification\ndata: {"itemid":"reload"}\n\n' % broadcast
        assert await stream.read_event() == b"id: %d\nevent: console-notification\ndata: after\n\n" % after
        await stream.close()


async def test_burst_of_500_complete_and_in_order(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    sequences = [await publish(jetstream, encode_envelope([user_id], "burst", str(number))) for number in range(500)]

    for number, sequence in enumerate(sequences):
        assert await stream.read_event() == b"id: %d\nevent: burst\ndata: %d\n\n" % (sequence, number)
    assert service.metric('sse_events_dropped_total{reason="slow_client"}') == 0
    await stream.close()


async def test_event_ids_increase(service, jetstream, user_id):
    stream = await open_stream(service, user_id)

    for number in range(5):
        await publish(jetstream, encode_envelope([user_id], "count", str(number)))

    ids = []
    for _ in range(5):
        block = await stream.read_event()
        ids.append(int(block.split(b"\n")[0].removeprefix(b"id: ")))
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    await stream.close()


async def wait_for_metric(service, name, value, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while service.metric(name) != value and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return service.metric(name)


async def test_disconnect_leaves_groups(service, user_id):
    # Streams closed by earlier tests may still be winding down.
    assert await wait_for_metric(service, "sse_connections_active", 0) == 0
    streams = [await open_stream(service, user_id) for _ in range(3)]
    assert service.metric("sse_connections_active") == 3

    for stream in streams:
        await stream.close()

    assert await wait_for_metric(service, "sse_connections_active", 0) == 0
