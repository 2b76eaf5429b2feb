"""The OTLP span encoder, read back with the official generated protobuf classes."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from parley.core.context import GuardrailAction
from parley.core.deployment import Deployment, Target
from parley.filters.otlp import CLIENT, SERVER, STATUS_ERROR, Encoder, OtlpExporter, SpanRecord
from parley.filters.trace_record import Attempt, Outcome, Trace
from parley.testing.otlp import OtlpReceiver, _value
from parley.testing.procs import free_port


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


def _trace(n: int, params: tuple) -> Trace:
    dep = Deployment(
        id="dep",
        model_name="m",
        provider="anthropic",
        api="anthropic",
        model="up-model",
        api_base="https://api.example:8443",
        api_key=None,
        timeout=60.0,
        extra_headers={},
        params={},
    )
    # perf_counter readings map to wall clock through started_at (1e9 s) and started (1000.0)
    trace = Trace(
        bytes(range(1, 17)), (n + 1).to_bytes(8, "big"), b"", "/v1/messages", f"req_{n}", 1e9, 1000.0
    )
    trace.model = "m"
    trace.params = params
    first = Attempt(b"\x01" * 8, 1000.25, Target(dep, "up-model"), 1)
    first.end, first.status, first.error = 1000.5, 529, "http_529"
    served = Attempt(b"\x02" * 8, 1000.75, Target(dep, "up-model"), 2)
    served.status = 200
    trace.attempts = [first, served]
    trace.events = [(10**18 + 2, "parley.fallback", {"gen_ai.request.model": "m", "fallback": "g"})]
    trace.outcome = tuple(  # the request path stores a plain tuple in this order
        Outcome(
            ended=1002.0,
            status=200,
            error_type=None,
            error_message=None,
            attempts=2,
            deployment_id=dep.id,
            input_tokens=10 + n,
            output_tokens=5,
            cache_read=30,
            cache_write=0,
            response_model="up-model-1",
            stop_reason="end_turn",
            stream=True,
            first_byte=1000.25,  # 0.25 s after the start
            guardrails=(GuardrailAction("pii", "mask", "EMAIL", 2),),
        )
    )
    return trace


def test_request_traces_decode_to_a_server_span_and_one_client_span_per_attempt():
    encoder = Encoder()
    traces = [_trace(n, (100, 1.0 if n % 2 else 1, None, None)) for n in range(4)]
    decoded = _decode(encoder.request({"service.name": "parley", "service.port": 4318}, "parley", traces))
    assert len(decoded) == 12
    for n in range(4):
        server, failed, served = decoded[3 * n : 3 * n + 3]
        attrs = {kv.key: kv.value for kv in server.attributes}
        assert server.name == "POST /v1/messages" and server.kind == SERVER
        assert _value(attrs["parley.request_id"]) == f"req_{n}"
        assert _value(attrs["gen_ai.request.max_tokens"]) == 100
        # cached per request shape, yet 1 and 1.0 stay an int and a double
        kind = attrs["gen_ai.request.temperature"].WhichOneof("value")
        assert kind == ("double_value" if n % 2 else "int_value")
        assert [e.name for e in server.events] == ["parley.fallback", "parley.guardrail"]
        assert _value(attrs["gen_ai.response.time_to_first_chunk"]) == 0.25
        failed_attrs = {kv.key: _value(kv.value) for kv in failed.attributes}
        assert failed.parent_span_id == server.span_id and failed.status.code == STATUS_ERROR
        assert failed_attrs["error.type"] == "http_529" and failed_attrs["parley.attempt"] == 1
        assert server.trace_id == bytes(range(1, 17)) and server.span_id == (n + 1).to_bytes(8, "big")
        assert failed.span_id == b"\x01" * 8 and served.span_id == b"\x02" * 8
        assert (server.start_time_unix_nano, server.end_time_unix_nano) == (10**18, 10**18 + 2 * 10**9)
        assert (failed.start_time_unix_nano, failed.end_time_unix_nano) == (
            10**18 + 25 * 10**7,
            10**18 + 5 * 10**8,
        )
        served_attrs = {kv.key: _value(kv.value) for kv in served.attributes}
        assert served.start_time_unix_nano == 10**18 + 75 * 10**7
        assert served.end_time_unix_nano == server.end_time_unix_nano and served.status.code == 0
        assert served_attrs["gen_ai.usage.input_tokens"] == 10 + n + 30
        assert served_attrs["gen_ai.usage.cache_read.input_tokens"] == 30
        assert served_attrs["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert (served_attrs["server.address"], served_attrs["server.port"]) == ("api.example", 8443)
        assert served_attrs["gen_ai.request.stream"] is True


def test_the_exporter_sends_every_span_in_batches_over_one_connection():
    receiver = OtlpReceiver(free_port())
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "6"}
    exporter = OtlpExporter({"service.name": "parley"}, env)
    exporter.start()
    try:
        for n in range(10):
            exporter.submit(_trace(n, ()), 3)
        assert len(receiver.wait_for(30)) == 30
    finally:
        exporter.shutdown()
        receiver.stop()
    assert receiver.batches == 5  # two requests of three spans each per batch
    assert len(receiver.connections) == 1


class _SlowExporter(OtlpExporter):
    """Sends nothing: records each batch's span count and takes 10 ms per batch, as a collector
    across a network would."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__({"service.name": "parley"}, env)
        self.batches: list[int] = []

    def _send(self, batch: tuple[list, int]) -> None:
        time.sleep(0.01)
        self.batches.append(batch[1])


def test_a_steady_stream_of_spans_goes_out_in_full_batches():
    """Spans keep arriving while a batch is sent; the kick sends full batches only (before, it
    sent whatever had come meanwhile: batches of about half the size, twice the POSTs)."""
    env = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100", "OTEL_BSP_SCHEDULE_DELAY": "30000"}
    exporter = _SlowExporter(env)
    exporter.start()
    sent = 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # ~5 spans a ms, 50 during each 10-ms send
            exporter.submit(object(), 1)  # type: ignore[arg-type]
            sent += 1
            time.sleep(0.0002)
    finally:
        exporter.shutdown()
    assert sum(exporter.batches) == sent  # the shutdown sent the rest
    assert exporter.batches[:-1] == [100] * (len(exporter.batches) - 1), exporter.batches
