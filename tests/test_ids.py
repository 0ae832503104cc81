"""Deterministic ids: a batch of spans gets the ids each span gets alone."""

from __future__ import annotations

from otel_benchlab.processors.frames import TraceIds
from otel_benchlab.records import StageSpan


def spans(frames: list[int | None]) -> list[StageSpan]:
    out = []
    for i, frame in enumerate(frames):
        a, b = [("ingress", "encoded"), ("encoded", "done")][i % 2]
        out.append(StageSpan(f"p{i % 2}", f"cam{i % 3}", frame, a, b, 10**9 + i * 7, 10**9 + i * 9))
    return out


def ids_alone(batch: list[StageSpan]) -> list[tuple[int, int]]:
    ids = TraceIds("session-1")
    for s in batch:
        ids.assign(s)
    return [(s.trace_id, s.span_id) for s in batch]


def ids_together(batch: list[StageSpan]) -> list[tuple[int, int]]:
    TraceIds("session-1").assign_many(batch)
    return [(s.trace_id, s.span_id) for s in batch]


def test_a_batch_gets_the_ids_each_span_gets_alone():
    frames = [0, 1, 2, None, -5, (1 << 63) - 1, -(1 << 63), 42, None, 7] * 3
    assert ids_together(spans(frames)) == ids_alone(spans(frames))


def test_a_frame_id_beyond_64_bits_gets_its_ids_as_alone():
    frames = [1, 1 << 70, 3]
    assert ids_together(spans(frames)) == ids_alone(spans(frames))


def test_an_empty_batch_is_nothing_to_do():
    TraceIds("session-1").assign_many([])


def test_hex_columns_of_ids_read_as_each_id_formatted_alone():
    from otel_benchlab.session.schema import hex_column

    ids = [0, 1, 0xABCDEF, (1 << 128) - 1, 1 << 127, 0x0123456789ABCDEF0123456789ABCDEF]
    assert hex_column(ids, 16).to_pylist() == [f"{i:032x}" for i in ids]
    spans = [0, 1, (1 << 64) - 1, 0x00FF00FF00FF00FF]
    assert hex_column(spans, 8).to_pylist() == [f"{i:016x}" for i in spans]
    assert hex_column([], 8).to_pylist() == []
    # Not an id of that size (a negative or a wider number): formatted as it is.
    assert hex_column([5, 1 << 70], 8).to_pylist() == ["0000000000000005", f"{1 << 70:016x}"]
