"""Frame traces written straight in protobuf's wire format: each frame's root span and one
span per stage pair, as ``ScopeSpans.spans`` entries.

``frame_bytes`` writes one frame: fixed parts packed by ``struct``, names from caches.
``frames_bytes`` writes a whole export batch at once. Frames of one shape (the same
lengths of pipeline and stream names, frame id varint length, pairs in the same order and
the same power sources) differ only in fixed-size fields at fixed places, so a shape is a
numpy record: its constant bytes are made once, and a batch's ids, times, latencies and
power figures go into their columns a column at a time (the figures as rows of the energy
pass's matrix, ``records.PowerRows``, where the spans still point into it). A batch costs
0.52 of writing its frames one by one with figures in the matrix, 0.64-0.74 with figures
in dicts (``benchmarks/frame_wire.py``); most of what is left is taking the values out of
the frame and span objects, an attribute at a time. Both write
the bytes the SDK's encoder writes for the same spans (tests hold them equal); a frame the
shapes do not cover (a power figure that is not a float, a frame id outside int64) is
written by ``frame_bytes``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from otel_benchlab.session.schema import power_keys

from .span_wire import (
    EMPTY_STATUS,
    LOCAL_SPAN_FLAGS,
    attribute_bytes,
    double_prefix,
    int_attribute,
    int_prefix,
    name_bytes,
    pack_double,
    string_prefix,
    varint_bytes,
)

if TYPE_CHECKING:
    from otel_benchlab.processors.frames import FrameTrace
    from otel_benchlab.records import StageSpan

_INTERNAL = b"\x30\x01"  # Span.kind = SPAN_KIND_INTERNAL
_LATENCY = double_prefix("benchlab.latency")
_ROOT_NAME = name_bytes("frame")
_IDS = struct.Struct(">BBQQ").pack  # TraceId (field 1) as 16 big-endian bytes
_SPAN_ID = struct.Struct(">BBQ").pack  # SpanId (field 2) or ParentSpanId (field 4)
_TIMES = struct.Struct("<BQBQ").pack  # start and end time (fields 7, 8): fixed64
_CLOSE = EMPTY_STATUS + LOCAL_SPAN_FLAGS
_LOW64 = (1 << 64) - 1


@functools.lru_cache(maxsize=1024)
def _power_prefixes(label: str) -> tuple[bytes, bytes, bytes]:
    return tuple(double_prefix(key) for key in power_keys(label))  # type: ignore[return-value]


@functools.lru_cache(maxsize=4096)
def _stage_parts(pipeline: str, stream: str, stage_from: str, stage_to: str
                 ) -> tuple[bytes, Callable[[int, int, float], bytes]]:
    """A stage span's name and kind fields, and a ``struct`` pack of what follows them:
    its times, its four name attributes and its latency. The same for every frame of a
    stream and pair, so made once."""
    # The four name attributes, in ``otel_traces.span_attributes``' order, and the latency.
    middle = b"".join((attribute_bytes("benchlab.pipeline", pipeline),
                       attribute_bytes("benchlab.stream", stream),
                       attribute_bytes("benchlab.stage.from", stage_from),
                       attribute_bytes("benchlab.stage.to", stage_to), _LATENCY))
    pack = struct.Struct(f"<BQBQ{len(middle)}sd").pack

    def times_names_latency(start: int, end: int, latency_s: float) -> bytes:
        return pack(0x39, start, 0x41, end, middle, latency_s)

    return _pair_name(stage_from, stage_to), times_names_latency


@functools.lru_cache(maxsize=1024)
def _pair_name(stage_from: str, stage_to: str) -> bytes:
    return name_bytes(f"{stage_from}->{stage_to}") + _INTERNAL


@functools.lru_cache(maxsize=4096)
def _root_names(pipeline: str, stream: str, over_target: bool) -> bytes:
    return b"".join((attribute_bytes("benchlab.pipeline", pipeline),
                     attribute_bytes("benchlab.stream", stream),
                     attribute_bytes("benchlab.over_target", over_target)))


@functools.lru_cache(maxsize=1024)
def _power_pack(label: str) -> Callable[[float, float, float], bytes]:
    """A source's mean power, energy and attributed energy attributes, all floats, in one
    ``struct`` call."""
    prefixes = _power_prefixes(label)
    pack = struct.Struct("<" + "".join(f"{len(p)}sd" for p in prefixes)).pack
    mean_prefix, energy_prefix, attr_prefix = prefixes
    return lambda mean, energy, attr: pack(mean_prefix, mean, energy_prefix, energy,
                                           attr_prefix, attr)


def _power_attributes(span: StageSpan, out: list[bytes]) -> None:
    """``span_attributes(span)``'s power figures, encoded onto ``out`` (a float as its 8
    bytes behind a prefix made once per key)."""
    for label, fig in span.power.items():
        if type(fig.mean_w) is float and type(fig.energy_j) is float and \
                type(fig.energy_attr_j) is float:
            out.append(_power_pack(label)(*fig))
            continue
        for value, prefix, key in zip(fig, _power_prefixes(label), power_keys(label),
                                      strict=True):
            if type(value) is float:
                out += (prefix, pack_double(value))
            elif value is not None:  # an integer, say, from an application's span
                out.append(attribute_bytes(key, value))


def frame_bytes(f: FrameTrace, offset: int) -> bytes:
    """One frame's ``ScopeSpans.spans`` entries: the root, then one span per pair; each
    span's bytes go into the frame's list behind their tag and length (one copy, at the
    join). ``offset``: the time base's monotonic-to-Unix offset."""
    ids = _IDS(0x0A, 0x10, f.trace_id >> 64, f.trace_id & _LOW64)
    parent = _SPAN_ID(0x22, 8, f.root_span_id)
    # Made once a frame, for its root and each stage span.
    frame_attribute = int_attribute("benchlab.frame", f.frame) if f.frame is not None \
        else b""
    body = b"".join((ids, _SPAN_ID(0x12, 8, f.root_span_id), _ROOT_NAME, _INTERNAL,
                     _TIMES(0x39, f.first_ns + offset, 0x41, f.last_ns + offset),
                     _root_names(f.pipeline, f.stream, f.over_target),
                     frame_attribute, _CLOSE))  # type: ignore[arg-type]
    out = [b"\x12", varint_bytes(len(body)), body]
    for s in f.spans:
        name_kind, middle = _stage_parts(s.pipeline, s.stream, s.stage_from, s.stage_to)
        parts = [ids, _SPAN_ID(0x12, 8, s.span_id), parent, name_kind,
                 middle(s.start_ns + offset, s.end_ns + offset,
                        (s.end_ns - s.start_ns) / 1e9)]
        if s.frame is not None:
            parts.append(frame_attribute)  # type: ignore[arg-type] # None: the SDK's
        if s.power:
            _power_attributes(s, parts)
        parts.append(_CLOSE)
        body = b"".join(parts)
        out += (b"\x12", varint_bytes(len(body)), body)
    return b"".join(out)


