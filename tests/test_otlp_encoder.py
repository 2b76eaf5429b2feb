"""The OTLP span encoder, read back with the official generated protobuf classes."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from parley.filters.otlp import CLIENT, SERVER, STATUS_ERROR, Encoder, SpanRecord
from parley.testing.otlp import _value


def _span(n: int, kind: int, parent: bytes = b"") -> SpanRecord:
    s = SpanRecord(f"chat m-{n % 2}", kind, bytes(range(1, 17)), n.to_bytes(8, "big"), parent, 10**18 + n)
    s.end_ns = 10**18 + 5_000_000 + n
    s.attributes.update(
        {
            "parley.request_id": f"req_{n}",
            "gen_ai.request.model": "m",
            "gen_ai.request.temperature": 1.0 if n % 2 else 1,  # a float and an int of equal value
            "gen_ai.request.stream": n % 2 == 0,  # a bool, never taken for the int 1 or 0
            "gen_ai.usage.output_tokens": 1 if n % 2 else 70_000 + n,
            "gen_ai.response.finish_reasons": ["end_turn"] if n % 2 else ["max_tokens", "é"],
            "server.address": "ü-host",
        }
    )
    s.events.append((s.end_ns, "parley.fallback", {"gen_ai.request.model": "m", "fallback": "g"}))
    if n == 3:
        s.error("upstream said 500")
    return s


def _decode(body: bytes) -> list:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    [resource_spans] = request.resource_spans
    resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
    assert resource == {"service.name": "parley", "service.port": 4318}
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "parley"
    return list(scope_spans.spans)


def test_spans_decode_to_what_was_recorded_across_batches_and_cached_pairs():
    encoder = Encoder()
    resource = {"service.name": "parley", "service.port": 4318}
    sent = [_span(n, SERVER if n % 2 else CLIENT, b"\x09" * 8 if n % 2 == 0 else b"") for n in range(6)]
    decoded = _decode(encoder.request(resource, "parley", sent[:3])) + _decode(
        encoder.request(resource, "parley", sent[3:])
    )
    assert len(decoded) == 6
    for s, d in zip(sent, decoded, strict=True):
        assert (d.name, d.kind, d.trace_id, d.span_id, d.parent_span_id) == (
            s.name,
            s.kind,
            s.trace_id,
            s.span_id,
            s.parent_id,
        )
        assert (d.start_time_unix_nano, d.end_time_unix_nano) == (s.start_ns, s.end_ns)
        attributes = {kv.key: kv.value for kv in d.attributes}
        assert {k: _value(v) for k, v in attributes.items()} == s.attributes
        expected_type = (
            "double_value" if isinstance(s.attributes["gen_ai.request.temperature"], float) else "int_value"
        )
        assert attributes["gen_ai.request.temperature"].WhichOneof("value") == expected_type
        assert attributes["gen_ai.request.stream"].WhichOneof("value") == "bool_value"
        [event] = d.events
        assert (event.name, event.time_unix_nano) == ("parley.fallback", s.end_ns)
        assert {kv.key: _value(kv.value) for kv in event.attributes} == {
            "gen_ai.request.model": "m",
            "fallback": "g",
        }
        assert (d.status.code, d.status.message) == (s.status, s.status_message)
    assert decoded[3].status.code == STATUS_ERROR
