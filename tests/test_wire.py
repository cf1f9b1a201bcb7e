import base64
import json
from datetime import datetime, timezone

import pytest

from sse.exceptions import MalformedEvent
from sse.wire import SendSSE, decode_event, encode_comment, encode_envelope, encode_frame

from .service import envelope_json


def envelope(payload, eventtype="events.SendSSE", **extra):
    data = {
        "Metadata": {"eventtype": eventtype},
        "Payload": base64.b64encode(json.dumps(payload).encode()).decode(),
        **extra,
    }
    return json.dumps(data).encode()


def b64(data):
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "message, expected",
    [
        (b"plain", b"data: plain\n"),
        (b"a\nb\r\nc\rd", b"data: a\ndata: b\ndata: c\ndata: d\n"),
        (b"", b"data: \n"),
        (b"trailing\n", b"data: trailing\ndata: \n"),
        (b"\r\n", b"data: \ndata: \n"),
        (b" leading space", b"data:  leading space\n"),
        (b": colon", b"data: : colon\n"),
        ("x\u2028y\u0085z".encode(), "data: x\u2028y\u0085z\n".encode()),
    ],
    ids=["plain", "mixed-breaks", "empty", "trailing-newline", "crlf-only", "leading-space", "leading-colon", "unicode-separators"],
)
def test_encode_frame_data_lines(message, expected):
    assert encode_frame("t", message, 7) == b"id: 7\nevent: t\n" + expected + b"\n"


def test_encode_frame_without_type():
    assert encode_frame("", b"x", 3) == b"id: 3\ndata: x\n\n"


def test_encode_comment():
    assert encode_comment("keepalive") == b": keepalive\n\n"
    assert encode_comment("two\nlines") == b": two\n: lines\n\n"


def test_decode_reference_userlog_notification():
    raw = json.dumps(envelope_json("userlog-notification.json")).encode()

    event = decode_event(raw)

    assert event.user_ids == ("6e2a7b14-93c5-4d8f-b0a1-2f3e4d5c6b7a",)
    assert event.type == "userlog-notification"
    assert json.loads(event.message)["notification_id"] == "a1d5e0c2-6f3b-4c1e-9d7a-52b8e4f09c13"
    assert event.event_id == "c2e8b5d1-7a3f-4c9e-b6d2-8f1a4e7c3b90"
    assert event.timestamp == "2025-03-04T10:15:30.517204611Z"


def test_decode_reference_postprocessing_finished():
    raw = json.dumps(envelope_json("postprocessing-finished.json")).encode()

    event = decode_event(raw)

    assert event.user_ids == ("0d4f2a9e-8b1c-4f6d-a3e5-7c9b1d2e4f60", "6e2a7b14-93c5-4d8f-b0a1-2f3e4d5c6b7a")
    assert event.type == "postprocessing-finished"
    assert json.loads(event.message)["etag"] == '"b7e3f1a9c5d2e8f4"'


def test_decode_merges_user_id_and_user_ids():
    event = decode_event(envelope({"UserIDs": ["a", "b"], "UserID": "c", "Type": "t", "Message": b64(b"m")}))

    assert event.user_ids == ("a", "b", "c")


def test_decode_old_user_id_layout():
    event = decode_event(envelope({"UserID": "alice", "Type": "t", "Message": b64(b"m")}))

    assert event == SendSSE(user_ids=("alice",), type="t", message=b"m")


def test_decode_keys_case_insensitively():
    payload = {"userIDs": ["alice"], "TYPE": "t", "message": b64(b"m")}
    raw = json.dumps({"metadata": {"eventtype": "events.SendSSE"}, "payload": b64(json.dumps(payload).encode())}).encode()

    assert decode_event(raw).user_ids == ("alice",)


def test_decode_prefers_exact_key():
    event = decode_event(envelope({"UserIDs": ["exact"], "userids": ["folded"], "Type": "t", "Message": ""}))

    assert event.user_ids == ("exact",)


