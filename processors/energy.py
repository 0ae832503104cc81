"""Stage spans annotated with power as they are released: each power source's recent
samples (``PowerTimeline``), and the annotator that holds a span until the power over it is
known (and, with attribution, shared out), then gives it mean power and energy per source
(the integral itself is ``power_series``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from otel_benchlab.records import PowerRows, SpanBatch, StageSpan

from .pending_spans import PendingSpans
from .power_series import PowerSeries, energy_between

if TYPE_CHECKING:
    from .live_attribution import LiveAttribution


class PowerTimeline:
    """A live, bounded series for one power source, in numpy buffers: a span that arrives
    late (a sender's batching and retries) needs a minute or more of history, and the
    energy pass takes only the part of it that the batch's spans cover, so a longer history
    costs memory (16 bytes a sample) but no time."""

    def __init__(self, kind: str = "power") -> None:
        if kind not in ("power", "energy"):
            raise ValueError(f"power source kind must be 'power' or 'energy', not {kind!r}")
        self.kind = kind
        self._ts = np.empty(256, np.int64)
        self._v = np.empty(256, np.float64)
        self._lo = self._hi = 0  # the samples held are [lo, hi)

    def add(self, ts_ns: int, value: float) -> None:
        hi = self._hi
        if hi > self._lo and ts_ns <= self._ts[hi - 1]:
            return  # out of order or repeated: a series must grow in time
        if hi == len(self._ts):
            hi = self._make_room()
        self._ts[hi] = ts_ns
        self._v[hi] = value
        self._hi = hi + 1

    def _make_room(self) -> int:
        lo, hi = self._lo, self._hi
        n = hi - lo
        if 2 * n > len(self._ts):  # more than half full: a bigger buffer
            ts, v = np.empty(2 * len(self._ts), np.int64), np.empty(2 * len(self._ts))
        else:  # mostly trimmed: slide the held samples to the front
            ts, v = self._ts, self._v
        ts[:n], v[:n] = self._ts[lo:hi], self._v[lo:hi]
        self._ts, self._v, self._lo, self._hi = ts, v, 0, n
        return n

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def last_ts(self) -> int | None:
        return int(self._ts[self._hi - 1]) if self._hi > self._lo else None

    def trim(self, before_ns: int) -> None:
        # Keep one sample before the cut so spans starting right at it still interpolate.
        older = int(np.searchsorted(self._ts[self._lo:self._hi], before_ns, side="left"))
        self._lo += max(0, min(older - 1, self._hi - self._lo - 1))

    def series(self, start_ns: int | None = None, end_ns: int | None = None) -> PowerSeries:
        """The held samples, or those that interpolate [start_ns, end_ns] (one sample
        either side of it)."""
        ts, v = self._ts[self._lo:self._hi], self._v[self._lo:self._hi]
        if start_ns is not None and end_ns is not None and len(ts):
            i0 = max(int(np.searchsorted(ts, start_ns, side="right")) - 1, 0)
            i1 = int(np.searchsorted(ts, end_ns, side="left")) + 1
            ts, v = ts[i0:i1], v[i0:i1]
        ts, v = ts.copy(), v.copy()  # the buffers change as samples come
        return PowerSeries.from_power(ts, v) if self.kind == "power" else \
            PowerSeries.from_counter(ts, v)


class EnergyAnnotator:
    """Holds finished StageSpans until every power source has a sample past their end,
    then annotates them with mean power and energy per source. Power history is kept for
    ``keep_ns`` (the pairing window, the late-arrival horizon and the gap), so a span that
    arrives that late still gets its energy."""

    def __init__(self, sources: dict[str, str], max_gap_ns: int, keep_ns: int,
                 attribution: LiveAttribution | None = None) -> None:
        self.timelines = {label: PowerTimeline(kind) for label, kind in sources.items()}
        self.max_gap_ns = max_gap_ns
        self.keep_ns = keep_ns
        # Spans whose share attribution carries, or that came late, keep their identity.
        self._pending = PendingSpans(attribution.holds if attribution is not None
                                     else lambda s: False)
        self.cut = False  # the last release left ready spans for the next
        # Spans are held until their interval's energy has been shared out (a watermark
        # ``delay_ns`` behind now); without it, released as soon as their power is known.
        self.attribution = attribution

    def add_power(self, label: str, ts_ns: int, value: float) -> None:
        tl = self.timelines.get(label)
        if tl is not None:
            tl.add(ts_ns, value)

    def add_span(self, span: StageSpan) -> None:
        self._pending.add(span)
        if self.attribution is not None:
            self.attribution.admit(span)

    def release(self, now_ns: int, flush: bool = False,
                max_spans: int | None = None) -> SpanBatch:
        """The spans whose power is known (and shared out), at most ``max_spans`` of them,
        the earliest ends first: ``cut`` says whether more are ready (a burst is then
        released a slice at a time, so what each slice costs stays bounded)."""
        # A span is ready once every source has a sample past its end, or once it has
        # waited max_gap (what is missing then stays missing): one bound for the batch.
        self.cut = False
        last = [tl.last_ts for tl in self.timelines.values()]
        covered = -1 if None in last else min(last, default=1 << 62)
        ready_to = max(covered, now_ns - self.max_gap_ns - 1)
        shares = self.attribution
        waiting = len(self._pending)
        over = max_spans is not None and waiting > max_spans
        # Every waiting span's end, read once where it is needed (a flush, a burst).
        ends = self._pending.ends() if waiting and (flush or over) else None
        if shares is not None:  # and once the energy up to their end is shared out
            ready_to = min(ready_to, now_ns - shares.delay_ns)
            if flush and ends is not None:
                ready_to = int(ends.max())
        if over and ends is not None:
            ready = ends if flush else ends[ends <= ready_to]
            if len(ready) > max_spans:
                ready_to = int(np.partition(ready, max_spans - 1)[max_spans - 1])
                flush, self.cut = False, True
        out = self._pending.take(ready_to, everything=flush)
        lo = min((s.start_ns for s in out), default=0)
        hi = max((s.end_ns for s in out), default=0)
        attributed = None
        if shares is not None:  # one series per source for both passes
            lo, hi = min(lo, shares.done_to) if out else shares.done_to, max(hi, ready_to)
        series = {k: tl.series(lo, hi) for k, tl in self.timelines.items()}
        if shares is not None:
            attributed = shares.share(out, self._pending.running(ready_to), ready_to,
                                      series)
        done = annotate(out, series, self.max_gap_ns, attributed)
        self._pending.pack()
        oldest = self._pending.oldest_start(now_ns)
        for tl in self.timelines.values():
            tl.trim(min(oldest, now_ns - self.keep_ns))
        return done

    @property
    def pending(self) -> int:
        return len(self._pending)


def annotate(spans: list[StageSpan], series: dict[str, PowerSeries], max_gap_ns: int,
             attributed: np.ndarray | None = None) -> SpanBatch:
    """Every span's mean power and energy for every source, in one vector pass per source,
    with its attributed energy (``attributed``: spans x sources, NaN where not known): the
    spans with the columns made on the way. Each span points at its row of the pass's
    matrix (``PowerRows``) and makes its ``power`` dict only if something asks for it."""
    n = len(spans)
    starts = np.fromiter((s.start_ns for s in spans), dtype=np.int64, count=n)
    ends = np.fromiter((s.end_ns for s in spans), dtype=np.int64, count=n)
    matrix = np.empty((n, 3 * len(series)))
    for j, s in enumerate(series.values()):
        if n:
            matrix[:, 3 * j + 1], matrix[:, 3 * j] = energy_between(s, starts, ends,
                                                                    max_gap_ns)
        matrix[:, 3 * j + 2] = np.nan if attributed is None else attributed[:, j]
    PowerRows(tuple(series), matrix).attach(spans)
    # The batch's columns are the matrix's (views, not copies).
    power = {label: (matrix[:, 3 * j], matrix[:, 3 * j + 1])
             for j, label in enumerate(series)}
    shares = {label: matrix[:, 3 * j + 2] for j, label in enumerate(series)}
    return SpanBatch(spans, starts, ends, power, shares)