# -- a batch of frames, a shape at a time ---------------------------------------------

@functools.lru_cache(maxsize=4096)
def _encoded(name: str) -> bytes:
    return name.encode()


class _Shape:
    """One shape's record: its numpy dtype, its constant bytes, and for each variable field
    what goes in it (``("hi",)``, ``("start", i)``, ``("mean", i, j)`` ...)."""

    def __init__(self, pipeline_len: int, stream_len: int, frame_len: int,
                 spans: tuple[tuple[str, str, bool, tuple[str, ...]], ...]) -> None:
        self.template = bytearray()
        self.fields: list[tuple[str, str, int, tuple]] = []  # name, format, offset, source
        self.spans = spans
        self.frame_len = frame_len
        root = self._root(pipeline_len, stream_len)
        self._entry(root)
        for i, (stage_from, stage_to, idless, labels) in enumerate(spans):
            self._entry(self._stage(i, pipeline_len, stream_len, stage_from, stage_to,
                                    idless, labels))
        self.dtype = np.dtype({"names": [f[0] for f in self.fields],
                               "formats": [f[1] for f in self.fields],
                               "offsets": [f[2] for f in self.fields],
                               "itemsize": len(self.template)})

    # A span is a list of parts: bytes, or (format, size, source) for a variable field.
    def _entry(self, parts: list) -> None:
        size = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
        self.template += b"\x12" + varint_bytes(size)
        for p in parts:
            if isinstance(p, bytes):
                self.template += p
                continue
            fmt, n, source = p
            self.fields.append((f"f{len(self.fields)}", fmt, len(self.template), source))
            self.template += bytes(n)

    def _names(self, pipeline_len: int, stream_len: int) -> list:
        return [string_prefix("benchlab.pipeline", pipeline_len),
                (f"S{pipeline_len}", pipeline_len, ("pipeline",)),
                string_prefix("benchlab.stream", stream_len),
                (f"S{stream_len}", stream_len, ("stream",))]

    def _frame_id(self) -> list:
        n = self.frame_len
        return [int_prefix("benchlab.frame", n), ("u1" if n == 1 else f"({n},)u1", n,
                                                  ("frame",))] if n else []

    def _root(self, pipeline_len: int, stream_len: int) -> list:
        over = attribute_bytes("benchlab.over_target", False)
        return [b"\x0a\x10", (">u8", 8, ("hi",)), (">u8", 8, ("lo",)), b"\x12\x08",
                (">u8", 8, ("root",)), _ROOT_NAME + _INTERNAL + b"\x39",
                ("<u8", 8, ("first",)), b"\x41", ("<u8", 8, ("last",)),
                *self._names(pipeline_len, stream_len), over[:-1], ("u1", 1, ("over",)),
                *self._frame_id(), _CLOSE]

    def _stage(self, i: int, pipeline_len: int, stream_len: int, stage_from: str,
               stage_to: str, idless: bool, labels: tuple[str, ...]) -> list:
        stages = attribute_bytes("benchlab.stage.from", stage_from) + \
            attribute_bytes("benchlab.stage.to", stage_to)
        parts = [b"\x0a\x10", (">u8", 8, ("hi",)), (">u8", 8, ("lo",)), b"\x12\x08",
                 (">u8", 8, ("span", i)), b"\x22\x08", (">u8", 8, ("root",)),
                 _pair_name(stage_from, stage_to) + b"\x39", ("<u8", 8, ("start", i)),
                 b"\x41", ("<u8", 8, ("end", i)), *self._names(pipeline_len, stream_len),
                 stages + _LATENCY, ("<f8", 8, ("latency", i))]
        if not idless:
            parts += self._frame_id()
        for j, label in enumerate(labels):
            mean_prefix, energy_prefix, attr_prefix = _power_prefixes(label)
            parts += [mean_prefix, ("<f8", 8, ("mean", i, j)), energy_prefix,
                      ("<f8", 8, ("energy", i, j)), attr_prefix, ("<f8", 8, ("attr", i, j))]
        parts.append(_CLOSE)
        return parts


