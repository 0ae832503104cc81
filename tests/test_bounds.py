"""Each bound on what the agent keeps per name or per waiting record, with plain data:
names past ``[limits]`` fold into ``_other``, the live page's rings grow with their frames
within ``[live] max_bytes``, marks that never pair and frames that never complete are
bounded by count as well as by time."""

from __future__ import annotations

import numpy as np

from otel_benchlab.agent.limits import OVERFLOW, KeyLimits, LimitsConfig
from otel_benchlab.counters import AgentCounters
from otel_benchlab.processors.frames import FrameAssembler, TraceIds
from otel_benchlab.processors.pairing import StagePairer
from otel_benchlab.records import SpanBatch, StageMark, StageSpan
from otel_benchlab.views.live_page import LivePage
from otel_benchlab.views.live_rings import FIRST_FRAMES, FRAME_BYTES


def _spans(names: list[tuple[str, str, str, str]]) -> SpanBatch:
    return SpanBatch.of([StageSpan(p, s, n, a, b, 1000 * n, 1000 * n + 500)
                         for n, (p, s, a, b) in enumerate(names)])


def test_a_pipeline_past_max_pipelines_is_kept_under_other():
    counters = AgentCounters()
    limits = KeyLimits(LimitsConfig(max_pipelines=2), counters)
    shown = limits.fold_batch(_spans([(f"p{i}", "s", "a", "b") for i in range(5)]))
    assert [n[0] for n in shown.names()[1]] == ["p0", "p1", OVERFLOW]
    assert counters.get("overflow", kind="pipeline") == 3


def test_a_stream_past_max_streams_is_kept_under_other_for_its_pipeline_only():
    counters = AgentCounters()
    limits = KeyLimits(LimitsConfig(max_streams=2), counters)
    names = [("p", f"s{i}", "a", "b") for i in range(4)] + [("q", "s9", "a", "b")]
    shown = limits.fold_batch(_spans(names))
    assert shown.names()[1] == [("p", "s0", "a", "b"), ("p", "s1", "a", "b"),
                                ("p", OVERFLOW, "a", "b"), ("q", "s9", "a", "b")]
    assert counters.get("overflow", kind="stream") == 2


def test_a_pair_past_max_pairs_is_kept_under_other():
    limits = KeyLimits(LimitsConfig(max_pairs=1), AgentCounters())
    shown = limits.fold_batch(_spans([("p", "s", "a", "b"), ("p", "s", "x", "y")]))
    assert shown.names()[1] == [("p", "s", "a", "b"), ("p", "s", OVERFLOW, OVERFLOW)]


def test_a_folded_batch_keeps_its_spans_and_columns():
    limits = KeyLimits(LimitsConfig(max_streams=1), AgentCounters())
    batch = _spans([("p", "s0", "a", "b"), ("p", "s1", "a", "b"), ("p", "s0", "a", "b")])
    shown = limits.fold_batch(batch)
    assert shown.spans is batch.spans and shown.end_ns is batch.end_ns
    assert [shown.names()[1][c][1] for c in shown.names()[0]] == ["s0", OVERFLOW, "s0"]
    assert [s.stream for s in shown.spans] == ["s0", "s1", "s0"]  # the rows keep theirs


def test_a_batch_within_the_limits_is_returned_as_it_is():
    limits = KeyLimits(LimitsConfig(), AgentCounters())
    batch = _spans([("p", "s", "a", "b")])
    assert limits.fold_batch(batch) is batch


def _add(page: LivePage, pair: str, n: int, fps: float = 60.0, streams: int = 1,
         first: int = 0) -> None:
    gap = int(1e9 / fps)
    page.add(SpanBatch.of([StageSpan("p", f"s{k % streams}", k, pair, "z", k * gap,
                                     k * gap + 5_000_000) for k in range(first, first + n)]))


def test_a_ring_starts_small_and_grows_to_keep_15_minutes_at_its_rate():
    page = LivePage("sys", 0, max_bytes=64 << 20)
    _add(page, "slow", 1)
    for k in range(0, 30_000, 5000):  # 15 minutes at 60 frames/s: 54,000 frames
        _add(page, "busy", 5000, fps=60, first=k)
    assert len(page._pairs[("p", "slow", "z")].t) == FIRST_FRAMES
    assert len(page._pairs[("p", "busy", "z")].t) == 65536
    assert page.used == (FIRST_FRAMES + 65536) * FRAME_BYTES


def test_a_burst_grows_a_ring_to_twice_its_frames_not_to_15_minutes_of_its_rate():
    page = LivePage("sys", 0, max_bytes=64 << 20)
    _add(page, "burst", 20_000, fps=50_000)  # 15 minutes of that rate: 45 M frames
    assert len(page._pairs[("p", "burst", "z")].t) == 65536  # 2 x 20,000, rounded up


def test_a_pairs_streams_share_its_ring_and_each_frame_is_kept_once():
    page = LivePage("sys", 0)
    _add(page, "a", 6400, fps=1920, streams=64)
    (ring,) = page._pairs.values()
    assert ring.n == 6400 and len(ring.streams) == 64
    t, _, c = ring.rows(0)
    assert sorted(set(c.tolist())) == list(range(64))


def test_a_grown_ring_keeps_its_frames_in_time_order():
    page = LivePage("sys", 0)
    for k in range(4):
        page.add(SpanBatch.of([StageSpan("p", "s", n, "a", "b", 10 * n, 10 * n + 5)
                               for n in range(200 * k, 200 * (k + 1))]))
    (ring,) = page._pairs.values()
    t, _, _ = ring.rows(0)
    assert list(t) == [10 * n + 5 for n in range(800)]


