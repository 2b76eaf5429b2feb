"""Streams that end badly end visibly: garbage or truncated upstream SSE becomes an error event,
a stop cuts open streams with an error event the client can read, and a graceful stop exits 0."""

from __future__ import annotations

import signal
import threading
import time

import anthropic
import openai
import pytest

from parley.testing.procs import Gateway, anthropic_deployment, openai_deployment

pytestmark = pytest.mark.process


def _config(upstream) -> dict:
    return {"model_list": [anthropic_deployment("m", upstream)], "router_settings": {"num_retries": 0}}


def _client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)


START = (
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    '"role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":3,'
    '"output_tokens":1}}}\n\n'
)
UNFINISHED = r"ended (before message_stop|without a complete event)"
CUT = 'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_blo'


@pytest.mark.parametrize(
    "raw",
    ["this is not server-sent events at all", START, START + CUT],
    ids=["garbage", "no-message_stop", "cut-mid-event"],
)
def test_an_upstream_stream_that_never_finishes_is_an_error(start_gateway, upstream, raw):
    gw = start_gateway(_config(upstream))
    upstream.script({"raw": raw, "content_type": "text/event-stream"})
    client = _client(gw)
    with (
        pytest.raises(anthropic.APIStatusError, match=UNFINISHED),
        client.messages.stream(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()


def test_a_graceful_stop_exits_0(upstream):
    gw = Gateway(_config(upstream))
    try:
        assert _client(gw).messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    finally:
        code = gw.stop()
    assert code == 0


def test_a_stop_cuts_open_streams_with_an_error_event_the_client_reads(upstream):
    gw = Gateway(_config(upstream), extra_args=["--shutdown-timeout", "0.5"])
    upstream.script({"content": [{"type": "text", "text": "slow " * 200}], "piece": 5, "chunk_delay": 0.2})
    seen: list[str] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            with _client(gw).messages.stream(
                model="m", max_tokens=2000, messages=[{"role": "user", "content": "go"}]
            ) as stream:
                for event in stream:
                    seen.append(event.type)
        except BaseException as e:
            failure.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while "content_block_delta" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    reader.join(10)
    code = gw.proc.wait(10)  # it stops by itself: a second signal would only race its exit
    gw.stop()
    assert "content_block_delta" in seen and "message_stop" not in seen
    assert failure and isinstance(failure[0], anthropic.APIStatusError), failure
    assert "shut down before the stream ended" in str(failure[0])
    assert time.monotonic() - started < 5  # the 0.5 s limit, not the default 15 s
    assert code == 0
    assert '"error":"gateway_shutdown"' in gw.log()


def _openai_config(upstream) -> dict:
    return {"model_list": [openai_deployment("gpt", upstream)], "router_settings": {"num_retries": 0}}


@pytest.mark.parametrize(
    "raw, content_type",
    [
        ("<html><body>502 Bad Gateway</body></html>", "text/html"),
        ('{"choices": [{"index": 0, "message": {"role": "assistant", "content": "cut', "application/json"),
        ("", "application/json"),
        ('{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}', "application/json"),
    ],
    ids=["html", "truncated-json", "empty", "error-with-200"],
)
def test_chat_on_an_openai_backend_never_passes_off_a_bad_reply_as_success(
    start_gateway, upstream, raw, content_type
):
    gw = start_gateway(_openai_config(upstream))
    upstream.script({"api": "openai", "raw": raw, "content_type": content_type})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert info.value.body["type"] == "api_error"


def test_a_translated_stream_with_a_line_that_is_not_json_is_an_error(start_gateway, upstream):
    gw = start_gateway(_openai_config(upstream))
    first = (
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
    )
    upstream.script(
        {"api": "openai", "raw": first + "data: {not json\n\n", "content_type": "text/event-stream"}
    )
    client = _client(gw)
    with (
        pytest.raises(anthropic.APIStatusError, match="not JSON"),
        client.messages.stream(
            model="gpt", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()


def test_a_stream_past_the_duration_limit_ends_with_an_error_event(start_gateway, upstream):
    config = _config(upstream)
    config["general_settings"] = {"max_stream_seconds": 1}
    gw = start_gateway(config)
    ping = 'event: ping\ndata: {"type": "ping"}\n\n'
    upstream.script({"raw": START, "endless": ping, "chunk_delay": 0.05, "content_type": "text/event-stream"})
    started = time.monotonic()
    client = _client(gw)
    with (
        pytest.raises(anthropic.APIStatusError, match="limit of 1 s"),
        client.messages.stream(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()
    assert time.monotonic() - started < 5  # not the upstream's 8 s
    deadline = time.monotonic() + 5  # the access log is written by a background thread
    while '"error":"stream_too_long"' not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"error":"stream_too_long"' in gw.log()
