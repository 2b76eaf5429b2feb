"""Spans recorded cheaply on the request path and exported over OTLP/HTTP from a background thread.

The OpenTelemetry SDK's spans and its OTLP encoder cost about 40 us and 70 us of CPU per span
(measured in process); with two spans per request that was half again what a whole request costs
parley. So a request records plain `SpanRecord`s, and one thread per worker batches them and writes
the OTLP protobuf wire format directly (opentelemetry/proto/trace/v1/trace.proto; the tests decode
it with the official generated classes). What the SDK does well it still does: the resource
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) and the sampler (OTEL_TRACES_SAMPLER[_ARG]).

Standard environment: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION (gzip),
OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE. A full queue
drops spans (counted, logged once per 1,000) rather than slow a request.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from parley.core.runtime import name_os_thread

log = logging.getLogger("parley.otel")

SERVER, CLIENT = 2, 3  # SpanKind in trace.proto
STATUS_OK, STATUS_ERROR = 1, 2
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"


class NativeWriter(Protocol):
    """The compiled writer of the common case (`trace_record.span_writer`): writes each item it can,
    byte for byte as the items' own `write` would, and calls `item.write(encoder, parts)` for the rest."""

    def write(
        self, items: Iterable[Exportable], encoder: Encoder, groups: dict[Any, bytes], parts: list[bytes]
    ) -> None: ...


class Exportable(Protocol):
    """What the exporter queues: something that encodes to one or more Span messages."""

    def write(self, encoder: Encoder, out: list[bytes]) -> None:
        """Append its Span messages to `out`, each as field 2 of ScopeSpans (`span_field`, then the
        span), in the exporter's thread."""
        ...


