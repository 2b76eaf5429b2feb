"""A loopback OTLP/HTTP trace receiver for tests: accepts `POST /v1/traces` (protobuf, as the
OpenTelemetry exporters send it), decodes each span with the official proto definitions, and keeps
them as plain `ReceivedSpan`s."""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KINDS = {
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
}


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root span
    start_ns: int
    end_ns: int
    status_code: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    service: str = ""


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    def __init__(self, port: int, decode: bool = True) -> None:
        self.port = port
        self.decode = decode  # False: only count batches and spans (benchmarks: the receiver costs little)
        self.batches = 0
        self.counted = 0  # spans received, also when not decoded
        self.endpoint = f"http://127.0.0.1:{port}/v1/traces"
        self.spans: list[ReceivedSpan] = []
        self.connections: set[tuple[str, int]] = set()  # client addresses seen (kept-alive reuse)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as collectors do

            def do_POST(self) -> None:
                receiver.connections.add(self.client_address)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                request = ExportTraceServiceRequest.FromString(raw)
                receiver.batches += 1
                receiver.counted += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
                if receiver.decode:
                    receiver._take(request)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # readiness, and the count of spans received so far
                body = f"{receiver.counted} spans, {receiver.batches} batches".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _take(self, request: ExportTraceServiceRequest) -> None:
        out = []
        for rs in request.resource_spans:
            service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        ReceivedSpan(
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            status_code=s.status.code,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            events=[e.name for e in s.events],
                            service=service,
                        )
                    )
        with self._lock:
            self.spans.extend(out)

    def wait_for(self, count: int, timeout: float = 10.0, **match: Any) -> list[ReceivedSpan]:
        """The received spans whose fields equal `match` (e.g. kind="CLIENT"), once there are `count`."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [s for s in self.spans if all(getattr(s, k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """`python -m parley.testing.otlp PORT [--count-only]`: a receiver in its own process (benchmarks)."""
    import sys

    receiver = OtlpReceiver(int(sys.argv[1]), decode="--count-only" not in sys.argv)
    receiver.thread.join()


if __name__ == "__main__":
    main()
