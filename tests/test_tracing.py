"""OpenTelemetry traces from a real `parley serve`, exported over OTLP/HTTP to a loopback receiver
that decodes them with the official proto definitions; the fake upstreams record the `traceparent`
they were sent."""

from __future__ import annotations

import secrets

import anthropic
import openai
import pytest

from parley.testing.otlp import OtlpReceiver
from parley.testing.procs import Gateway, anthropic_deployment, free_port, openai_deployment

MODEL = "claude-traced"
ASK = [{"role": "user", "content": "secret words"}]


@pytest.fixture(scope="module")
def receiver():
    r = OtlpReceiver(free_port())
    yield r
    r.stop()


def _env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "parley-under-test",
    }


@pytest.fixture(scope="module")
def traced(receiver, fake_upstream, fake_upstream_b):
    config = {
        "model_list": [
            anthropic_deployment(MODEL, fake_upstream, model="a-model", weight=1_000_000),
            anthropic_deployment(MODEL, fake_upstream_b, model="b-model", weight=1),
            openai_deployment("gpt-traced", fake_upstream_b, model="gpt-up"),
        ],
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "litellm_settings": {"callbacks": ["otel"]},
    }
    gw = Gateway(config, env=_env(receiver))
    yield gw
    gw.stop()


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def test_one_client_span_per_attempt_and_the_trace_continues_upstream(traced, receiver, upstream, b):
    header, trace_id, client_span = _traceparent()
    upstream.script({"status": 529, "error": {"type": "overloaded_error", "message": "busy"}})
    client = anthropic.Anthropic(base_url=traced.url, api_key="sk-any", max_retries=0)
    message = client.messages.create(
        model=MODEL, max_tokens=32, messages=ASK, extra_headers={"traceparent": header}
    )
    [server] = receiver.wait_for(1, trace_id=trace_id, kind="SERVER")
    attempts = sorted(receiver.wait_for(2, trace_id=trace_id, kind="CLIENT"), key=lambda s: s.start_ns)
    assert len(attempts) == 2
    assert server.parent_span_id == client_span  # the client's trace, continued
    assert server.name == "POST /v1/messages"
    assert server.service == "parley-under-test"
    assert server.attributes["gen_ai.request.model"] == MODEL
    assert server.attributes["http.response.status_code"] == 200
    failed, served = attempts
    for span in attempts:
        assert span.parent_span_id == server.span_id
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert failed.name == "chat a-model"
    assert failed.attributes["http.response.status_code"] == 529
    assert failed.attributes["error.type"] == "http_529"
    assert failed.status_code == 2  # STATUS_CODE_ERROR
    assert served.name == "chat b-model"
    assert served.attributes["gen_ai.request.model"] == "b-model"
    assert served.attributes["gen_ai.response.model"] == message.model
    assert served.attributes["gen_ai.usage.input_tokens"] == message.usage.input_tokens
    assert served.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert served.attributes["gen_ai.response.finish_reasons"] == [message.stop_reason]
    assert "error.type" not in served.attributes
    # Each upstream got the traceparent of its own attempt's span, in the client's trace.
    assert upstream.requests()[-1]["headers"]["traceparent"] == f"00-{trace_id}-{failed.span_id}-01"
    assert b.requests()[-1]["headers"]["traceparent"] == f"00-{trace_id}-{served.span_id}-01"
    assert "gen_ai.input.messages" not in server.attributes  # content is off unless enabled


def test_a_streamed_span_ends_when_the_stream_ends(traced, receiver, upstream):
    header, trace_id, _ = _traceparent()
    upstream.script(
        {
            "content": [{"type": "text", "text": "one two three four five six"}],
            "chunk_delay": 0.1,
            "usage": {"input_tokens": 11, "output_tokens": 6, "cache_read_input_tokens": 30},
        }
    )
    client = anthropic.Anthropic(base_url=traced.url, api_key="sk-any", max_retries=0)
    with client.messages.stream(
        model=MODEL, max_tokens=32, messages=ASK, extra_headers={"traceparent": header}
    ) as stream:
        events = list(stream)
    assert len(events) >= 6  # so the stream took at least 0.5 s
    [attempt] = receiver.wait_for(1, trace_id=trace_id, kind="CLIENT")
    [server] = receiver.wait_for(1, trace_id=trace_id, kind="SERVER")
    assert (attempt.end_ns - attempt.start_ns) / 1e9 >= 0.5
    assert attempt.end_ns <= server.end_ns
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 41  # input includes cache reads
    assert attempt.attributes["gen_ai.usage.cache_read.input_tokens"] == 30
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 6
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert 0 < server.attributes["gen_ai.response.time_to_first_chunk"] < 0.5


