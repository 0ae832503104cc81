"""Frames for traces: which spans make one frame's trace, and whether it is exported.

A frame (pipeline, stream, frame id) is complete when every configured pair has reported a
span for it and it holds no other span (a source that measures stages itself, GStreamer's
tracer, may report stages nobody configured), or when it has been quiet for ``linger_ns``.
Its trace runs from its first to its last mark. Sampling is by trace id ratio
(OpenTelemetry's TraceIdRatioBased rule, so the same frame is sampled the same way
everywhere), and a frame over a pair's latency target is always kept. Sampling concerns
traces only; metrics and files see every frame.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from otel_benchlab.records import StageMark, StageSpan

from .ids import (
    group_hash,
    hash64,
    span_id,
    span_ids_by_hash_np,
    span_ids_of,
    trace_id,
    trace_ids_np,
)

CACHED_NAMES = 65_536  # (pipeline, stream) and pair hashes kept for the next span


@dataclass
class FrameTrace:
    pipeline: str
    stream: str
    frame: int | None
    trace_id: int
    root_span_id: int
    first_ns: int
    last_ns: int
    spans: list[StageSpan] = field(default_factory=list)
    over_target: bool = False


class TraceIds:
    """Assigns deterministic trace/span ids to spans (see ``ids``)."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._groups: dict[tuple[str, str], int] = {}
        self._pair_hashes: dict[tuple[str, str], int] = {}

    def trace_for(self, pipeline: str, stream: str, frame_key: int) -> int:
        return trace_id(self._group(pipeline, stream), frame_key)

    def assign(self, span: StageSpan) -> None:
        key = span.frame if span.frame is not None else span.start_ns
        span.trace_id = self.trace_for(span.pipeline, span.stream, key)
        span.span_id = span_id(span.trace_id, span.pair)

    def assign_many(self, spans: list[StageSpan]) -> None:
        """``assign`` for a batch, with the ids' numpy forms (the same values): at tens of
        thousands of spans a second the scalar hashing was ~3 us a span."""
        n = len(spans)
        if not n:
            return
        try:
            groups = np.fromiter((self._group(s.pipeline, s.stream) for s in spans),
                                 np.uint64, n)
            keys = np.fromiter((s.frame if s.frame is not None else s.start_ns
                                for s in spans), np.int64, n)
        except OverflowError:  # a frame id beyond 64 bits: the scalar form takes any int
            for s in spans:
                self.assign(s)
            return
        names = self._pair_hashes
        pair_hash = np.fromiter(
            (names.get((s.stage_from, s.stage_to)) or self._pair_hash(s) for s in spans),
            np.uint64, n)
        hi, lo = trace_ids_np(groups, keys)
        ids = span_ids_by_hash_np(lo, pair_hash)
        for s, h, lo_, sid in zip(spans, hi.tolist(), lo.tolist(), ids.tolist(), strict=True):
            s.trace_id = (h << 64) | lo_
            s.span_id = sid

    def _group(self, pipeline: str, stream: str) -> int:
        g = self._groups.get((pipeline, stream))
        if g is None:
            if len(self._groups) >= CACHED_NAMES:  # a cache: names from outside are many
                self._groups.clear()
            g = self._groups[(pipeline, stream)] = group_hash(self.session, pipeline, stream)
        return g

    def _pair_hash(self, span: StageSpan) -> int:
        if len(self._pair_hashes) >= CACHED_NAMES:
            self._pair_hashes.clear()
        h = self._pair_hashes[(span.stage_from, span.stage_to)] = hash64(span.pair)
        return h


