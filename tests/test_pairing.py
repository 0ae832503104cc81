"""Stage pairing: by frame id, by order, never shifted by a lost mark."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_benchlab.processors.pairing import StagePairer, pair_keyed_arrays
from otel_benchlab.records import StageMark, StageSpan, Unpaired

MS = 1_000_000
WINDOW = 2_000 * MS


def frames(n: int, period_ms: float, latency_ms: float, jitter_ms: float = 0.0,
           ids: bool = True, seed: int = 0) -> list[tuple[int, StageMark, StageMark]]:
    rng = random.Random(seed)
    out = []
    for f in range(n):
        t0 = int(f * period_ms * MS) + 10 * WINDOW
        lat = latency_ms + rng.uniform(-jitter_ms, jitter_ms)
        a = StageMark(t0, "p", "s", "A", f if ids else None)
        b = StageMark(t0 + int(lat * MS), "p", "s", "B", f if ids else None)
        out.append((f, a, b))
    return out


def run(marks: list[StageMark], ids: bool = True) -> tuple[list[StageSpan], list[Unpaired]]:
    pairer = StagePairer([("A", "B")], WINDOW)
    results = []
    for m in marks:
        results += pairer.push(m)
    results += pairer.flush()
    return ([r for r in results if isinstance(r, StageSpan)],
            [r for r in results if isinstance(r, Unpaired)])


def time_ordered(fr) -> list[StageMark]:
    return sorted([m for _, a, b in fr for m in (a, b)], key=lambda m: m.ts_ns)


def test_pairs_by_frame_id_even_when_marks_arrive_interleaved():
    fr = frames(50, 16.7, 40.0)  # pipelined: latency over two frame periods
    spans, unpaired = run(time_ordered(fr))
    assert len(spans) == 50 and not unpaired
    assert all(s.latency_ns == 40 * MS for s in spans)


def test_end_before_start_in_delivery_order_still_pairs_by_id():
    a = StageMark(100 * MS, "p", "s", "A", 7)
    b = StageMark(110 * MS, "p", "s", "B", 7)
    spans, unpaired = run([b, a])
    assert [s.latency_ns for s in spans] == [10 * MS] and not unpaired


def test_duplicate_mark_is_counted_not_paired_twice():
    a = StageMark(100 * MS, "p", "s", "A", 1)
    spans, unpaired = run([a, StageMark(101 * MS, "p", "s", "A", 1),
                           StageMark(110 * MS, "p", "s", "B", 1)])
    assert len(spans) == 1 and [u.reason for u in unpaired] == ["duplicate"]


def test_start_without_end_times_out_and_end_without_start_is_orphan():
    spans, unpaired = run([StageMark(100 * MS, "p", "s", "A", 1),
                           StageMark(110 * MS, "p", "s", "B", 2)])
    assert not spans
    assert sorted(u.reason for u in unpaired) == ["orphan", "timeout"]


def test_end_earlier_than_its_start_never_gives_negative_latency():
    spans, unpaired = run([StageMark(100 * MS, "p", "s", "A", 1),
                           StageMark(90 * MS, "p", "s", "B", 1)])
    assert not spans and {u.reason for u in unpaired} == {"orphan", "timeout"}


def test_latency_beyond_window_is_not_a_span():
    spans, _ = run([StageMark(0, "p", "s", "A", 1), StageMark(WINDOW + 1, "p", "s", "B", 1)])
    assert not spans


def test_expire_reports_stale_starts_as_timeouts():
    pairer = StagePairer([("A", "B")], WINDOW)
    pairer.push(StageMark(0, "p", "s", "A", 1))
    assert pairer.expire(WINDOW // 2) == []
    assert [u.reason for u in pairer.expire(WINDOW + 1)] == ["timeout"]


def test_done_frames_are_forgotten_once_their_end_leaves_the_window():
    pairer = StagePairer([("A", "B")], WINDOW)
    fr = frames(50, 10, 5, jitter_ms=4)
    for _, a, b in fr:
        pairer.push(a)
        pairer.push(b)
    last_end = max(b.ts_ns for _, _, b in fr)
    assert pairer.expire(last_end + WINDOW + 1) == []
    # Forgotten: the same ends again are orphans in waiting, not duplicates.
    again = [r for _, _, b in fr for r in pairer.push(b)]
    assert again == []
    assert pairer.expire(last_end + 2 * WINDOW + 2) != []


def test_a_done_frame_is_told_as_a_duplicate_while_its_end_is_in_the_window():
    # Frames every 10 ms over 8 windows, the agent's expiry once a second of them; each
    # frame's end sent again 1.9 s later (inside the 2 s window) is a duplicate, every time.
    pairer = StagePairer([("A", "B")], WINDOW)
    reasons, spans = [], 0
    for f in range(1600):
        t = WINDOW + f * 10 * MS
        results = pairer.push(StageMark(t, "p", "s", "A", f))
        results += pairer.push(StageMark(t + 5 * MS, "p", "s", "B", f))
        if f >= 190:
            results += pairer.push(StageMark(t, "p", "s", "B", f - 190))
        if f % 100 == 0:
            results += pairer.expire(t)
        spans += sum(isinstance(r, StageSpan) for r in results)
        reasons += [r.reason for r in results if isinstance(r, Unpaired)]
    assert spans == 1600 and reasons == ["duplicate"] * (1600 - 190)


@settings(max_examples=60, deadline=None)
@given(loss=st.floats(0.0, 0.4), seed=st.integers(0, 10_000), ids=st.booleans(),
       pipelined=st.booleans())
def test_random_loss_never_shifts_a_pair(loss, seed, ids, pipelined):
    # Without ids only stages shorter than a frame interval can be told apart (see
    # processors/pairing.py); with ids, pipelined stages too.
    pipelined = pipelined and ids
    period, latency = 16.0, (37.0 if pipelined else 9.0)
    fr = frames(300, period, latency, jitter_ms=period / 4 - 0.5, ids=ids, seed=seed)
    rng = random.Random(seed + 1)
    kept = [m for m in time_ordered(fr) if rng.random() >= loss]
    truth = {a.ts_ns: b.ts_ns for _, a, b in fr}
    spans, _ = run(kept, ids)
    assert spans, "some frames survive every loss rate here"
    wrong = [s for s in spans if truth[s.start_ns] != s.end_ns]
    assert not wrong, wrong[:3]
    survivors = sum(1 for _, a, b in fr if a in kept and b in kept)
    assert len(spans) == survivors


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), ids=st.booleans())
def test_reordering_within_the_window_does_not_change_the_result(seed, ids):
    fr = frames(200, 16.0, 9.0, jitter_ms=3.0, ids=ids, seed=seed)
    ordered = time_ordered(fr)
    rng = random.Random(seed)
    shuffled = list(ordered)
    for i in range(len(shuffled) - 1):  # local swaps: each mark moves by well under a window
        if rng.random() < 0.3:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    a, _ = run(ordered, ids)
    b, _ = run(shuffled, ids)
    assert sorted((s.start_ns, s.end_ns) for s in a) == sorted((s.start_ns, s.end_ns) for s in b)


def test_vectorised_pairing_agrees_with_the_live_pairer():
    rng = random.Random(3)
    fr = frames(2000, 16.0, 30.0, jitter_ms=10.0)
    marks = [m for m in time_ordered(fr) if rng.random() > 0.05]
    marks.append(StageMark(marks[10].ts_ns + 1, "p", "s", "A", marks[10].frame))  # duplicate
    marks.sort(key=lambda m: m.ts_ns)
    live, live_un = run(marks)
    key = np.array([m.frame for m in marks], np.int64)
    stage = np.array([0 if m.stage == "A" else 1 for m in marks])
    ts = np.array([m.ts_ns for m in marks], np.int64)
    r = pair_keyed_arrays(key, stage, ts, 0, 1, WINDOW)
    assert sorted(zip(ts[r.start_idx].tolist(), ts[r.end_idx].tolist(), strict=True)) == sorted(
        (s.start_ns, s.end_ns) for s in live)
    reasons = sorted(u.reason for u in live_un)
    assert reasons.count("duplicate") == len(r.duplicate_idx)
    assert reasons.count("timeout") == len(r.timeout_idx)
    assert reasons.count("orphan") == len(r.orphan_idx)
