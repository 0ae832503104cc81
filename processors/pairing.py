"""Stage pairing: StageMarks -> StageSpans for each configured (stage_from, stage_to) pair.

Marks with a frame id pair by (pipeline, stream, frame): loss or reordering of one mark can
never affect another frame. Marks without ids pair by order, but not blindly first-in
first-out (one lost mark would shift every later pair): an end mark takes the pending start
whose latency is closest to the tracked latency, and only if it is within half a frame
interval (a low quantile of recent start gaps, which loss does not inflate) of it; otherwise it
is an orphan. The tracker starts from the nearest preceding start, so id-less pairing
assumes a stage shorter than one frame interval when the stream starts; pipelined stages
(several frames in flight) need frame ids to be told apart. Id-less marks are held back
for the window and processed in time order, so delivery order within the window does not
matter either.

Unpaired marks are reported with a reason: ``timeout`` (a start whose end never came
within the window), ``orphan`` (an end with no start), ``duplicate`` (a stage seen twice
for one frame), ``evicted`` (more marks waiting than ``max_pending``: the oldest go, so a
sender making up a new frame id a mark holds the agent to a bound, not to a time). A span
never has a negative latency or one longer than the window.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.records import StageMark, StageSpan, Unpaired

Result = StageSpan | Unpaired
# (pipeline, stream) states of id-less pairing kept at most; past it the idle ones go.
STREAM_STATES = 65_536


@dataclass
class _OrderedStream:
    """Order-based pairing state for one (pipeline, stream) and one pair."""

    starts: deque[StageMark] = field(default_factory=deque)
    ref_latency: float | None = None
    misses: int = 0


class _Interval:
    """Frame interval of one (pipeline, stream, stage): the lower quartile of the gaps
    between its recent start marks, recorded as they arrive (ahead of the held-back
    pairing). A lost mark only ever lengthens a gap, so a low quantile is not fooled by
    loss the way a mean or median is."""

    def __init__(self, keep: int = 65) -> None:
        self.times: list[int] = []
        self.keep = keep

    def add(self, ts_ns: int) -> None:
        bisect.insort(self.times, ts_ns)
        if len(self.times) > self.keep:
            del self.times[0]

    def median(self, upto_ns: int) -> float | None:
        i = bisect.bisect_right(self.times, upto_ns)
        t = self.times[max(0, i - 32):i + 32]
        gaps = sorted(b - a for a, b in zip(t, t[1:], strict=False) if b > a)
        return float(gaps[len(gaps) // 4]) if len(gaps) >= 3 else None


class PairState:
    """Pairing state for one configured pair."""

    MISSES_BEFORE_RESYNC = 8

    def __init__(self, stage_from: str, stage_to: str, window_ns: int) -> None:
        self.stage_from = stage_from
        self.stage_to = stage_to
        self.window_ns = window_ns
        self._starts: dict[tuple, StageMark] = {}
        self._ends: dict[tuple, StageMark] = {}
        self._done: dict[tuple, int] = {}
        self._ordered: dict[tuple[str, str], _OrderedStream] = {}

    # -- helpers ---------------------------------------------------------------------
    def _unpaired(self, mark: StageMark, reason: str) -> Unpaired:
        return Unpaired(mark.pipeline, self.stage_from, self.stage_to, reason, mark)

    def _span(self, start: StageMark, end: StageMark) -> StageSpan:
        return StageSpan(start.pipeline, start.stream, start.frame, self.stage_from,
                         self.stage_to, start.ts_ns, end.ts_ns)

    def _match(self, start: StageMark, end: StageMark, out: list[Result]) -> bool:
        lat = end.ts_ns - start.ts_ns
        if 0 <= lat <= self.window_ns:
            out.append(self._span(start, end))
            return True
        return False

    # -- pairing by frame id -----------------------------------------------------------
    def push_keyed(self, mark: StageMark, key: tuple, out: list[Result]) -> None:
        """``key``: the mark's (pipeline, stream, frame), made once for all its pairs."""
        is_start = mark.stage == self.stage_from
        mine, other = (self._starts, self._ends) if is_start else (self._ends, self._starts)
        if key in self._done or key in mine:
            out.append(self._unpaired(mark, "duplicate"))
            return
        partner = other.pop(key, None)
        if partner is None:
            mine[key] = mark
            return
        start, end = (mark, partner) if is_start else (partner, mark)
        if self._match(start, end, out):
            self._done[key] = end.ts_ns
        else:
            # An end before its start, or too late: the end is an orphan; the start may
            # still meet its real end.
            out.append(self._unpaired(end, "orphan"))
            self._starts[key] = start

    # -- pairing by order --------------------------------------------------------------
    def push_ordered(self, mark: StageMark, out: list[Result],
                     interval: float | None = None) -> None:
        st = self._ordered.setdefault((mark.pipeline, mark.stream), _OrderedStream())
        if mark.stage == self.stage_from:
            st.starts.append(mark)
            return
        while st.starts and mark.ts_ns - st.starts[0].ts_ns > self.window_ns:
            out.append(self._unpaired(st.starts.popleft(), "timeout"))
        candidates = [i for i, s in enumerate(st.starts) if s.ts_ns <= mark.ts_ns]
        if not candidates:
            out.append(self._unpaired(mark, "orphan"))
            return
        if st.ref_latency is None or st.misses >= self.MISSES_BEFORE_RESYNC:
            # (Re)start from the nearest preceding start, if it is within one frame
            # interval: further away, it is an earlier frame whose own end was lost.
            chosen = candidates[-1]
            if interval is None or mark.ts_ns - st.starts[chosen].ts_ns > interval:
                out.append(self._unpaired(mark, "orphan"))
                return
        else:
            ref = st.ref_latency
            chosen = min(candidates, key=lambda i: abs(mark.ts_ns - st.starts[i].ts_ns - ref))
            dev = abs(mark.ts_ns - st.starts[chosen].ts_ns - ref)
            if interval is None or dev > interval / 2:
                st.misses += 1
                out.append(self._unpaired(mark, "orphan"))
                return
        for _ in range(chosen):  # older starts lost their end
            out.append(self._unpaired(st.starts.popleft(), "timeout"))
        start = st.starts.popleft()
        lat = mark.ts_ns - start.ts_ns
        st.ref_latency = lat if st.ref_latency is None or st.misses else (
            st.ref_latency + 0.2 * (lat - st.ref_latency))
        st.misses = 0
        out.append(self._span(start, mark))

    # -- expiry ------------------------------------------------------------------------
    def expire(self, cutoff_ns: int, out: list[Result]) -> None:
        for table, reason in ((self._starts, "timeout"), (self._ends, "orphan")):
            old = [k for k, m in table.items() if m.ts_ns < cutoff_ns]
            for k in old:
                out.append(self._unpaired(table.pop(k), reason))
        # Frames are done in about the order of their ends, which is the dict's order: stop
        # at the first one still in the window instead of scanning the window's thousands.
        # One done out of order stays until those before it go (a duplicate is still told).
        stale = []
        for k, ts in self._done.items():
            if ts >= cutoff_ns:
                break
            stale.append(k)
        for k in stale:
            del self._done[k]
        for st in self._ordered.values():
            while st.starts and st.starts[0].ts_ns < cutoff_ns:
                out.append(self._unpaired(st.starts.popleft(), "timeout"))


