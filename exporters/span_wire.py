"""OTLP trace requests written straight in protobuf's wire format.

The SDK's encoder builds a protobuf message per span, attribute and value in Python (about
120 us for one of our stage spans with 18 attributes, measured); the agent's frame traces
cost more to encode than to make. Here a span is written as bytes: the parts that repeat
(attribute keys, the pipeline and stage names, the resource and the scope) are encoded once
and reused, a float or an integer is one ``struct.pack``. The request is then parsed back
into the SDK's message (C code), so the exporter sends what it always sends; a test holds
the result equal to the SDK's own ``encode_spans`` for the same spans.

An item with ``encode_many(items)`` (``otel_traces.FrameSpans``, one frame's whole trace)
writes its spans itself, a run of its kind at a time, grouped by its ``resource`` and
``instrumentation_scope``.

Spans this writer does not cover (events, links, a trace state, a status other than
unset, array or map attributes, dropped counts) are encoded by the SDK, span by span.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from itertools import groupby

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

_KINDS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3,
          SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_pack_double = struct.Struct("<d").pack
pack_fixed64 = _pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:  # a span's or an attribute's length: two bytes
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x10000000:  # a frame id up to 268 million: three or four bytes
        if n < 0x200000:
            return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80,
                      ((n >> 14) & 0x7F) | 0x80, n >> 21))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` is the field's first byte)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


varint_bytes = _varint


@lru_cache(maxsize=4096)
def _key(key: str) -> bytes:
    return _field(0x0A, key.encode())  # KeyValue.key


@lru_cache(maxsize=65536)
def _string_attribute(key: str, value: str) -> bytes:
    # Names of pipelines, streams and stages repeat on every span: made once.
    return _field(0x4A, _key(key) + _field(0x12, _field(0x0A, value.encode())))


@lru_cache(maxsize=4096)
def _double_prefix(key: str) -> bytes:
    """Everything of a double attribute up to its 8 bytes: their length is fixed."""
    key_field = _key(key)
    return b"\x4a" + _varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"


@lru_cache(maxsize=4096)
def _int_prefixes(key: str) -> tuple[bytes, ...]:
    """Everything of an int attribute up to its varint, by the varint's length (1-10
    bytes): the key's field and the lengths around it depend on nothing else."""
    key_field = _key(key)
    return tuple(b"\x4a" + _varint(len(key_field) + 3 + n) + key_field + b"\x12"
                 + bytes((1 + n,)) + b"\x18" for n in range(11))


def int_prefix(key: str, varint_length: int) -> bytes:
    """An int attribute's bytes before a varint of ``varint_length`` bytes."""
    return _int_prefixes(key)[varint_length]


@lru_cache(maxsize=4096)
def string_prefix(key: str, value_length: int) -> bytes:
    """A string attribute's bytes before a value of ``value_length`` UTF-8 bytes: its
    lengths depend on nothing else."""
    whole = _field(0x4A, _key(key) + _field(0x12, _field(0x0A, bytes(value_length))))
    return whole[:len(whole) - value_length]


def _int_attribute(key: str, value: int) -> bytes | None:
    """Span.attributes entry for an int (AnyValue.int_value); None outside int64."""
    if not -(1 << 63) <= value < (1 << 63):
        return None
    v = _varint(value & 0xFFFFFFFFFFFFFFFF)
    return _int_prefixes(key)[len(v)] + v