@functools.lru_cache(maxsize=1024)
def _shape(pipeline_len: int, stream_len: int, frame_len: int,
           spans: tuple[tuple[str, str, bool, tuple[str, ...]], ...]) -> _Shape:
    return _Shape(pipeline_len, stream_len, frame_len, spans)


_VARINT_STEPS = np.array([1 << (7 * k) for k in range(1, 10)], np.uint64)


def _layout(frames: list[FrameTrace]) -> tuple | None:
    """The shape all these frames have (``_shape``'s arguments), their names, their frame
    ids' varints and their spans a pair at a time; None where they differ (names of other
    lengths, pairs in another order, other power sources, ids of other varint lengths). A
    stage span's pipeline and stream are its frame's: the frame assembler keys frames by
    them."""
    first = frames[0]
    pipelines = [_encoded(f.pipeline) for f in frames]
    streams = [_encoded(f.stream) for f in frames]
    if len(set(map(len, pipelines))) > 1 or len(set(map(len, streams))) > 1 or \
            not pipelines[0] or not streams[0]:  # numpy has no zero-width text field
        return None
    frame_len, digits = 0, None
    if first.frame is not None:
        try:
            ids = np.array([f.frame for f in frames], np.int64).view(np.uint64)
        except (OverflowError, TypeError):  # beyond int64, or an id-less frame among them
            return None
        lengths = 1 + np.searchsorted(_VARINT_STEPS, ids, side="right")
        frame_len = int(lengths[0])
        if (lengths != frame_len).any():
            return None
        digits = np.empty((len(frames), frame_len), np.uint8)
        for k in range(frame_len):
            digits[:, k] = (ids >> np.uint64(7 * k)) & np.uint64(0x7F)
        digits[:, :-1] |= 0x80
    spans, columns = [], []
    for i, s in enumerate(first.spans):
        column = [f.spans[i] for f in frames]
        columns.append(column)
        if len({x.stage_from for x in column}) > 1 or len({x.stage_to for x in column}) > 1:
            return None
        idless = [x.frame for x in column].count(None)
        if idless not in (0, len(frames)):
            return None
        labels = {x.power_labels for x in column}
        if len(labels) > 1:
            return None
        spans.append((s.stage_from, s.stage_to, idless > 0, labels.pop()))
    return (len(pipelines[0]), len(streams[0]), frame_len, tuple(spans)), \
        pipelines, streams, digits, columns