class SpanRecord:
    """One finished (or finishing) span, as the exporter needs it."""

    __slots__ = (
        "attributes",
        "end_ns",
        "events",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        kind: int,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes,
        start_ns: int,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.start_ns = start_ns
        self.end_ns = 0
        self.attributes: dict[str, Any] = {} if attributes is None else attributes
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.status = 0
        self.status_message = ""

    def error(self, message: str | None = None) -> None:
        self.status, self.status_message = STATUS_ERROR, message or ""

    def write(self, encoder: Encoder, out: list[bytes]) -> None:
        body = encoder.span(self)
        out.append(span_field(len(body)))
        out.append(body)


# protobuf wire format ---------------------------------------------------------------------------
_SMALL = tuple(bytes((i,)) for i in range(128))
_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano (7) and end_time_unix_nano (8), fixed64
_KINDS = {SERVER: b"\x30\x02", CLIENT: b"\x30\x03"}


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    if n < 16384:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# field 2 of ScopeSpans (a Span) with its length, for the usual lengths
_SPAN_FIELDS = tuple(b"\x12" + _varint(n) for n in range(2048))


def span_field(length: int) -> bytes:
    """The tag and length before a Span of `length` bytes in ScopeSpans."""
    return _SPAN_FIELDS[length] if length < 2048 else b"\x12" + _varint(length)


def _len(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _len(field, text.encode("utf-8", "replace")) if text else b""


def _fixed64(field: int, n: int) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<Q", n)


_IDS = struct.Struct("<BB16sBB8sBBBQBQ")  # trace id, span id, kind, start and end times
_IDS_PARENT = struct.Struct("<BB16sBB8sBB8sBBBQBQ")  # the same with a parent span id
_DOUBLE = struct.Struct("<Bd")


def span_head(trace_id: bytes, span_id: bytes, parent: bytes, kind: int, start: int, end: int) -> bytes:
    """A Span's ids, kind and times (fields 1, 2, 4, 6, 7, 8) in one pack; 16- and 8-byte ids."""
    if parent:
        return _IDS_PARENT.pack(
            0x0A, 16, trace_id, 0x12, 8, span_id, 0x22, 8, parent, 0x30, kind, 0x39, start, 0x41, end
        )
    return _IDS.pack(0x0A, 16, trace_id, 0x12, 8, span_id, 0x30, kind, 0x39, start, 0x41, end)


def attribute_key(name: str) -> bytes:
    """The key of a KeyValue, to pass to `int_attribute` and `float_attribute`."""
    return _str(1, name)


def int_attribute(key: bytes, n: int) -> bytes:
    """A Span attribute (field 9) with an int value, `key` from `attribute_key`."""
    value = b"\x18" + (_SMALL[n] if 0 <= n < 128 else _varint(n & 0xFFFFFFFFFFFFFFFF))
    inner = key + b"\x12" + _SMALL[len(value)] + value
    return b"\x4a" + _varint(len(inner)) + inner


def str_attribute(key: bytes, text: str) -> bytes:
    """A Span attribute (field 9) with a string value."""
    data = text.encode("utf-8", "replace")
    value = b"\x0a" + _varint(len(data)) + data
    inner = key + b"\x12" + _varint(len(value)) + value
    return b"\x4a" + _varint(len(inner)) + inner


def float_attribute(key: bytes, x: float) -> bytes:
    """A Span attribute (field 9) with a double value."""
    inner = key + b"\x12\x09" + _DOUBLE.pack(0x21, x)
    return b"\x4a" + _varint(len(inner)) + inner


def _int_prefixes(name: str) -> tuple[bytes, ...]:
    """For a Span attribute (field 9) named `name` with an int value: the bytes before the value's
    varint, by the varint's length (1 to 10)."""
    key = attribute_key(name)
    return (
        b"",
        *(
            b"\x4a" + _varint(len(key) + 3 + n) + key + b"\x12" + _SMALL[1 + n] + b"\x18"
            for n in range(1, 11)
        ),
    )


USAGE_NAMES = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
)
USAGE_KEYS = tuple(attribute_key(name) for name in USAGE_NAMES)
_USAGE = tuple(_int_prefixes(name) for name in USAGE_NAMES)


def usage_attributes(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> bytes:
    """The four gen_ai.usage.* attributes of a CLIENT span, in one step (input includes the cache's
    tokens; the caller adds them)."""
    p_in, p_out, p_read, p_write = _USAGE
    a = _SMALL[input_tokens] if 0 <= input_tokens < 128 else _varint(input_tokens & 0xFFFFFFFFFFFFFFFF)
    b = _SMALL[output_tokens] if 0 <= output_tokens < 128 else _varint(output_tokens & 0xFFFFFFFFFFFFFFFF)
    c = _SMALL[cache_read] if 0 <= cache_read < 128 else _varint(cache_read & 0xFFFFFFFFFFFFFFFF)
    d = _SMALL[cache_write] if 0 <= cache_write < 128 else _varint(cache_write & 0xFFFFFFFFFFFFFFFF)
    return p_in[len(a)] + a + p_out[len(b)] + b + p_read[len(c)] + c + p_write[len(d)] + d


def _any(value: Any) -> bytes:
    """An AnyValue: string 1, bool 2, int 3, double 4, array 5."""
    if isinstance(value, str):
        return _len(1, value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, (list, tuple)):
        return _len(5, b"".join(_len(1, _any(v)) for v in value))
    return _len(1, str(value).encode("utf-8", "replace"))


REQUEST_ID_KEY = attribute_key("parley.request_id")


class Encoder:
    """Spans to an ExportTraceServiceRequest, written in the exporter's thread. Most attributes repeat
    from span to span (operation, provider, model, deployment, route, status), so the encoded
    key-value pairs of strings and integers are remembered per field number (bounded; values unique
    to a request are not kept), as are span names: a typical span is a few dictionary lookups and
    one join."""

    MAX_PAIRS = 4096
    MAX_NAMES = 1024
    UNIQUE = frozenset({"parley.request_id", "gen_ai.input.messages", "gen_ai.output.messages"})

    def __init__(self, native: NativeWriter | None = None) -> None:
        self.native = native  # the compiled common case, if built (None: all in Python)
        self.pairs: dict[int, dict[tuple[str, Any], bytes]] = {}  # field -> (name, value) -> bytes
        self.names: dict[str, bytes] = {}
        self.groups: dict[tuple[Any, ...], bytes] = {}  # encoded runs of attributes, by the caller's key
        self.id_prefixes: dict[int, bytes] = {}  # parley.request_id's framing, by the id's length

    def request_id(self, text: str) -> bytes:
        """The `parley.request_id` attribute (field 9): its framing is remembered by length."""
        data = text.encode("utf-8", "replace")
        n = len(data)
        prefix = self.id_prefixes.get(n)
        if prefix is None:
            value = b"\x0a" + _varint(n)
            inner = len(REQUEST_ID_KEY) + 1 + len(_varint(len(value) + n)) + len(value) + n
            prefix = b"\x4a" + _varint(inner) + REQUEST_ID_KEY + b"\x12" + _varint(len(value) + n) + value
            if n < 256:
                self.id_prefixes[n] = prefix
        return prefix + data

    def remember(self, key: tuple[Any, ...], encoded: bytes) -> bytes:
        """Keep `encoded` under `key` in `groups` (bounded): e.g. the attributes one deployment's
        spans share. Callers look in `groups` first."""
        if len(self.groups) >= self.MAX_PAIRS:
            self.groups.clear()
        self.groups[key] = encoded
        return encoded

    def pair(self, field: int, name: str, value: Any) -> bytes:
        """One KeyValue as field `field` of its message."""
        kind = type(value)
        if kind is list or kind is tuple:
            key: Any = (name, tuple(value))  # finish reasons: a few values, cached as a tuple
            if not all(type(v) is str for v in value):
                return _len(field, _str(1, name) + _len(2, _any(value)))
        elif kind is str or kind is int:
            key = (name, value)
        else:
            return _len(field, _str(1, name) + _len(2, _any(value)))
        cache = self.pairs.get(field)
        if cache is None:
            cache = self.pairs[field] = {}
        encoded = cache.get(key)
        if encoded is None:
            encoded = _len(field, _str(1, name) + _len(2, _any(value)))
            if kind is not str or (name not in self.UNIQUE and len(value) <= 256):
                if len(cache) >= self.MAX_PAIRS:
                    cache.clear()
                cache[key] = encoded
        return encoded

    def attributes(self, field: int, attributes: Mapping[str, Any]) -> bytes:
        cache = self.pairs.get(field) or {}
        parts = []
        for name, value in attributes.items():
            kind = type(value)
            encoded = cache.get((name, value)) if kind is str or kind is int else None
            parts.append(encoded if encoded is not None else self.pair(field, name, value))
        return b"".join(parts)

    def span_name(self, name: str) -> bytes:
        """A Span's name (field 5), remembered."""
        encoded = self.names.get(name)
        if encoded is None:
            encoded = _str(5, name)
            if len(self.names) < self.MAX_NAMES:
                self.names[name] = encoded
        return encoded

    def header(
        self, trace_id: bytes, span_id: bytes, parent: bytes, name: str, kind: int, start: int, end: int
    ) -> bytes:
        """A Span's ids, name, kind and times (fields 1, 2, 4, 5, 6, 7, 8)."""
        return b"".join(
            (
                b"\x0a" + _SMALL[len(trace_id)] + trace_id + b"\x12" + _SMALL[len(span_id)] + span_id,
                b"\x22" + _SMALL[len(parent)] + parent if parent else b"",
                self.span_name(name),
                _KINDS.get(kind) or b"\x30" + _varint(kind),
                _TIMES.pack(0x39, start, 0x41, end),
            )
        )

    def event(self, at: int, name: str, attributes: Mapping[str, Any]) -> bytes:
        """A Span.Event as field 11."""
        return _len(11, _fixed64(1, at) + _str(2, name) + self.attributes(3, attributes))

    @staticmethod
    def status(code: int, message: str) -> bytes:
        """A Span's Status as field 15."""
        return _len(15, _str(2, message) + b"\x18" + _varint(code))

    def span(self, s: SpanRecord) -> bytes:
        """A Span (without its tag and length)."""
        parts = [
            self.header(s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns),
            self.attributes(9, s.attributes),
        ]
        parts.extend(self.event(at, event, attributes) for at, event, attributes in s.events)
        if s.status:
            parts.append(self.status(s.status, s.status_message))
        return b"".join(parts)

    def request(self, resource: Mapping[str, Any], scope: str, items: Iterable[Exportable]) -> bytes:
        """An ExportTraceServiceRequest with one resource and one instrumentation scope (the spans
        are copied once, by the final join)."""
        parts = [b"", _len(1, _str(1, scope))]
        if self.native is not None:
            self.native.write(items, self, self.groups, parts)
        else:
            for item in items:
                item.write(self, parts)
        scope_spans = sum(map(len, parts))
        head = _len(1, self.attributes(1, resource)) + b"\x12" + _varint(scope_spans)  # ResourceSpans
        parts[0] = b"\x0a" + _varint(len(head) + scope_spans) + head
        return b"".join(parts)


# the exporter -----------------------------------------------------------------------------------
def _env(env: Mapping[str, str], name: str, default: str = "") -> str:
    """OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    return env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}") or default


def endpoint_from(env: Mapping[str, str]) -> str:
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else DEFAULT_ENDPOINT


def headers_from(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for item in _env(env, "HEADERS").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return out


class OtlpExporter:
    """A bounded queue of finished spans and the thread that sends them in batches, over one
    kept-alive connection to the collector."""

    def __init__(
        self, resource: Mapping[str, Any], env: Mapping[str, str] = os.environ, encoder: Encoder | None = None
    ) -> None:
        self.resource = dict(resource)
        self.endpoint = endpoint_from(env)
        self._url = urllib.parse.urlsplit(self.endpoint)
        protocol = _env(env, "PROTOCOL", "http/protobuf")
        if protocol != "http/protobuf":
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; sending http/protobuf", protocol)
        self.headers = {"content-type": "application/x-protobuf", **headers_from(env)}
        self.timeout = float(_env(env, "TIMEOUT", "10000")) / 1000.0
        self.gzip = _env(env, "COMPRESSION") == "gzip"
        if self.gzip:
            self.headers["content-encoding"] = "gzip"
        self.delay = float(env.get("OTEL_BSP_SCHEDULE_DELAY", "5000")) / 1000.0
        self.max_queue = int(env.get("OTEL_BSP_MAX_QUEUE_SIZE", "2048"))
        self.batch = int(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"))
        self.queue: deque[tuple[Exportable, int]] = deque()  # (item, its span count)
        # spans queued so far and taken so far: each written by one thread only (the loop, the
        # exporter), so neither update can lose the other's
        self.added = 0
        self.taken = 0
        self.encoder = encoder or Encoder()
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._conn: http.client.HTTPConnection | None = None
        self._wake = threading.Event()
        self._woken = False  # set by the loop when it wakes the thread, cleared by the thread
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="parley-otlp", daemon=True)

    def start(self) -> None:
        """Start the sending thread (a gateway that is only built, never started, has none)."""
        self._thread.start()

    def submit(self, item: Exportable, spans: int = 1) -> None:
        """Queue finished spans (`item` encodes to `spans` of them); called on the request path,
        never blocks."""
        if self.added - self.taken + spans > self.max_queue:
            self.dropped += spans
            if self.dropped <= spans or self.dropped // 1000 != (self.dropped - spans) // 1000:
                log.warning("OTLP export falls behind: %d spans dropped so far", self.dropped)
            return
        self.queue.append((item, spans))
        self.added += spans
        if not self._woken and self.added - self.taken >= self.batch:
            self._woken = True  # one wake per batch: Event.set takes a lock and notifies
            self._wake.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Send what is queued (within `timeout`), then stop the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        name_os_thread()
        while True:
            kicked = self._wake.wait(self.delay)
            self._wake.clear()
            self._woken = False
            # a kick (a batch queued) sends full batches only: spans keep arriving while one is
            # sent, and sending what came meanwhile made many small batches (66 POSTs a second for
            # ~16 batches' worth of spans, each with its GIL hand-offs); the schedule delay or the
            # shutdown sends the rest
            everything = not kicked or self._stopping
            while self.queue and (everything or self.added - self.taken >= self.batch):
                self._send(self._take())
            if self._stopping:
                while self.queue:  # (stopped while full batches were sent: the rest too)
                    self._send(self._take())
                if self._conn is not None:
                    self._conn.close()
                return

    def _take(self) -> tuple[list[Exportable], int]:
        """Items from the queue's head up to a batch of spans (at least one item)."""
        items: list[Exportable] = []
        spans, queue = 0, self.queue
        while queue and (not items or spans + queue[0][1] <= self.batch):
            item, n = queue.popleft()
            items.append(item)
            spans += n
        self.taken += spans
        return items, spans

    def _send(self, batch: tuple[list[Exportable], int]) -> None:
        items, spans = batch
        body = self.encoder.request(self.resource, "parley", items)
        if self.gzip:
            body = gzip.compress(body)
        for attempt in range(3):
            try:
                self._post(body)
                self.sent += spans
                return
            except Exception as e:  # an unreachable collector is logged, never raised into requests
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if attempt == 2:
                    self.failed += spans
                    log.warning("OTLP export to %s failed (%s); %d spans lost", self.endpoint, e, spans)
                    return
                time.sleep(0.2 * 2**attempt)

    def _post(self, body: bytes) -> None:
        """POST one request on the kept-alive connection (opened on first use or after a failure)."""
        url = self._url
        if self._conn is None:
            kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            self._conn = kind(url.hostname or "localhost", url.port, timeout=self.timeout)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._conn.request("POST", path, body, self.headers)
        reply = self._conn.getresponse()
        reply.read()
        if reply.status >= 300:
            raise OSError(f"HTTP {reply.status} {reply.reason}")
        if reply.will_close:
            self._conn.close()
            self._conn = None