class StagePairer:
    """Pairs marks for every configured pair; ``push`` as marks come, ``expire`` on a timer."""

    def __init__(self, pairs: list[tuple[str, str]], window_ns: int,
                 max_pending: int = 1 << 62) -> None:
        self.window_ns = window_ns
        self.max_pending = max_pending
        self.pairs = [PairState(a, b, window_ns) for a, b in pairs]
        self._by_stage: dict[str, list[PairState]] = {}
        for p in self.pairs:
            self._by_stage.setdefault(p.stage_from, []).append(p)
            self._by_stage.setdefault(p.stage_to, []).append(p)
        self._held: list[tuple[int, int, StageMark]] = []  # id-less marks, a time-ordered heap
        self._intervals: dict[tuple[str, str, str], _Interval] = {}
        self._seq = itertools.count()
        self._latest = 0

    def push(self, mark: StageMark) -> list[Result]:
        out: list[Result] = []
        states = self._by_stage.get(mark.stage)
        if not states:
            return out
        if mark.ts_ns > self._latest:
            self._latest = mark.ts_ns
        if mark.frame is not None:
            key = (mark.pipeline, mark.stream, mark.frame)  # one key for every pair
            for p in states:
                p.push_keyed(mark, key, out)
        else:
            self._intervals.setdefault((mark.pipeline, mark.stream, mark.stage),
                                       _Interval()).add(mark.ts_ns)
            heapq.heappush(self._held, (mark.ts_ns, next(self._seq), mark))
            self._release(self._latest - self.window_ns, out)
        return out

    def _release(self, upto_ns: int, out: list[Result]) -> None:
        while self._held and self._held[0][0] <= upto_ns:
            mark = heapq.heappop(self._held)[2]
            for p in self._by_stage[mark.stage]:
                iv = self._intervals.get((mark.pipeline, mark.stream, p.stage_from))
                p.push_ordered(mark, out, iv.median(mark.ts_ns) if iv else None)

    def expire(self, now_ns: int) -> list[Result]:
        """Report marks whose partner can no longer come (older than the window)."""
        out: list[Result] = []
        self._release(now_ns - self.window_ns, out)
        for p in self.pairs:
            p.expire(now_ns - self.window_ns, out)
        self._evict(out)
        return out

    @property
    def pending(self) -> int:
        """Marks waiting for a partner (held id-less ones included)."""
        return len(self._held) + sum(
            len(p._starts) + len(p._ends) + sum(len(st.starts) for st in p._ordered.values())
            for p in self.pairs)

    def _evict(self, out: list[Result]) -> None:
        """Past ``max_pending``, the oldest waiting marks go, unpaired (``evicted``); the
        state kept per stream for id-less pairing is bounded the same way."""
        over = self.pending - self.max_pending
        if over > 0:
            # Each table is in arrival order: the oldest ``over`` of each are candidates.
            found: list[tuple[int, int, Callable[[], StageMark], PairState]] = []
            seq = itertools.count()
            for p in self.pairs:
                for table in (p._starts, p._ends):
                    for key in itertools.islice(table, over):
                        found.append((table[key].ts_ns, next(seq),
                                      lambda t=table, k=key: t.pop(k), p))
                for st in p._ordered.values():
                    for mark in itertools.islice(st.starts, over):
                        found.append((mark.ts_ns, next(seq), st.starts.popleft, p))
            for ts, _, _ in heapq.nsmallest(over, self._held):
                found.append((ts, next(seq), lambda: heapq.heappop(self._held)[2], None))
            for _, _, take, p in heapq.nsmallest(over, found):
                mark = take()
                if p is None:  # held id-less: unpaired for the pairs its stage is in
                    p = self._by_stage[mark.stage][0]
                out.append(p._unpaired(mark, "evicted"))
        for p in self.pairs:
            _trim_oldest(p._done, self.max_pending)
            if len(p._ordered) > STREAM_STATES:
                for key in [k for k, st in p._ordered.items() if not st.starts]:
                    del p._ordered[key]
        _trim_oldest(self._intervals, STREAM_STATES)

    def flush(self) -> list[Result]:
        """End of input: pair what can be paired, report the rest."""
        out: list[Result] = []
        self._release(1 << 62, out)
        for p in self.pairs:
            p.expire(1 << 62, out)
        return out