def _columns(shape: _Shape, frames: list[FrameTrace], offset: int, pipelines: list[bytes],
             streams: list[bytes], digits: np.ndarray | None,
             span_columns: list[list[StageSpan]]) -> dict | None:
    """Each variable field's values for these frames; None if a value is outside what the
    shape writes (a power figure that is not a float, a time before 1970)."""
    trace_ids = [f.trace_id for f in frames]
    cols: dict[tuple, object] = {
        ("hi",): np.array([t >> 64 for t in trace_ids], np.uint64),
        ("lo",): np.array([t & _LOW64 for t in trace_ids], np.uint64),
        ("root",): np.array([f.root_span_id for f in frames], np.uint64),
        ("first",): np.array([f.first_ns for f in frames], np.int64) + offset,
        ("last",): np.array([f.last_ns for f in frames], np.int64) + offset,
        ("pipeline",): np.array(pipelines),
        ("stream",): np.array(streams),
        ("over",): np.array([f.over_target for f in frames], np.uint8),
    }
    if digits is not None:
        cols[("frame",)] = digits[:, 0] if shape.frame_len == 1 else digits
    if cols[("first",)].min() < 0:  # type: ignore[union-attr] # no fixed64 (frame_bytes
        return None  # raises, and the SDK's encoder writes the batch)
    for i, (_, _, _, labels) in enumerate(shape.spans):
        spans = span_columns[i]
        start = np.array([s.start_ns for s in spans], np.int64)
        end = np.array([s.end_ns for s in spans], np.int64)
        cols[("span", i)] = np.array([s.span_id for s in spans], np.uint64)
        cols[("start", i)] = start + offset
        cols[("end", i)] = end + offset
        cols[("latency", i)] = (end - start) / 1e9
        if cols[("start", i)].min() < 0:  # type: ignore[union-attr]
            return None
        if not labels:
            continue
        values = _power_matrix(spans, labels)
        if values is None:
            return None
        for j in range(len(labels)):
            cols[("mean", i, j)] = values[:, 3 * j]
            cols[("energy", i, j)] = values[:, 3 * j + 1]
            cols[("attr", i, j)] = values[:, 3 * j + 2]
    return cols