def test_the_rings_stay_within_max_bytes():
    budget = 4 << 20
    page = LivePage("sys", 0, max_bytes=budget)
    for i in range(8):
        _add(page, f"pair{i}", 20_000, fps=2000)  # each would want 2M frames (48 MiB)
    assert len(page._pairs) == 8 and page.used <= budget
    # A ring grows to at most an equal share of the budget among the pairs it has then.
    first = page._pairs[("p", "pair0", "z")]
    assert len(first.t) * FRAME_BYTES <= budget


def _mark(stage: str, frame: int, ts: int) -> StageMark:
    return StageMark(ts, "p", "s", stage, frame)


def test_marks_that_never_pair_are_evicted_past_max_pending_oldest_first():
    pairer = StagePairer([("a", "b")], window_ns=10**12, max_pending=100)
    for n in range(1000):  # a new frame id a mark, no partner ever
        pairer.push(_mark("a", n, n))
    out = pairer.expire(now_ns=2000)
    assert pairer.pending == 100
    assert [u.reason for u in out] == ["evicted"] * 900
    assert [u.mark.frame for u in out] == list(range(900))


def test_id_less_marks_held_back_are_bounded_too():
    pairer = StagePairer([("a", "b")], window_ns=10**12, max_pending=50)
    for n in range(500):
        pairer.push(StageMark(n, "p", "s", "a", None))
    pairer.expire(now_ns=1000)
    assert pairer.pending == 50


def test_frames_that_never_complete_end_early_past_max_frames():
    frames = FrameAssembler(TraceIds("t"), [("a", "b"), ("b", "c")], linger_ns=10**12,
                            sample_ratio=1.0, latency_targets_ns={}, max_frames=100)
    spans = [StageSpan("p", f"s{n}", n, "a", "b", n, n + 1) for n in range(1000)]
    TraceIds("t").assign_many(spans)
    frames.add_spans(spans)
    ended = frames.expire(now_ns=2000)
    assert len(frames._frames) == 100
    assert sorted(ft.frame for ft in ended) == list(range(900))


def test_the_unpaired_of_a_folded_pipeline_are_counted_under_other():
    from otel_benchlab.records import Unpaired

    limits = KeyLimits(LimitsConfig(max_pipelines=1), AgentCounters())
    items = [Unpaired(p, "a", "b", "timeout", _mark("a", 1, 1)) for p in ("p", "q")]
    assert [u.pipeline for u in limits.fold_unpaired(items)] == ["p", OVERFLOW]
    assert np.all([u.mark is not None for u in limits.fold_unpaired(items)])


def _requests(models: list[str]) -> SpanBatch:
    """A request span (with its three phases) for each model name, as the intake makes
    them from vLLM's attributes."""
    from otel_benchlab.processors.genai import GenAIConfig, RequestSpans

    made = RequestSpans(GenAIConfig())
    spans = []
    for n, model in enumerate(models):
        attrs = {"gen_ai.response.model": model, "gen_ai.usage.prompt_tokens": 10,
                 "gen_ai.usage.completion_tokens": 20, "gen_ai.latency.time_in_queue": 0.1,
                 "gen_ai.latency.time_in_model_prefill": 0.1}
        spans += made.phases(attrs, "vllm", 10**9 * n, 10**9 * n + 10**9, n + 1, n + 1, [])
    return SpanBatch.of(spans)


def test_a_model_past_max_pipelines_is_kept_under_other_by_the_live_page_and_lines():
    from otel_benchlab.agent.llm_lines import RequestLines
    from otel_benchlab.views.llm_live import RequestRings

    limits = KeyLimits(LimitsConfig(max_pipelines=2), AgentCounters())
    shown = limits.fold_batch(_requests([f"model-{i}" for i in range(50)]))
    rings, lines = RequestRings(None, 0), RequestLines(None)
    rings.add(shown)
    lines.add(shown)
    assert rings.models == {"model-0", "model-1", OVERFLOW}
    assert set(lines._w) == {"model-0", "model-1", OVERFLOW}
    other = next(m for m in rings.snapshot(100.0, 900.0) if m["model"] == OVERFLOW)
    assert other["requests"] == 48


def test_a_models_request_ring_grows_as_requests_come_and_keeps_the_newest():
    from otel_benchlab.views import llm_live

    ring = llm_live._Ring()
    assert ring.rows.nbytes == llm_live.FIRST_ROWS * llm_live.FIELDS * 8
    for n in range(llm_live.RING + 10):
        ring.put((float(n),) + (0.0,) * (llm_live.FIELDS - 1))
    assert len(ring.rows) == llm_live.RING
    held = np.sort(ring.rows[:, 0])
    assert held[0] == 10 and held[-1] == llm_live.RING + 9


def test_a_steady_stream_has_its_15_minutes_ring_once_it_has_come_for_half_a_minute():
    page = LivePage("sys", 0, max_bytes=64 << 20)
    for second in range(40):  # 60 frames/s, a batch a second as the agent adds them
        _add(page, "steady", 60, fps=60, first=60 * second)
        if second == 10:
            assert len(page._pairs[("p", "steady", "z")].t) < 65536
    assert len(page._pairs[("p", "steady", "z")].t) == 65536  # 15 minutes: 54,000 frames