def _attribute(key: str, value: object) -> bytes | None:
    """Span.attributes entry (field 9) for one scalar value; None for other kinds."""
    kind = type(value)
    if kind is float:
        return _double_prefix(key) + _pack_double(value)  # type: ignore[arg-type]
    if kind is str:
        return _string_attribute(key, value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        any_value = b"\x10" + (b"\x01" if value else b"\x00")
    elif isinstance(value, str):
        return _string_attribute(key, str(value))
    elif isinstance(value, int):
        return _int_attribute(key, value)
    elif isinstance(value, float):
        return _double_prefix(key) + _pack_double(value)
    else:
        return None
    return _field(0x4A, _key(key) + _field(0x12, any_value))


@lru_cache(maxsize=256)
def _name(name: str) -> bytes:
    return _field(0x2A, name.encode())


name_bytes = _name
attribute_bytes = _attribute  # scalar values only (None for others)
int_attribute = _int_attribute
double_prefix = _double_prefix  # + 8 bytes of a double: a float attribute
pack_double = _pack_double
_EMPTY_STATUS = EMPTY_STATUS = b"\x7a\x00"  # the SDK always sets Span.status: empty (unset)


def span_bytes(span: ReadableSpan) -> bytes:
    """One span as an encoded ``Span`` message, as the SDK's encoder would make it."""
    ctx = span.get_span_context()
    status = span.status
    if span.events or span.links or ctx.trace_state or \
            span.dropped_attributes or span.dropped_events or span.dropped_links or \
            (status is not None and (status.status_code is not StatusCode.UNSET
                                     or status.description)):
        return _encode_span(span).SerializeToString()
    parts = [b"\x0a\x10", ctx.trace_id.to_bytes(16, "big"),
             b"\x12\x08", ctx.span_id.to_bytes(8, "big")]
    parent = span.parent
    if parent is not None:
        parts += [b"\x22\x08", parent.span_id.to_bytes(8, "big")]
    parts += [_name(span.name), b"\x30", _varint(_KINDS[span.kind]),
              b"\x39", _pack_fixed64(span.start_time or 0),
              b"\x41", _pack_fixed64(span.end_time or 0)]
    for key, value in (span.attributes or {}).items():
        encoded = _attribute(key, value)
        if encoded is None:  # an array or a map: the SDK's encoder
            return _encode_span(span).SerializeToString()
        parts.append(encoded)
    if status is not None:
        parts.append(_EMPTY_STATUS)
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    parts += [b"\x85\x01", _pack_fixed32(flags)]
    return b"".join(parts)


LOCAL_SPAN_FLAGS = b"\x85\x01" + _pack_fixed32(_HAS_IS_REMOTE)  # a span with a local parent


class SpanRequestWriter:
    """Writes ``ExportTraceServiceRequest``s. Spans are grouped by equal resource and
    scope as the SDK groups them; each distinct object is hashed (the SDK's resource hash
    dumps its attributes as JSON) and encoded once, then found again by identity."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[object, object, bytes]] = {}  # id -> obj, equal, bytes
        self._equal: dict[tuple[str, object], tuple[object, bytes]] = {}

    def _encoded(self, kind: str, obj) -> tuple[object, bytes]:  # type: ignore[no-untyped-def]
        held = self._known.get(id(obj))
        if held is not None and held[0] is obj:
            return held[1], held[2]
        found = self._equal.get((kind, obj))
        if found is None:
            if kind == "resource":
                body = _field(0x0A, _encode_resource(obj).SerializeToString())
            else:
                body = _field(0x0A, _encode_instrumentation_scope(obj).SerializeToString())
            if obj is not None and obj.schema_url:
                body += _field(0x1A, obj.schema_url.encode())
            found = self._equal[(kind, obj)] = (obj, body)
        if len(self._known) > 1024:  # objects made per span: keep the tables small
            self._known.clear()
            if len(self._equal) > 1024:
                self._equal.clear()
        self._known[id(obj)] = (obj, *found)
        return found

    def request_bytes(self, spans: Sequence[ReadableSpan]) -> bytes:
        groups: dict[int, tuple[bytes, dict[int, tuple[bytes, list]]]] = {}
        last: tuple[object, object] | None = None
        into: list = []
        for span in spans:
            # A batch's items share one resource and scope, mostly: looked up once.
            if last is None or span.resource is not last[0] or \
                    span.instrumentation_scope is not last[1]:
                last = (span.resource, span.instrumentation_scope)
                resource, resource_bytes = self._encoded("resource", span.resource)
                scope, scope_bytes = self._encoded("scope",
                                                   span.instrumentation_scope or None)
                by_scope = groups.setdefault(id(resource), (resource_bytes, {}))[1]
                into = by_scope.setdefault(id(scope), (scope_bytes, []))[1]
            # An item that writes itself (and its kind, many at once) stays an item here.
            into.append(span if hasattr(span, "encode_many") else
                        _field(0x12, span_bytes(span)))  # ScopeSpans.spans
        out = []
        for resource_bytes, by_scope in groups.values():
            scope_spans = [_field(0x12, scope_bytes + b"".join(_written(encoded)))
                           for scope_bytes, encoded in by_scope.values()]
            out.append(_field(0x0A, resource_bytes + b"".join(scope_spans)))
        return b"".join(out)

    def encoded(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The request's bytes, what gRPC sends."""
        try:
            return self.request_bytes(spans)
        except Exception:  # never lose a batch to this writer: the SDK's encoder
            return encode_spans(readable(spans)).SerializeToString()

    def request(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The request as the SDK's message (what its encoder makes, for comparison)."""
        return ExportTraceServiceRequest.FromString(self.encoded(spans))


def _written(entries: list) -> list[bytes]:
    """A scope's span entries as bytes: each run of items of one kind that writes itself
    written by that kind's ``encode_many`` in one call."""
    out: list[bytes] = []
    for kind, run in groupby(entries, key=type):
        if kind is bytes:
            out += run
        else:
            out.append(kind.encode_many(list(run)))
    return out


def readable(items: Sequence) -> list[ReadableSpan]:
    """``ReadableSpan``s of a batch that may hold items writing several spans themselves
    (``otel_traces.FrameSpans``)."""
    out: list[ReadableSpan] = []
    for item in items:
        expand = getattr(item, "readable", None)
        if expand is not None:
            out += expand()
        else:
            out.append(item)
    return out
