"""The incremental SSE decoder and the usage sniffer, however the bytes are split."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.core.anthropic_stream import message_frames
from parley.core.sse import Event, SSEDecoder
from parley.core.usage import AnthropicStreamSniffer, Usage

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "héllo wörld, " * 5},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 11,
        "output_tokens": 42,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 5,
    },
}
STREAM = b"".join(message_frames(MESSAGE, piece=7))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # timed checks failed under load
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=40), st.sampled_from(["\n", "\r\n", "\r"])
)
def test_any_split_and_line_ending_gives_the_same_events(cuts, newline):
    data = STREAM.replace(b"\n", newline.encode())
    whole = SSEDecoder().feed(data)
    decoder = SSEDecoder()
    pieces = [e for chunk in split(data, cuts) for e in decoder.feed(chunk)]
    assert pieces == whole
    assert decoder.at_boundary
    assert [e.event for e in whole][:2] == ["message_start", "content_block_start"]


def test_comments_multiline_data_and_missing_event_name():
    events = SSEDecoder().feed(b': comment\n\nevent: a\ndata: 1\ndata:2\n\ndata: {"x":1}  \n\n')
    assert events == [Event("a", "1\n2"), Event(None, '{"x":1}  ')]


def test_boundary_tracking():
    decoder = SSEDecoder()
    decoder.feed(b"event: ping\ndata: {}")
    assert not decoder.at_boundary
    decoder.feed(b"\n\n")
    assert decoder.at_boundary


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_sniffer_reads_cumulative_usage_and_stop_reason(cuts):
    usage = Usage()
    sniffer = AnthropicStreamSniffer(usage)
    for chunk in split(STREAM, cuts):
        sniffer.feed(chunk)
    assert (usage.input_tokens, usage.output_tokens) == (11, 42)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (3, 5)
    assert sniffer.stop_reason == "tool_use" and sniffer.saw_stop and sniffer.model == "m"
