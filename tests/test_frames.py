"""Frames for traces: a frame is done when every configured pair reported for it, or once
it has been quiet for the linger time; sampling keeps a frame over a pair's target."""

from __future__ import annotations

from otel_benchlab.processors.frames import FrameAssembler, TraceIds
from otel_benchlab.records import StageMark, StageSpan

PAIRS = [("ingress", "encoded"), ("encoded", "done")]
MS = 1_000_000


def assembler(ratio: float = 1.0, targets: dict[str, int] | None = None) -> FrameAssembler:
    return FrameAssembler(TraceIds("s"), PAIRS, 500 * MS, ratio, targets or {})


def span(frame: int | None, pair: tuple[str, str], start: int, end: int) -> StageSpan:
    return StageSpan("p", "cam0", frame, pair[0], pair[1], start, end)


def test_a_frame_is_done_when_each_configured_pair_has_reported_in_any_order():
    fa = assembler()
    assert fa.add_span(span(7, PAIRS[1], 12 * MS, 20 * MS)) == []
    done = fa.add_span(span(7, PAIRS[0], 10 * MS, 12 * MS))
    assert len(done) == 1 and [s.pair for s in done[0].spans] == ["encoded->done",
                                                                 "ingress->encoded"]
    assert (done[0].first_ns, done[0].last_ns) == (10 * MS, 20 * MS)
    assert fa.expire(10**12) == []  # nothing left behind


def test_a_frame_runs_from_its_first_to_its_last_mark_even_one_no_pair_covers():
    fa = assembler()
    fa.add_mark(StageMark(9 * MS, "p", "cam0", "queued", 7))
    fa.add_mark(StageMark(10 * MS, "p", "cam0", "ingress", 7))
    fa.add_span(span(7, PAIRS[0], 10 * MS, 12 * MS))
    done = fa.add_span(span(7, PAIRS[1], 12 * MS, 20 * MS))
    assert (done[0].first_ns, done[0].last_ns) == (9 * MS, 20 * MS)


def test_a_frame_missing_a_pair_goes_out_once_quiet_for_the_linger_time():
    fa = assembler()
    fa.add_span(span(7, PAIRS[0], 10 * MS, 12 * MS))
    assert fa.expire(12 * MS + 400 * MS) == []
    done = fa.expire(12 * MS + 501 * MS)
    assert len(done) == 1 and len(done[0].spans) == 1


def test_a_pair_nobody_configured_keeps_the_frame_open_until_it_lingers_out():
    fa = assembler()
    fa.add_span(span(7, PAIRS[0], 10 * MS, 12 * MS))
    fa.add_span(span(7, ("encoded", "muxed"), 12 * MS, 15 * MS))
    assert fa.add_span(span(7, PAIRS[1], 12 * MS, 20 * MS)) == []
    assert len(fa.expire(10**12)[0].spans) == 3


def test_unsampled_frames_are_dropped_unless_a_pair_is_over_its_target():
    fa = assembler(ratio=0.0, targets={"ingress->encoded": 5 * MS})
    fa.add_span(span(1, PAIRS[0], 0, 2 * MS))
    assert fa.add_span(span(1, PAIRS[1], 2 * MS, 9 * MS)) == []  # within target
    fa.add_span(span(2, PAIRS[0], 0, 6 * MS))  # over target
    kept = fa.add_span(span(2, PAIRS[1], 6 * MS, 9 * MS))
    assert len(kept) == 1 and kept[0].over_target
    assert (fa.unsampled, fa.kept_over_target, fa.sampled) == (1, 1, 0)


def test_a_span_without_a_frame_id_is_a_trace_of_its_own_at_once():
    fa = assembler()
    s = span(None, PAIRS[0], 10 * MS, 12 * MS)
    s.trace_id = 1 << 100
    done = fa.add_span(s)
    assert len(done) == 1 and done[0].trace_id == 1 << 100 and done[0].frame is None


def test_a_frames_ids_are_the_hash_of_its_pipeline_stream_and_frame_in_batches_of_any_size():
    from otel_benchlab.processors.ids import span_id

    for n in (1, 5, 40):  # one frame at a time, a few, a batch (done in one vector pass)
        ids = TraceIds("s")
        fa = FrameAssembler(ids, PAIRS, 500 * MS, 1.0, {})
        spans = []
        for f in range(n):
            fa.add_mark(StageMark(10 * MS, "p", "cam0", "ingress", f))
            spans += [span(f, PAIRS[0], 10 * MS, 12 * MS), span(f, PAIRS[1], 12 * MS, 20 * MS)]
        ids.assign_many(spans[: n // 2 * 2])  # some spans come with their ids, some not
        done = fa.add_spans(spans)
        assert len(done) == n
        for ft in done:
            expected = ids.trace_for("p", "cam0", ft.frame)
            assert ft.trace_id == expected and ft.root_span_id == span_id(expected, "frame")