def _power_matrix(spans: list[StageSpan], labels: tuple[str, ...]) -> np.ndarray | None:
    """The spans' figures for ``labels`` as rows (mean_0, energy_0, attr_0, mean_1, ...), taken
    from the energy pass's matrices where the spans still point into them; None where a
    figure is unknown or not a float (the one-frame writer leaves it out, or writes it as
    what it is)."""
    rows = [s._rows for s in spans]
    if None not in rows:
        at = np.fromiter((s._row for s in spans), np.intp, len(spans))
        first = rows[0]
        if rows.count(first) == len(rows):  # one pass's spans: the usual case
            values = first.values[at]
        else:  # spans of a few passes (a batch that straddles two)
            values = np.empty((len(spans), 3 * len(labels)))
            for r in {id(r): r for r in rows}.values():
                mine = np.fromiter((x is r for x in rows), bool, len(rows))
                values[mine] = r.values[at[mine]]
    else:  # figures set as dicts: an application's, a test's
        values = np.empty((len(spans), 3 * len(labels)))
        for j, label in enumerate(labels):
            figures = [s.power[label] for s in spans]
            for k in range(3):
                column = [p[k] for p in figures]
                if set(map(type, column)) != {float}:
                    return None
                values[:, 3 * j + k] = column
        return values  # a NaN here is a float like any other, written as one
    return None if np.isnan(values).any() else values  # a matrix's NaN: not known


def _written(frames: list[FrameTrace], offset: int) -> memoryview | None:
    """These frames' bytes, if they have one shape and its fields hold their values."""
    layout = _layout(frames)
    if layout is None:
        return None
    key, *values = layout
    shape = _shape(*key)
    cols = _columns(shape, frames, offset, *values)
    if cols is None:
        return None
    # The records' constant bytes are the template's, in a buffer of their own: numpy
    # copies only a record's fields, never the bytes between them.
    buffer = bytearray(shape.template * len(frames))
    records = np.frombuffer(buffer, shape.dtype)
    for name, _, _, source in shape.fields:
        records[name] = cols[source]
    return memoryview(buffer)


def _shape_key(f: FrameTrace) -> tuple:
    # The varint's length, as frame_bytes writes it (a negative id: its two's complement).
    frame_len = 0 if f.frame is None else len(varint_bytes(f.frame & _LOW64))
    return (f.pipeline, f.stream, frame_len,
            tuple([(s.stage_from, s.stage_to, s.frame is None, s.power_labels)
                   for s in f.spans]))


def frames_bytes(frames: Sequence[FrameTrace], offset: int) -> bytes:
    """``frame_bytes`` of each frame, joined in order, written a shape at a time.

    Frames are grouped by what is quick to tell (name lengths, whether they have ids, how
    many spans); a group whose frames turn out to differ in shape is grouped again by
    everything, and what is left in groups too small to pay goes a frame at a time."""
    out: list[bytes | memoryview | None] = [None] * len(frames)
    groups: dict[tuple, list[int]] = {}
    for k, f in enumerate(frames):
        key = (len(f.pipeline), len(f.stream), f.frame is None, len(f.spans))
        group = groups.get(key)
        if group is None:
            groups[key] = [k]
        else:
            group.append(k)
    for where in groups.values():
        if not _write(frames, where, offset, out):
            finer: dict[tuple, list[int]] = {}
            for k in where:
                finer.setdefault(_shape_key(frames[k]), []).append(k)
            for again in finer.values():
                if not _write(frames, again, offset, out):
                    for k in again:
                        out[k] = frame_bytes(frames[k], offset)
    return b"".join(out)  # type: ignore[arg-type]


def _write(frames: Sequence[FrameTrace], where: list[int], offset: int,
           out: list[bytes | memoryview | None]) -> bool:
    if len(where) < 4:  # a record pays from a few frames on
        return False
    view = _written([frames[k] for k in where], offset)
    if view is None:
        return False
    size = len(view) // len(where)
    for i, k in enumerate(where):
        out[k] = view[i * size:(i + 1) * size]
    return True