def test_a_request_without_traceparent_starts_a_trace_the_upstream_joins(traced, receiver, b):
    client = openai.OpenAI(base_url=traced.url + "/v1", api_key="sk-any", max_retries=0)
    reply = client.chat.completions.with_raw_response.create(model="gpt-traced", messages=ASK)
    streamed = anthropic.Anthropic(base_url=traced.url, api_key="sk-any", max_retries=0)
    with streamed.messages.stream(model="gpt-traced", max_tokens=16, messages=ASK) as s:
        final = s.get_final_message()  # an OpenAI stream translated: its stop reason is on the span
    _, stream_trace, _, _ = b.requests()[-1]["headers"]["traceparent"].split("-")
    [translated] = receiver.wait_for(1, trace_id=stream_trace, kind="CLIENT")
    assert translated.attributes["gen_ai.response.finish_reasons"] == [final.stop_reason]
    sent = b.requests()[-2]["headers"]["traceparent"]
    _, trace_id, parent, _ = sent.split("-")
    [attempt] = receiver.wait_for(1, trace_id=trace_id, kind="CLIENT")
    [server] = receiver.wait_for(1, trace_id=trace_id, kind="SERVER")
    assert attempt.span_id == parent
    assert server.parent_span_id == ""
    assert server.name == "POST /v1/chat/completions"
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["gen_ai.request.model"] == "gpt-up"
    assert attempt.attributes["gen_ai.usage.output_tokens"] == reply.parse().usage.completion_tokens
    assert server.attributes["parley.request_id"] == reply.headers["request-id"]


def test_message_content_is_recorded_only_when_enabled(receiver, start_inprocess, monkeypatch):
    for k, v in _env(receiver).items():
        monkeypatch.setenv(k, v)
    gw = start_inprocess(
        {
            "model_list": [{"model_name": "mock-traced", "params": {"model": "mock/mock-traced"}}],
            "litellm_settings": {"callbacks": ["langfuse"], "otel_capture_content": True},
        }
    )
    header, trace_id, _ = _traceparent()
    reply = gw.anthropic(api_key="sk", max_retries=0).messages.create(
        model="mock-traced", max_tokens=32, messages=ASK, extra_headers={"traceparent": header}
    )
    [server] = receiver.wait_for(1, trace_id=trace_id, kind="SERVER")
    assert "secret words" in server.attributes["gen_ai.input.messages"]
    assert reply.content[0].text in server.attributes["gen_ai.output.messages"]


def test_sampled_out_requests_send_no_spans_and_keep_the_clients_traceparent(
    receiver, start_inprocess, monkeypatch, upstream
):
    for k, v in _env(receiver).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    gw = start_inprocess(
        {"model_list": [anthropic_deployment(MODEL, upstream)], "litellm_settings": {"callbacks": ["otel"]}}
    )
    header, trace_id, _ = _traceparent()
    gw.anthropic(api_key="sk", max_retries=0).messages.create(
        model=MODEL, max_tokens=8, messages=ASK, extra_headers={"traceparent": header}
    )
    gw.stop()  # flushes the exporter
    assert upstream.requests()[-1]["headers"]["traceparent"] == header
    assert receiver.wait_for(1, timeout=0.5, trace_id=trace_id) == []


def test_an_unreachable_collector_never_fails_a_request(start_inprocess, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    gw = start_inprocess(
        {
            "model_list": [{"model_name": "mock-traced", "params": {"model": "mock/mock-traced"}}],
            "litellm_settings": {"callbacks": ["otel"]},
        }
    )
    client = gw.anthropic(api_key="sk", max_retries=0)
    for _ in range(20):
        assert client.messages.create(model="mock-traced", max_tokens=8, messages=ASK).content
