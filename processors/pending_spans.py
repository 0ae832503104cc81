"""Spans waiting for their energy, in bounded memory at a flood.

A span waits seconds for its energy to be shared out (``attribution_delay_s``), so a
burst of 100,000 spans waits together. As Python objects with their numbers a span cost
~400 B; packed into columns it costs ~90 B (the names are shared strings). Few spans are
kept as they are (no packing cost at the usual load); past ``pack_from`` waiting, those
that need not keep their identity are packed, and made into spans again when released,
in the order they came.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from otel_benchlab.records import StageSpan

PACK_FROM = 16_384  # spans waiting before the packing starts
PACK_MIN = 1_024  # spans a pack holds at least (a pack's arrays cost ~1 KB)
_MASK64 = (1 << 64) - 1
_NUMBERS = ("seq", "start", "end", "frame", "no_frame", "trace_hi", "trace_lo", "span_id",
            "foreign")  # a pack's arrays
_NAMES = ("pipeline", "stream", "stage_from", "stage_to")  # its lists of strings


class SpanPack:
    """Spans as columns: numbers in arrays, names as the spans' own strings."""

    __slots__ = _NUMBERS + _NAMES

    def __init__(self, spans: list[StageSpan], seq: np.ndarray) -> None:
        n = len(spans)
        self.seq = seq
        self.start = np.fromiter((s.start_ns for s in spans), np.int64, n)
        self.end = np.fromiter((s.end_ns for s in spans), np.int64, n)
        self.no_frame = np.fromiter((s.frame is None for s in spans), bool, n)
        self.frame = np.fromiter((s.frame or 0 for s in spans), np.int64, n)
        self.trace_hi = np.fromiter((s.trace_id >> 64 for s in spans), np.uint64, n)
        self.trace_lo = np.fromiter((s.trace_id & _MASK64 for s in spans), np.uint64, n)
        self.span_id = np.fromiter((s.span_id for s in spans), np.uint64, n)
        self.foreign = np.fromiter((s.foreign for s in spans), bool, n)
        # Lists of the spans' own strings (shared by most spans), not a tuple a span.
        self.pipeline = [s.pipeline for s in spans]
        self.stream = [s.stream for s in spans]
        self.stage_from = [s.stage_from for s in spans]
        self.stage_to = [s.stage_to for s in spans]

    @staticmethod
    def fits(span: StageSpan) -> bool:
        """Whether it can be packed: an LLM phase (its request's state) cannot, nor a
        frame id or an id past the columns' 64 bits."""
        f = span.frame
        return span.genai is None and (f is None or -(1 << 63) <= f < (1 << 63)) and \
            0 <= span.span_id <= _MASK64 and 0 <= span.trace_id < (1 << 128)

    def __len__(self) -> int:
        return len(self.seq)

    def spans(self, rows: np.ndarray) -> list[StageSpan]:
        """The spans of ``rows`` (indices), made again."""
        frames: list = self.frame[rows].tolist()
        for i in np.flatnonzero(self.no_frame[rows]).tolist():
            frames[i] = None
        at = rows.tolist()
        return [StageSpan(p, st, f, a, b, s, e, (hi << 64) | lo, sid, fo)
                for p, st, a, b, f, s, e, hi, lo, sid, fo in zip(
                    [self.pipeline[r] for r in at], [self.stream[r] for r in at],
                    [self.stage_from[r] for r in at], [self.stage_to[r] for r in at],
                    frames, self.start[rows].tolist(), self.end[rows].tolist(),
                    self.trace_hi[rows].tolist(), self.trace_lo[rows].tolist(),
                    self.span_id[rows].tolist(), self.foreign[rows].tolist(), strict=True)]

    def without(self, gone: np.ndarray) -> SpanPack | None:
        """The pack less the rows ``gone`` (a mask); None when none is left."""
        keep = np.flatnonzero(~gone)
        if not len(keep):
            return None
        if len(keep) == len(self):
            return self
        rest = object.__new__(SpanPack)
        for name in _NUMBERS:
            setattr(rest, name, getattr(self, name)[keep])
        at = keep.tolist()
        for name in _NAMES:
            column = getattr(self, name)
            setattr(rest, name, [column[i] for i in at])
        return rest


