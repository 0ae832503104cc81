"""Power and energy over an interval.

A power source is a series of (ts, value) samples, either power in W or a monotonic
energy counter in J. Both are kept as a cumulative energy E(t) at the sample times, so
energy over [start, end] is E(end) - E(start):
- power: E grows by the trapezoid between samples, and E(t) inside a sample interval
  integrates the linearly interpolated power up to t (a 10 ms span between two 100 ms
  samples gets an honest value);
- energy counter: E(t) is the counter interpolated linearly (resets are stitched).
Where two samples around or inside the span are further apart than ``max_gap_ns``, or the
span is outside the samples, the result is NaN: missing, not invented.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from otel_benchlab.records import PowerRows, SpanBatch, StageSpan

if TYPE_CHECKING:
    from .attribution import LiveAttribution


@dataclass
class PowerSeries:
    """Arrays of one power source: times (int64 ns), cumulative J, power W (power kind)."""

    ts: np.ndarray
    cum: np.ndarray
    power: np.ndarray | None  # None for energy counters

    @classmethod
    def from_power(cls, ts: np.ndarray, watts: np.ndarray) -> PowerSeries:
        ts = np.asarray(ts, dtype=np.int64)
        watts = np.asarray(watts, dtype=np.float64)
        steps = np.diff(ts) * 1e-9 * (watts[1:] + watts[:-1]) * 0.5
        cum = np.concatenate([[0.0], np.cumsum(steps)]) if len(ts) else np.zeros(0)
        return cls(ts, cum, watts)

    @classmethod
    def from_counter(cls, ts: np.ndarray, joules: np.ndarray) -> PowerSeries:
        ts = np.asarray(ts, dtype=np.int64)
        j = np.asarray(joules, dtype=np.float64)
        if len(j) > 1:  # stitch counter resets (driver reload, wrap) into one monotonic line
            drops = np.diff(j) < 0
            offset = np.concatenate([[0.0], np.cumsum(np.where(drops, j[:-1], 0.0))])
            j = j + offset
        return cls(ts, j - (j[0] if len(j) else 0.0), None)


def _cum_at(s: PowerSeries, t: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """E(t) and the index i of the sample interval [ts[i], ts[i+1]] holding each t."""
    n = len(s.ts)
    if n == 0:
        return np.full(len(t), np.nan), np.zeros(len(t), dtype=np.int64)
    i = np.searchsorted(s.ts, t, side="right") - 1
    inside = (i >= 0) & (t <= s.ts[-1])
    i = np.clip(i, 0, n - 1)
    j = np.minimum(i + 1, n - 1)
    h = (s.ts[j] - s.ts[i]).astype(np.float64)
    dt = (t - s.ts[i]).astype(np.float64)
    frac = np.divide(dt, h, out=np.zeros_like(dt), where=h > 0)
    if s.power is None:
        e = s.cum[i] + (s.cum[j] - s.cum[i]) * frac
    else:
        p_t = s.power[i] + (s.power[j] - s.power[i]) * frac
        e = s.cum[i] + dt * 1e-9 * (s.power[i] + p_t) * 0.5
    ok = inside & ((h <= max_gap_ns) | (dt == 0))
    return np.where(ok, e, np.nan), i


def energy_between(s: PowerSeries, start_ns: np.ndarray, end_ns: np.ndarray,
                   max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy (J) and mean power (W) of one source over each [start, end]; NaN if unknown."""
    start_ns = np.asarray(start_ns, dtype=np.int64)
    end_ns = np.asarray(end_ns, dtype=np.int64)
    e0, i0 = _cum_at(s, start_ns, max_gap_ns)
    e1, i1 = _cum_at(s, end_ns, max_gap_ns)
    energy = e1 - e0
    if len(s.ts) > 1:  # any gap inside the span makes it unknown too
        bad = np.concatenate([[0], np.cumsum(np.diff(s.ts) > max_gap_ns)])
        energy = np.where(bad[i1] - bad[i0] > 0, np.nan, energy)
    dur = (end_ns - start_ns) * 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(dur > 0, energy / np.where(dur > 0, dur, 1.0), np.nan)
    if s.power is not None:  # a zero-length span still has a power: the one at that instant
        zero = (dur == 0) & ~np.isnan(energy)
        if zero.any():
            p, _ = power_at(s, start_ns[zero], max_gap_ns)
            mean[zero] = p
    return energy, mean


def power_at(s: PowerSeries, t: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolated power at each t (NaN where unknown) and the interval index."""
    if s.power is None or len(s.ts) == 0:
        return np.full(len(t), np.nan), np.zeros(len(t), dtype=np.int64)
    e, i = _cum_at(s, t, max_gap_ns)
    n = len(s.ts)
    j = np.minimum(i + 1, n - 1)
    h = (s.ts[j] - s.ts[i]).astype(np.float64)
    frac = np.divide((t - s.ts[i]).astype(np.float64), h, out=np.zeros(len(t)), where=h > 0)
    p = s.power[i] + (s.power[j] - s.power[i]) * frac
    return np.where(np.isnan(e), np.nan, p), i


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
        self._pending: deque[StageSpan] = deque()
        # Spans are held until their interval's energy has been shared out (a watermark
        # ``delay_ns`` behind now); without it, released as soon as their power is known.
        self.attribution = attribution

    def add_power(self, label: str, ts_ns: int, value: float) -> None:
        tl = self.timelines.get(label)
        if tl is not None:
            tl.add(ts_ns, value)

    def add_span(self, span: StageSpan) -> None:
        self._pending.append(span)
        if self.attribution is not None:
            self.attribution.admit(span)

    def release(self, now_ns: int, flush: bool = False) -> SpanBatch:
        # A span is ready once every source has a sample past its end, or once it has
        # waited max_gap (what is missing then stays missing): one bound for the batch.
        last = [tl.last_ts for tl in self.timelines.values()]
        covered = -1 if None in last else min(last, default=1 << 62)
        ready_to = max(covered, now_ns - self.max_gap_ns - 1)
        shares = self.attribution
        if shares is not None:  # and once the energy up to their end is shared out
            ready_to = min(ready_to, now_ns - shares.delay_ns)
            if flush:
                ready_to = max((s.end_ns for s in self._pending), default=ready_to)
        out: list[StageSpan] = []
        keep: deque[StageSpan] = deque()
        for span in self._pending:
            (out if flush or span.end_ns <= ready_to else keep).append(span)
        self._pending = keep
        lo = min((s.start_ns for s in out), default=0)
        hi = max((s.end_ns for s in out), default=0)
        attributed = None
        if shares is not None:  # one series per source for both passes
            lo, hi = min(lo, shares.done_to) if out else shares.done_to, max(hi, ready_to)
        series = {k: tl.series(lo, hi) for k, tl in self.timelines.items()}
        if shares is not None:
            running = [s for s in keep if s.start_ns < ready_to]
            attributed = shares.share(out, running, ready_to, series)
        done = annotate(out, series, self.max_gap_ns, attributed)
        oldest = min((s.start_ns for s in self._pending), default=now_ns)
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