class FrameAssembler:
    def __init__(self, ids: TraceIds, pairs: list[tuple[str, str]], linger_ns: int,
                 sample_ratio: float, latency_targets_ns: dict[str, int],
                 max_frames: int = 1 << 62) -> None:
        self.ids = ids
        self.max_frames = max_frames  # frames open at most; past it the oldest end early
        self._pair_keys = {(a, b) for a, b in pairs}
        self.linger_ns = linger_ns
        self.targets = latency_targets_ns
        self._sampler = TraceIdRatioBased(sample_ratio)
        self._bound = self._sampler.bound
        self._frames: dict[tuple, FrameTrace] = {}
        self._touched: dict[tuple, int] = {}
        self.sampled = 0
        self.kept_over_target = 0
        self.unsampled = 0

    def _frame(self, key: tuple, ts: int) -> FrameTrace:
        # Its ids come with its first span (the same hash of pipeline, stream and frame,
        # made for a whole batch of spans at once): a frame whose marks never pair is
        # dropped unexported, and hashing every frame here was ~3.5 us of CPU each.
        ft = self._frames[key] = FrameTrace(key[0], key[1], key[2], 0, 0, ts, ts)
        return ft

    def add_mark(self, mark: StageMark) -> None:
        # Once per mark: one key, and one lookup for a frame already open (the usual case).
        if mark.frame is None:
            return  # id-less marks: each span is its own trace (see add_span)
        key = (mark.pipeline, mark.stream, mark.frame)
        ts = mark.ts_ns
        ft = self._frames.get(key)
        if ft is None:
            self._frame(key, ts)
        elif ts < ft.first_ns:
            ft.first_ns = ts
        elif ts > ft.last_ns:
            ft.last_ns = ts
        self._touched[key] = ts

    def add_span(self, span: StageSpan) -> list[FrameTrace]:
        return self.add_spans([span])

    def add_spans(self, spans: list[StageSpan]) -> list[FrameTrace]:
        """The frames these spans complete that are exported (sampled or over target)."""
        done: list[FrameTrace] = []
        frames, touched, pair_keys = self._frames, self._touched, self._pair_keys
        for span in spans:
            if span.frame is None:
                done.append(FrameTrace(span.pipeline, span.stream, None, span.trace_id, 0,
                                       span.start_ns, span.end_ns, [span]))
                continue
            key = (span.pipeline, span.stream, span.frame)
            ft = frames.get(key)
            if ft is None:
                ft = self._frame(key, span.start_ns)
            if not ft.trace_id:
                ft.trace_id = span.trace_id or self.ids.trace_for(*key)
            ft.spans.append(span)
            if span.start_ns < ft.first_ns:
                ft.first_ns = span.start_ns
            if span.end_ns > ft.last_ns:
                ft.last_ns = span.end_ns
            last = touched.get(key, 0)
            touched[key] = span.end_ns if span.end_ns > last else last
            # Pairs as (from, to) tuples: a span's ``pair`` text is made per call.
            if pair_keys and len(ft.spans) >= len(pair_keys) and \
                    {(x.stage_from, x.stage_to) for x in ft.spans} == pair_keys:
                del frames[key]
                touched.pop(key, None)
                done.append(ft)
        return self._decide(done)

    def expire(self, now_ns: int, flush: bool = False) -> list[FrameTrace]:
        """Frames quiet for the linger time, and the oldest past ``max_frames``."""
        done = [k for k, ts in self._touched.items() if flush or now_ns - ts > self.linger_ns]
        extra = len(self._touched) - len(done) - self.max_frames
        if extra > 0:  # in the order they opened
            quiet = set(done)
            done += itertools.islice((k for k in self._touched if k not in quiet), extra)
        out = []
        for k in done:
            del self._touched[k]
            ft = self._frames.pop(k, None)
            if ft is not None and ft.spans:
                out.append(ft)
        return self._decide(out)

    def _decide(self, frames: list[FrameTrace]) -> list[FrameTrace]:
        """The frames to export, each with its root span's id."""
        kept: list[FrameTrace] = []
        targets = self.targets
        for ft in frames:
            over = bool(targets) and any(s.latency_ns > targets.get(s.pair, 1 << 62)
                                         for s in ft.spans)
            ft.over_target = over
            if (ft.trace_id & TraceIdRatioBased.TRACE_ID_LIMIT) < self._bound:
                self.sampled += 1
                kept.append(ft)
            elif over:
                self.kept_over_target += 1
                kept.append(ft)
            else:
                self.unsampled += 1
        if len(kept) > 8:  # the numpy form pays from a few frames on
            roots = span_ids_of([ft.trace_id for ft in kept], "frame")
            for ft, root in zip(kept, roots, strict=True):
                ft.root_span_id = root
        else:
            for ft in kept:
                ft.root_span_id = span_id(ft.trace_id, "frame")
        return kept
