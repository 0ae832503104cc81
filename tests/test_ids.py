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