class PendingSpans:
    """The waiting spans: ``spans`` as they came (and those that must keep their
    identity: ``pinned``), ``packs`` of columns; each with its arrival number."""

    def __init__(self, pinned: Callable[[StageSpan], bool] = lambda s: False,
                 pack_from: int = PACK_FROM, pack_min: int = PACK_MIN) -> None:
        self.pinned = pinned  # spans whose identity something holds on to
        self.pack_from = pack_from
        self.pack_min = pack_min
        self.spans: list[StageSpan] = []
        self.seqs: list[int] = []
        self.packs: list[SpanPack] = []
        self.packed_total = 0
        self._next = 0

    def add(self, span: StageSpan) -> None:
        self.spans.append(span)
        self.seqs.append(self._next)
        self._next += 1

    def __len__(self) -> int:
        return len(self.spans) + sum(len(p) for p in self.packs)

    def ends(self) -> np.ndarray:
        return np.concatenate([np.fromiter((s.end_ns for s in self.spans), np.int64,
                                           len(self.spans))] + [p.end for p in self.packs])

    def oldest_start(self, default: int) -> int:
        return min([min((s.start_ns for s in self.spans), default=default)]
                   + [int(p.start.min()) for p in self.packs])

    def take(self, ready_to: int, everything: bool = False) -> list[StageSpan]:
        """The spans that end by ``ready_to`` (all with ``everything``), in the order
        they came; the rest stay."""
        out, seqs = self._split(lambda s: everything or s.end_ns <= ready_to)
        unpacked, unpacked_seqs = self._unpack(
            lambda p: np.ones(len(p), bool) if everything else p.end <= ready_to)
        out += unpacked
        order = np.asarray(seqs + unpacked_seqs, np.int64)
        if len(order) > 1 and (order[1:] < order[:-1]).any():  # unpacked ones among them
            out = [out[i] for i in np.argsort(order, kind="stable").tolist()]
        return out

    def running(self, at_ns: int) -> list[StageSpan]:
        """The waiting spans that start before ``at_ns``, as spans that stay themselves
        (packed ones are unpacked: attribution carries their share by identity)."""
        unpacked, unpacked_seqs = self._unpack(lambda p: p.start < at_ns)
        self.spans += unpacked
        self.seqs += unpacked_seqs
        return [s for s in self.spans if s.start_ns < at_ns]

    def _split(self, chosen: Callable[[StageSpan], bool]) -> tuple[list[StageSpan], list[int]]:
        """The unpacked spans ``chosen`` picks and their arrival numbers, taken out."""
        out, seqs, keep, keep_seqs = [], [], [], []
        for s, q in zip(self.spans, self.seqs, strict=True):
            if chosen(s):
                out.append(s)
                seqs.append(q)
            else:
                keep.append(s)
                keep_seqs.append(q)
        self.spans, self.seqs = keep, keep_seqs
        return out, seqs

    def _unpack(self, rows_of: Callable[[SpanPack], np.ndarray]
                ) -> tuple[list[StageSpan], list[int]]:
        """The packed spans ``rows_of`` picks (a mask a pack), made again, and their
        arrival numbers, taken out of their packs."""
        out: list[StageSpan] = []
        seqs: list[int] = []
        packs = []
        for p in self.packs:
            chosen = rows_of(p)
            rows = np.flatnonzero(chosen)
            if len(rows):
                out += p.spans(rows)
                seqs += p.seq[rows].tolist()
            rest = p.without(chosen)
            if rest is not None:
                packs.append(rest)
        self.packs = packs
        return out, seqs

    def pack(self) -> None:
        """Past ``pack_from`` waiting, the spans that may be packed are."""
        if len(self.spans) < self.pack_min or len(self) < self.pack_from:
            return
        loose, loose_seqs = self._split(lambda s: SpanPack.fits(s) and not self.pinned(s))
        if loose:
            self.packs.append(SpanPack(loose, np.asarray(loose_seqs, np.int64)))
            self.packed_total += len(loose)
