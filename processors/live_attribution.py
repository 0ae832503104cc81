"""Attribution as spans come (the agent's live path): intervals are shared out once no span
that can still arrive overlaps them, with the sweep of ``attribution``; and a source's
energy over a session as the summary splits it."""

from __future__ import annotations

import numpy as np

from otel_benchlab.records import StageSpan

from .attribution import StageShares, attribute_spans
from .genai import GenAIConfig, RequestSpans
from .power_series import PowerSeries


def energy_split(total_j: float, attributed_j: float, idle_j: float) -> dict[str, float]:
    """A source's energy over a session as the summary gives it: ``total`` (where the
    power is known) = ``attributed`` (the spans' figures, summed) + ``idle`` (no span
    running), to rounding."""
    return {"total": float(total_j), "attributed": float(attributed_j), "idle": float(idle_j)}


class LiveAttribution:
    """Attribution as spans come: an interval is shared out once no span that can still
    arrive overlaps it, ``delay_ns`` behind now. A span running across an interval's end
    carries its share so far into the next; a span that arrives after its start was shared
    out gets none (NaN: it keeps its while-it-ran energy) and is counted in
    ``unattributed``. Per-span bookkeeping is only for those two kinds, a few at a time."""

    def __init__(self, labels: list[str], max_gap_ns: int, delay_ns: int, start_ns: int,
                 shares: StageShares | None = None, genai: GenAIConfig | None = None) -> None:
        self.labels = labels
        self.max_gap_ns = max_gap_ns
        self.delay_ns = delay_ns
        self.start_ns = start_ns
        self.done_to = start_ns  # shared out up to here
        self.shares = shares or StageShares(labels)
        # LLM requests: each gets the sum of its phases' shares
        self.requests = RequestSpans(genai) if genai is not None else None
        self._carry: dict[int, np.ndarray] = {}  # id(span) -> J per source so far
        self._late: set[int] = set()
        self.idle_j = np.zeros(len(labels))
        self.total_j = np.zeros(len(labels))
        self.assigned_j = np.zeros(len(labels))  # in the figures of the spans released
        self.unattributed = 0

    def admit(self, span: StageSpan) -> None:
        if span.start_ns < self.done_to:
            self._late.add(id(span))
            self.unattributed += 1

    def holds(self, span: StageSpan) -> bool:
        """Whether it keeps something of this span's by its identity (a late span, a
        running span's share so far)."""
        return id(span) in self._late or id(span) in self._carry

    def share(self, done: list[StageSpan], running: list[StageSpan], to_ns: int,
              series: dict[str, PowerSeries]) -> np.ndarray:
        """Share [done_to, to_ns] out among ``done`` (spans that end by ``to_ns``, released
        now) and ``running`` (spans that began before ``to_ns`` and end after it); returns
        the done spans' attributed J (spans x sources)."""
        t0, n_done = self.done_to, len(done)
        spans = done + running
        n = len(spans)
        starts = np.fromiter((s.start_ns for s in spans), np.int64, n)
        ends = np.fromiter((s.end_ns for s in spans), np.int64, n)
        early = np.flatnonzero(starts < t0).tolist()  # carried over, or late
        late = [i for i in early if id(spans[i]) in self._late]
        take = np.ones(n, bool)
        take[late] = False
        got = np.full((n, len(self.labels)), np.nan)
        if to_ns > t0:  # with no span running too: then it is all idle
            mine = np.flatnonzero(take)
            got[mine], idle, total = attribute_spans(
                [spans[i] for i in mine], starts[mine], ends[mine], series, t0, to_ns,
                self.max_gap_ns, self.shares)
            self.idle_j += idle
            self.total_j += total
            self.done_to = to_ns
        carried = [(i, before) for i in early
                   if (before := self._carry.pop(id(spans[i]), None)) is not None]
        if carried:  # NaN until a stretch of it had known power; all at once
            rows = np.array([i for i, _ in carried])
            before = np.array([b for _, b in carried])
            now = got[rows]
            got[rows] = np.where(np.isnan(before), now, before + np.nan_to_num(now))
        for i in range(n_done, n):
            self._carry[id(spans[i])] = got[i]
        self._late.difference_update(id(spans[i]) for i in late)
        counted = got[:n_done]
        if self.requests is not None and self.requests.settle(done, got, self.labels):
            # A request's figure is its phases' sum: counted once, in the phases.
            counted = counted[[s.genai is None or s.genai.phase != "request" for s in done]]
        self.assigned_j += np.nansum(counted, axis=0)
        return got[:n_done]