def test_decode_null_message_is_empty():
    assert decode_event(envelope({"UserIDs": ["a"], "Type": "t", "Message": None})).message == b""


def test_decode_drops_duplicate_and_empty_user_ids():
    event = decode_event(envelope({"UserIDs": ["a", "", "a", "b"], "Type": "t", "Message": ""}))

    assert event.user_ids == ("a", "b")


@pytest.mark.parametrize("eventtype", ["events.UploadReady", "", "events.sendsse"])
def test_decode_ignores_other_event_types(eventtype):
    assert decode_event(envelope({"UserIDs": ["a"], "Type": "t", "Message": ""}, eventtype=eventtype)) is None


def test_decode_ignores_envelope_without_metadata():
    assert decode_event(b'{"Payload": "e30="}') is None


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "the message is not JSON"),
        (b"\xff\xfe", "the message is not JSON"),
        (b"[]", "the message must be a JSON object, got list"),
        (b'{"Metadata": "x"}', "Metadata must be a JSON object, got str"),
        (b'{"Metadata": {"eventtype": 5}}', "Metadata.eventtype must be a string, got int"),
        (b'{"Metadata": {"eventtype": "events.SendSSE"}}', "the SendSSE event has no Payload field"),
        (b'{"Metadata": {"eventtype": "events.SendSSE"}, "Payload": "!!"}', "Payload is not valid base64"),
        (b'{"Metadata": {"eventtype": "events.SendSSE"}, "Payload": 12}', "Payload must be a base64 string, got int"),
        (envelope({"UserIDs": ["a"], "Message": ""}), "the SendSSE event has no Type field"),
        (envelope({"UserIDs": ["a"], "Type": "t"}), "the SendSSE event has no Message field"),
        (envelope({"UserIDs": ["a"], "Type": 1, "Message": ""}), "Type must be a string, got int"),
        (envelope({"UserIDs": ["a"], "Type": "a\nb", "Message": ""}), "Type 'a\\nb' contains a line break"),
        (envelope({"UserIDs": ["a"], "Type": "a\rb", "Message": ""}), "Type 'a\\rb' contains a line break"),
        (envelope({"UserIDs": "a", "Type": "t", "Message": ""}), "UserIDs must be a list of strings"),
        (envelope({"UserIDs": [1], "Type": "t", "Message": ""}), "UserIDs must be a list of strings"),
        (envelope({"UserID": 5, "Type": "t", "Message": ""}), "UserID must be a string, got int"),
        (envelope({"UserIDs": [], "Type": "t", "Message": ""}), "the SendSSE event addresses no user"),
        (envelope({"UserIDs": ["a"], "Type": "t", "Message": "###"}), "Message is not valid base64"),
    ],
)
def test_decode_rejects_malformed(raw, reason):
    with pytest.raises(MalformedEvent) as error:
        decode_event(raw)

    assert str(error.value).startswith(reason)


def test_encode_envelope_round_trip():
    now = datetime(2025, 3, 4, 10, 15, 30, 517204, tzinfo=timezone.utc)

    raw = encode_envelope(["alice", "bob"], "item-moved", "line one\nline two", event_id="fixed", now=now)
    decoded = json.loads(raw)

    assert list(decoded) == ["Timestamp", "Metadata", "ID", "Topic", "Payload"]
    assert decoded["Timestamp"] == "2025-03-04T10:15:30.517204Z"
    assert decoded["Metadata"]["eventtype"] == "events.SendSSE"
    assert decoded["Topic"] == "main-queue"
    assert json.loads(base64.b64decode(decoded["Payload"])) == {
        "UserIDs": ["alice", "bob"],
        "Type": "item-moved",
        "Message": b64(b"line one\nline two"),
    }
    assert decode_event(raw) == SendSSE(
        user_ids=("alice", "bob"),
        type="item-moved",
        message=b"line one\nline two",
        event_id="fixed",
        timestamp="2025-03-04T10:15:30.517204Z",
    )
