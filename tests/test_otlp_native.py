"""The compiled span writer (`filters/_spans.c`) writes exactly the bytes the Python encoder writes,
for every trace it takes, and leaves the rest to the Python encoder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fuzz_support import examples
from parley.core.context import GuardrailAction
from parley.core.deployment import Deployment, Target
from parley.filters.otlp import Encoder, SpanRecord
from parley.filters.trace_record import Attempt, Outcome, Trace, span_writer

RESOURCE = {"service.name": "parley"}


def _writer() -> Any:
    writer = span_writer({})
    assert writer is not None, (
        "the compiled span writer was not built (pip install -e . needs gcc and Python.h)"
    )
    return writer


def _deployment(n: int, api_base: str | None) -> Deployment:
    return Deployment(
        id=f"dep-{n}",
        model_name="m",
        provider="anthropic" if n % 2 else "openai",
        api="anthropic",
        model="up",
        api_base=api_base,
        api_key=None,
        timeout=60.0,
        extra_headers={},
        params={},
    )


ids = st.binary(min_size=8, max_size=8)
times = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
counts = st.one_of(st.integers(0, 200), st.integers(-(2**63), 2**63 - 1), st.just(0))
# equal values of other types (1, 1.0, True) must not share an encoding: drawn often, next to each other
param = st.one_of(
    st.sampled_from([None, 1, 1.0, True, 0, 0.0, False, 1024]),
    st.integers(-5, 70_000),
    st.floats(allow_nan=False),
    st.text(max_size=3),
)


def rarely(draw: st.DrawFn, usual: Any, odd: st.SearchStrategy[Any]) -> Any:
    """`usual` 24 times in 25, else a value the compiled writer leaves to the Python encoder."""
    return draw(odd) if draw(st.integers(0, 24)) == 0 else usual


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    trace = Trace(
        rarely(draw, draw(st.binary(min_size=16, max_size=16)), st.just(b"\x01" * 15)),
        draw(ids),
        rarely(draw, draw(st.sampled_from([b"", b"\x07" * 8])), st.just(b"\x07" * 3)),
        draw(
            st.sampled_from(
                ["/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/anthropic/x"]
            )
        ),
        rarely(draw, draw(st.text(max_size=40)), st.just("req_\ud800")),
        draw(st.floats(min_value=1.6e9, max_value=1.9e9)),
        draw(st.floats(min_value=0.0, max_value=1e6)),
    )
    trace.model = draw(st.sampled_from([None, "m", "other"]))
    trace.params = rarely(
        draw, draw(st.one_of(st.tuples(param, param, param, param), st.just(()))), st.just(([1],))
    )
    trace.content = rarely(draw, None, st.just([("gen_ai.input.messages", "[]")]))
    trace.events = rarely(draw, None, st.just([(10**18, "parley.fallback", {"fallback": "g"})]))
    for number in range(1, rarely(draw, draw(st.sampled_from([0, 1, 1])), st.just(2)) + 1):
        dep = _deployment(draw(st.integers(0, 2)), draw(st.sampled_from([None, "http://h:9", "https://h"])))
        attempt = Attempt(
            draw(ids), trace.started + draw(times), Target(dep, draw(st.sampled_from(["up", "u2"]))), number
        )
        attempt.status = draw(st.sampled_from([0, 200, 529]))
        if rarely(draw, False, st.just(True)):
            attempt.error, attempt.end = "http_529", attempt.start + 0.5
        trace.attempts.append(attempt)
    trace.outcome = tuple(
        Outcome(
            ended=trace.started + draw(times),
            status=rarely(
                draw, draw(st.sampled_from([200, 201, 299])), st.sampled_from([400, 429, 500, 600])
            ),
            error_type=rarely(draw, None, st.just("overloaded_error")),
            error_message=draw(st.sampled_from([None, "boom"])),
            attempts=len(trace.attempts),
            deployment_id=draw(st.sampled_from([None, "dep-1"])),
            input_tokens=draw(counts),
            output_tokens=draw(counts),
            cache_read=draw(counts),
            cache_write=draw(counts),
            response_model=draw(st.sampled_from([None, "up", "up-2"])),
            stop_reason=draw(st.sampled_from([None, "end_turn"])),
            stream=draw(st.booleans()),
            first_byte=draw(st.one_of(st.none(), st.just(trace.started + 0.25))),
            guardrails=rarely(draw, (), st.just((GuardrailAction("pii", "mask", "EMAIL", 2),))),
        )
    )
    return trace


def _spans(body: bytes) -> list[Any]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return list(request.resource_spans[0].scope_spans[0].spans)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(traces(), min_size=1, max_size=6))
def test_the_compiled_writer_writes_what_the_python_encoder_writes(batch: list[Trace]) -> None:
    python, native = Encoder(), Encoder(_writer())
    for _ in range(2):  # a cold cache (the Python encoder fills it), then a warm one (C writes)
        expected = python.request(RESOURCE, "parley", batch)
        assert native.request(RESOURCE, "parley", batch) == expected
    assert len(_spans(expected)) == sum(1 + len(t.attempts) for t in batch)


def _common(n: int) -> Trace:
    """A request that went well: one attempt, a stream, usage."""
    trace = Trace(
        bytes(range(1, 17)), n.to_bytes(8, "big"), b"\x05" * 8, "/v1/messages", f"req_{n}", 1.7e9, 10.0
    )
    trace.model, trace.params = "m", (1024, 0.5, None, None)
    attempt = Attempt(b"\x06" * 8, 10.01, Target(_deployment(1, "http://up:80"), "up"), 1)
    attempt.status = 200
    trace.attempts.append(attempt)
    trace.outcome = (
        10.5,
        200,
        None,
        None,
        1,
        "dep-1",
        300 + n,
        70_000,
        5,
        0,
        "up",
        "end_turn",
        True,
        10.2,
        (),
    )
    return trace


def test_common_requests_are_written_without_the_python_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Trace.write
    monkeypatch.setattr(
        Trace, "write", lambda self, enc, out: (calls.append(self), original(self, enc, out))[1]
    )
    encoder = Encoder(_writer())
    first = encoder.request(RESOURCE, "parley", [_common(1)])
    assert len(calls) == 1  # a cold cache: the Python encoder writes it and fills the cache
    body = encoder.request(RESOURCE, "parley", [_common(n) for n in range(2, 50)])
    assert len(calls) == 1  # the rest in C
    server, client = _spans(first)
    assert (server.name, client.name) == ("POST /v1/messages", "chat up")
    spans = _spans(body)
    assert len(spans) == 96
    usage = {kv.key: kv.value.int_value for kv in spans[1].attributes if kv.key.startswith("gen_ai.usage")}
    assert usage == {
        "gen_ai.usage.input_tokens": 307,
        "gen_ai.usage.output_tokens": 70_000,
        "gen_ai.usage.cache_read.input_tokens": 5,
        "gen_ai.usage.cache_creation.input_tokens": 0,
    }
    assert spans[1].parent_span_id == spans[0].span_id == (2).to_bytes(8, "big")
    assert spans[1].end_time_unix_nano == spans[0].end_time_unix_nano == int((1.7e9 + 0.5) * 1e9)


def test_equal_parameters_of_other_types_keep_their_types() -> None:
    batch = []
    for value in (1, 1.0, True, 1.0, 1):
        trace = _common(len(batch) + 1)
        trace.params = (value, value, None, None)
        batch.append(trace)
    encoder = Encoder(_writer())
    encoder.request(RESOURCE, "parley", batch)  # every shape in the cache
    body = encoder.request(RESOURCE, "parley", batch)
    assert body == Encoder().request(RESOURCE, "parley", batch)
    kinds = [
        {kv.key: kv.value.WhichOneof("value") for kv in span.attributes}.get("gen_ai.request.max_tokens")
        for span in _spans(body)[::2]
    ]
    assert kinds == ["int_value", "double_value", None, "double_value", "int_value"]  # a bool is left out


def test_other_items_go_to_their_own_write() -> None:
    record = SpanRecord("x", 1, b"\x01" * 16, b"\x02" * 8, b"", 5)
    record.end_ns = 6
    assert Encoder(_writer()).request(RESOURCE, "s", [record, _common(1)]) == Encoder().request(
        RESOURCE, "s", [record, _common(1)]
    )


def test_the_python_encoder_alone_when_asked() -> None:
    assert span_writer({"PARLEY_NATIVE": "0"}) is None
