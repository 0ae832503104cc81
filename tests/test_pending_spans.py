"""Spans waiting for their energy: packed into columns past a count, the same spans when
released, in the order they came."""

from __future__ import annotations

from otel_benchlab.processors.pending_spans import PendingSpans
from otel_benchlab.records import StageSpan


def _spans(n: int) -> list[StageSpan]:
    return [StageSpan("p", f"req-{i}", None if i % 3 == 0 else i, "a", "b", 1000 + i,
                      2000 + (i * 7919) % 500, trace_id=(i + 1) << 100 | i,
                      span_id=(1 << 64) - 1 - i, foreign=i % 2 == 0) for i in range(n)]


def test_packed_spans_come_back_equal_and_in_the_order_they_came():
    pending = PendingSpans(pack_from=10, pack_min=5)
    spans = _spans(40)
    for s in spans[:25]:
        pending.add(s)
    pending.pack()
    for s in spans[25:]:
        pending.add(s)
    assert pending.packs and len(pending) == 40
    out = pending.take(2200) + pending.take(1 << 62)
    ready = [s for s in spans if s.end_ns <= 2200]
    assert out == ready + [s for s in spans if s.end_ns > 2200]
    assert [s.trace_id for s in out[:len(ready)]] == [s.trace_id for s in ready]
    assert len(pending) == 0


def test_a_span_that_must_keep_its_identity_is_not_packed():
    keep = _spans(30)[4]
    pending = PendingSpans(pinned=lambda s: s is keep, pack_from=10, pack_min=5)
    for s in _spans(30)[:4] + [keep] + _spans(30)[5:]:
        pending.add(s)
    pending.pack()
    assert pending.spans == [keep] and sum(len(p) for p in pending.packs) == 29


def test_a_span_running_at_the_cut_is_unpacked_and_stays_itself():
    pending = PendingSpans(pack_from=10, pack_min=5)
    for s in _spans(20):
        pending.add(s)
    pending.pack()
    running = pending.running(1005)
    assert [s.stream for s in running] == [f"req-{i}" for i in range(5)]
    assert pending.running(1005)[0] is running[0]  # the same object the next time


def test_a_frame_id_past_64_bits_stays_unpacked():
    pending = PendingSpans(pack_from=10, pack_min=5)
    big = StageSpan("p", "s", 1 << 70, "a", "b", 1, 2)
    for s in [*_spans(12), big]:
        pending.add(s)
    pending.pack()
    assert pending.spans == [big] and pending.take(1 << 62)[-1] is big