def _trim_oldest(table: dict, keep: int) -> None:
    """Keep the newest ``keep`` entries of an insertion-ordered dict."""
    extra = len(table) - keep
    if extra > 0:
        for key in list(itertools.islice(table, extra)):
            del table[key]


@dataclass
class PairedArrays:
    """Vectorised pairing result for one pair: indices into the input mark arrays."""

    start_idx: np.ndarray
    end_idx: np.ndarray
    timeout_idx: np.ndarray
    orphan_idx: np.ndarray
    duplicate_idx: np.ndarray


def pair_keyed_arrays(key: np.ndarray, stage: np.ndarray, ts: np.ndarray, code_from: int,
                      code_to: int, window_ns: int) -> PairedArrays:
    """Pair marks by key (one int64 per (pipeline, stream, frame)) in bulk, for replay.

    Same rules as ``PairState.push_keyed`` over time-ordered input: the first mark of a
    stage for a key counts, later ones are duplicates; 0 <= latency <= window.
    """

    def firsts(code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.flatnonzero(stage == code)
        order = np.lexsort((ts[idx], key[idx]))
        idx = idx[order]
        k = key[idx]
        first = np.ones(len(idx), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        return idx[first], k[first], idx[~first]

    a_idx, a_key, a_dup = firsts(code_from)
    b_idx, b_key, b_dup = firsts(code_to)
    pos = np.searchsorted(a_key, b_key)
    pos_c = np.minimum(pos, max(len(a_key) - 1, 0))
    found = (pos < len(a_key)) & (a_key[pos_c] == b_key) if len(a_key) else np.zeros(
        len(b_key), dtype=bool)
    lat = ts[b_idx] - ts[a_idx[pos_c]] if len(a_key) else np.zeros(len(b_key), np.int64)
    ok = found & (lat >= 0) & (lat <= window_ns)
    matched_a = np.zeros(len(a_idx), dtype=bool)
    matched_a[pos_c[ok]] = True
    return PairedArrays(
        start_idx=a_idx[pos_c[ok]],
        end_idx=b_idx[ok],
        timeout_idx=a_idx[~matched_a],
        orphan_idx=b_idx[~ok],
        duplicate_idx=np.concatenate([a_dup, b_dup]),
    )
