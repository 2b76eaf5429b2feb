"""parley's AWS event-stream encoder, judged by botocore's decoder (what the AnthropicBedrock
client and boto3 read Bedrock streams with): any headers and payload round-trip, CRCs included."""

from __future__ import annotations

import base64

import orjson
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.translate.eventstream import chunk_frame, encode_message, exception_frame

NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


def decode(data: bytes) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


@settings(max_examples=200, deadline=None)
@given(headers=st.dictionaries(NAMES, st.text(max_size=200), max_size=6), payload=st.binary(max_size=5000))
def test_any_message_round_trips(headers, payload):
    (message,) = decode(encode_message(headers, payload))
    assert message.headers == headers
    assert message.payload == payload


@given(events=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20), cut=st.integers(1, 50))
def test_chunks_decode_across_any_split(events, cut):
    stream = b"".join(chunk_frame(e) for e in events) + exception_frame("throttlingException", "slow")
    buffer = EventStreamBuffer()
    messages = []
    for i in range(0, len(stream), cut):  # the network splits frames anywhere
        buffer.add_data(stream[i : i + cut])
        messages.extend(buffer)
    assert [base64.b64decode(orjson.loads(m.payload)["bytes"]) for m in messages[:-1]] == events
    assert messages[-1].headers[":exception-type"] == "throttlingException"
    assert orjson.loads(messages[-1].payload) == {"message": "slow"}
