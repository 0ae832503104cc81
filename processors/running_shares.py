"""Attribution over a stored session a stretch of time at a time, for a replay that reads
the session in rounds: the spans of each round are shared out up to the round's cut, and
a span running across the cut carries its share so far into the next stretch. What is
held is the spans still running at a cut, a few per stream, whatever the session's length.

The same sharing as ``attribution.attribute_intervals`` over the whole session: its
stretches partition the time, so every source's attributed J + idle J = its J over the
spans' time, to rounding. A span whose start lies before the stretch already shared out
(a mark read more than the rounds' margin out of order) gets no share (NaN: it keeps its
while-it-ran energy) and is counted, as the live agent's ``LiveAttribution`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attribution import StageShares, attribute_intervals
from .power_series import PowerSeries


@dataclass
class Shared:
    """The spans one ``add`` handed in, once every stretch they ran in is shared out:
    J per span and source (NaN: no share, its power unknown or it came late)."""

    token: object
    energy_j: np.ndarray


@dataclass
class _Running:
    """Spans whose stretches are not all shared out yet, as arrays."""

    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    grouped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    pair: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    batch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # add's number
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def keep(self, mask: np.ndarray) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name)[mask])

    def extend(self, other: _Running) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


class RunningShares:
    """``add`` each round's spans (all pairs'), then ``share_to(cut)``: no span that is
    still to come starts before ``cut``. ``finish`` shares out the rest. Both return the
    batches whose spans are all done, in the order they were added."""

    def __init__(self, series: dict[str, PowerSeries], pairs: list[tuple[str, str]],
                 shares: StageShares, max_gap_ns: int) -> None:
        self.series = series
        self.labels = list(series)
        self.max_gap_ns = max_gap_ns
        decided = [shares.decide(a, b) for a, b in pairs]
        picked = [shares.labels.index(lb) for lb in self.labels]
        self._takes = None if shares.plain else np.array([d[0][picked] for d in decided], bool)
        self._weights = None if shares.plain else np.array([d[1] for d in decided])
        self._running = _Running()
        self._batches: dict[int, tuple[object, np.ndarray, np.ndarray, int]] = {}
        self._next = 0
        self.done_to: int | None = None  # shared out up to here
        self.idle_j = np.zeros(len(self.labels))
        self.total_j = np.zeros(len(self.labels))
        self.attributed_j = np.zeros(len(self.labels))
        self.late = 0

    def add(self, token: object, start: np.ndarray, end: np.ndarray, group: np.ndarray,
            grouped: np.ndarray, pair: np.ndarray) -> None:
        """Spans of one round; ``pair``: each span's index in ``pairs``."""
        n, number = len(start), self._next
        self._next += 1
        energy = np.zeros((n, len(self.labels)))
        known = np.zeros((n, len(self.labels)), bool)
        late = start < self.done_to if self.done_to is not None else np.zeros(n, bool)
        self.late += int(late.sum())
        keep = ~late
        self._batches[number] = (token, energy, known, int(keep.sum()))
        self._running.extend(_Running(start[keep], end[keep], group[keep], grouped[keep],
                                      pair[keep].astype(np.int32),
                                      np.full(int(keep.sum()), number, np.int32),
                                      np.flatnonzero(keep)))

    def share_to(self, cut_ns: int) -> list[Shared]:
        r = self._running
        if self.done_to is None:
            if not len(r.start):
                return self._released()
            self.done_to = int(r.start.min())
        if cut_ns > self.done_to and self.labels:
            self._share(self.done_to, cut_ns)
        self.done_to = max(self.done_to, cut_ns)
        return self._released(r.end <= self.done_to)

    def finish(self) -> list[Shared]:
        r = self._running
        if len(r.start):
            last = int(r.end.max())
            if self.done_to is None:
                self.done_to = int(r.start.min())
            if last > self.done_to and self.labels:
                self._share(self.done_to, last)
        return self._released(np.ones(len(r.start), bool))

    def _share(self, t0: int, t1: int) -> None:
        r = self._running
        takes = weights = None
        if self._takes is not None:
            takes, weights = self._takes[r.pair], self._weights[r.pair]
        got, idle, total = attribute_intervals(self.series, r.start, r.end, r.group,
                                               r.grouped, t0, t1, self.max_gap_ns, takes,
                                               weights)
        self.idle_j += idle
        self.total_j += total
        have = ~np.isnan(got)
        for number in np.unique(r.batch).tolist():
            mine = r.batch == number
            _, energy, known, _ = self._batches[number]
            rows = r.row[mine]
            energy[rows] += np.where(have[mine], got[mine], 0.0)
            known[rows] |= have[mine]

    def _released(self, done: np.ndarray | None = None) -> list[Shared]:
        """Batches go once their spans and every earlier batch's are all shared out."""
        r = self._running
        if done is not None and done.any():
            finished = np.bincount(r.batch[done], minlength=self._next)
            r.keep(~done)
            for number in np.flatnonzero(finished).tolist():
                token, energy, known, waiting = self._batches[number]
                self._batches[number] = (token, energy, known,
                                         waiting - int(finished[number]))
        out = []
        for number in sorted(self._batches):
            token, energy, known, waiting = self._batches[number]
            if waiting > 0:
                break
            del self._batches[number]
            energy[~known] = np.nan
            self.attributed_j += np.nansum(energy, axis=0)
            out.append(Shared(token, energy))
        return out
