"""The OTLP intake's other half: trace requests held while their spans are measured, then
forwarded upstream with each span's power and energy added (and, in a cluster, the GPUs
its pod holds); and the attribute look-ups both halves use."""

from __future__ import annotations

import functools
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from otel_benchlab.exporters.otlp_forward import OtlpForwarder
from otel_benchlab.processors.genai import request_figures
from otel_benchlab.records import StageSpan
from otel_benchlab.session.schema import power_keys


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attribute_frame(attrs: Any, key: str) -> int | None:
    for kv in attrs:
        if kv.key == key:
            val = _value(kv.value)
            if isinstance(val, int) and not isinstance(val, bool):
                return val
            if isinstance(val, str) and val.isdigit():
                return int(val)
            return None
    return None


def attribute_values(attrs: Any, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """A span's attributes (only ``keys``, when given) as a dict of plain values (the
    first of a repeated key)."""
    out: dict[str, Any] = {}
    for kv in attrs:
        key = kv.key
        if (keys is None or key in keys) and key not in out:
            out[key] = _value(kv.value)
    return out


def attribute_text(attrs: Any, key: str, default: str) -> str:
    for kv in attrs:
        if kv.key == key:
            val = _value(kv.value)
            return str(val) if val not in (None, "") else default
    return default


_DOUBLE = struct.Struct("<d").pack


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.lru_cache(maxsize=4096)
def _double_attribute_head(key: str) -> bytes:
    """A Span's ``attributes`` entry (field 9: KeyValue{1: key, 2: AnyValue{4: double}})
    up to the double's 8 bytes."""
    k = key.encode()
    kv = b"\x0a" + _varint(len(k)) + k + b"\x12\x09\x21"
    return b"\x4a" + _varint(len(kv) + 8) + kv


def add_double_attributes(span: Any, pairs: Iterable[tuple[str, float]]) -> None:
    """Append ``(key, value)`` double attributes to a proto Span as one merge of their
    wire bytes: a tenth of the cost of a KeyValue message each (an LLM request span gains
    two dozen), and the same message."""
    span.MergeFromString(b"".join([_double_attribute_head(k) + _DOUBLE(v) for k, v in pairs]))


class IntakeEnricher:
    """Holds trace requests whose spans are being measured; adds each span's power once the
    agent has it and forwards the request when all its spans have theirs (or after
    ``hold_s``: a span whose power never comes is forwarded as it came)."""

    name = "OTLP intake enricher"

    def __init__(self, forwarder: OtlpForwarder, hold_s: float, max_held: int,
                 pod_devices: Callable[[str, str], list[str]] | None = None) -> None:
        self.forwarder = forwarder
        # (namespace, pod) -> the GPUs it holds (kubelet PodResources), when known
        self.pod_devices = pod_devices
        self.hold_ns = int(hold_s * 1e9)
        self.max_held = max_held
        self._lock = threading.Lock()
        self._spans: dict[tuple[int, int], tuple[list, Any]] = {}
        # request id -> [request, spans still waiting, deadline]
        self._held: OrderedDict[int, list] = OrderedDict()

    def hold(self, request: Any, spans: list[tuple[tuple[int, int], Any]]) -> bool:
        """Keep ``request`` until ``spans`` (keys and their proto spans) are measured;
        False when too many requests are held already (forward it now instead)."""
        if self.pod_devices is not None:
            self._add_pod_gpus(request, {id(sp) for _, sp in spans})
        with self._lock:
            if len(self._held) >= self.max_held:
                return False
            entry = [request, len(spans), time.monotonic_ns() + self.hold_ns]
            self._held[id(request)] = entry
            for key, proto in spans:
                self._spans[key] = (entry, proto)
        return True

    def _add_pod_gpus(self, request: Any, measured: set[int]) -> None:
        """A measured span from a pod that holds GPUs says which (``benchlab.gpu.ids``), so
        its energy can be read against that pod's own GPUs."""
        assert self.pod_devices is not None
        for rs in request.resource_spans:
            ns = attribute_text(rs.resource.attributes, "k8s.namespace.name", "")
            pod = attribute_text(rs.resource.attributes, "k8s.pod.name", "")
            gpus = self.pod_devices(ns, pod) if ns and pod else []
            if not gpus:
                continue
            value = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=g)
                                                            for g in gpus]))
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    if id(sp) in measured:
                        sp.attributes.append(KeyValue(key="benchlab.gpu.ids", value=value))

    def export(self, spans: list[StageSpan]) -> None:
        """Called by the runtime with every span that has its power."""
        ready = []
        with self._lock:
            for s in spans:
                if not s.foreign:
                    continue
                found = self._spans.pop((s.trace_id, s.span_id), None)
                if found is None:
                    continue
                entry, proto = found
                added = [(key, value) for label, fig in s.power.items()
                         for key, value in zip(power_keys(label), fig, strict=True)
                         if value is not None]
                if s.genai is not None:
                    added += request_figures(s)
                add_double_attributes(proto, added)
                entry[1] -= 1
                if entry[1] <= 0 and self._held.pop(id(entry[0]), None) is not None:
                    ready.append(entry[0])
            ready += self._expired(time.monotonic_ns())
        for request in ready:
            self.forwarder.forward("traces", request)

    def _expired(self, now_ns: int, everything: bool = False) -> list:
        out = []
        while self._held:
            rid, entry = next(iter(self._held.items()))
            if not everything and entry[2] > now_ns:
                break
            del self._held[rid]
            out.append(entry[0])
        if out:
            gone = {id(r) for r in out}
            self._spans = {k: v for k, v in self._spans.items() if id(v[0][0]) not in gone}
        return out

    def shutdown(self) -> None:
        with self._lock:
            rest = self._expired(0, everything=True)
        for request in rest:
            self.forwarder.forward("traces", request)
        self.forwarder.shutdown()
