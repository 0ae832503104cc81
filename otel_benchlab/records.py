"""The records that cross rooms: receivers make them, processors and exporters read them.

All timestamps are host CLOCK_MONOTONIC nanoseconds (see ``timebase``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """Describes one sensor of a source, once, so exporters know how to name its values.

    ``metric`` is the OTel instrument name (``hw.power``, ``hw.temperature`` ...), or ""
    for a value that is recorded (raw Parquet, energy) but is no metric of its own: a sum
    of other sensors would count twice in ``sum(hw_energy_joules)``. A sensor
    with ``power_source`` set is also a power source for the energy processor under that
    label (``SYS``, ``CPU``, ``GPU`` ...). ``kind`` says how to integrate it: ``power`` in W
    or ``energy`` as a monotonic counter in J.
    """

    source: str
    name: str
    metric: str
    unit: str
    attributes: dict[str, str] = field(default_factory=dict)
    power_source: str | None = None
    kind: str = "gauge"  # "gauge", "power" (W, integrated) or "energy" (J counter)


@dataclass(frozen=True, slots=True)
class Sample:
    """Readings of one source taken at one moment: values by sensor name."""

    ts_ns: int
    source: str
    values: dict[str, float]
    rtt_ns: int = 0  # request/response round trip for polled devices; 0 when not polled
    uncertain: bool = False  # the round trip was long enough to make ts_ns doubtful


@dataclass(slots=True)
class StageMark:
    """"Frame 42 of stream cam0 reached stage `encoded`" at ts_ns.

    Made for every mark that comes in (tens of thousands a second at the ceiling), so it is
    a plain slotted class: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` and costs 7x as much (1.7 against 0.23 us, with the per-mark
    ``attrs`` dict it had). Nothing changes a mark once it is made."""

    ts_ns: int
    pipeline: str
    stream: str
    stage: str
    frame: int | None = None
    attrs: dict[str, Any] | None = None


class PowerFigure(NamedTuple):
    """Mean power and energy of one power source over a span; None where not known.
    ``energy_j`` is the source's energy while the span ran; ``energy_attr_j`` the span's
    share of it (the source's power at each instant shared among the spans running then:
    the shares of all spans plus idle add up to the meter's energy)."""

    mean_w: float | None
    energy_j: float | None
    energy_attr_j: float | None = None


class PowerRows:
    """One energy pass's figures as a matrix: row i is span i's mean W, energy J and
    attributed J for each label in turn (mean_0, energy_0, attr_0, mean_1, ...), NaN where
    not known.

    The spans of the pass point into it instead of holding a dict of figures each: at
    tens of thousands of spans a second, making 3 figures, 6 floats and a dict a span was
    7 % of the agent, and the trace writer reads the matrix's rows whole."""

    __slots__ = ("labels", "values")

    def __init__(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        self.labels = labels
        self.values = values

    def attach(self, spans: list[StageSpan]) -> None:
        """Span i's figures are row i (whatever figures it had before)."""
        for i, span in enumerate(spans):
            span._power, span._rows, span._row = None, self, i

    def figures(self, i: int) -> dict[str, PowerFigure]:
        row = self.values[i].tolist()
        return {label: PowerFigure(None if m != m else m, None if e != e else e,
                                   None if a != a else a)
                for label, m, e, a in zip(self.labels, row[0::3], row[1::3], row[2::3],
                                          strict=True)}


@dataclass(slots=True)
class StageSpan:
    """Two marks of one frame paired into an interval, later annotated with power."""

    pipeline: str
    stream: str
    frame: int | None
    stage_from: str
    stage_to: str
    start_ns: int
    end_ns: int
    trace_id: int = 0
    span_id: int = 0
    # True for a span that came with its application's own trace and span ids (OTLP
    # intake): it stays in that trace instead of the agent's per-frame trace.
    foreign: bool = False
    # A phase of an LLM request, or the request (``processors.genai.GenAIPhase``).
    genai: Any = field(default=None, repr=False, compare=False)
    # ``power``: a dict once anything asks for it or sets it; until then, after the energy
    # pass, row ``_row`` of its matrix ``_rows``.
    _power: dict[str, PowerFigure] | None = field(default=None, init=False, repr=False,
                                                  compare=False)
    _rows: PowerRows | None = field(default=None, init=False, repr=False, compare=False)
    _row: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def power(self) -> dict[str, PowerFigure]:
        """Mean power and energy per power source (label)."""
        figures = self._power
        if figures is None:
            figures = {} if self._rows is None else self._rows.figures(self._row)
            self._power, self._rows = figures, None
        return figures

    @power.setter
    def power(self, figures: dict[str, PowerFigure]) -> None:
        self._power, self._rows = figures, None

    @property
    def power_labels(self) -> tuple[str, ...]:
        """The power sources it has figures for, in order (without making the dict)."""
        return self._rows.labels if self._rows is not None else tuple(self.power)

    @property
    def latency_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def pair(self) -> str:
        return f"{self.stage_from}->{self.stage_to}"


class SpanBatch:
    """Finished spans with the columns that metrics, live lines and the aligned table read,
    each taken out of the spans once: at tens of thousands of spans a second, each reader
    taking its own (times, power figures, names) cost more than what it then did with them.
    Times and power figures come as arrays from the energy pass, which made them anyway;
    ``power[label]`` is (mean W, energy J) with NaN where not known (a figure is never NaN:
    ``annotate`` makes those None), ``attributed[label]`` the attributed J."""

    __slots__ = ("spans", "start_ns", "end_ns", "power", "attributed", "_names")

    def __init__(self, spans: list[StageSpan], start_ns: np.ndarray, end_ns: np.ndarray,
                 power: dict[str, tuple[np.ndarray, np.ndarray]],
                 attributed: dict[str, np.ndarray] | None = None) -> None:
        self.spans = spans
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.power = power
        self.attributed = attributed or {}
        self._names: tuple[np.ndarray, list[tuple[str, str, str, str]]] | None = None

    @classmethod
    def of(cls, spans: list[StageSpan]) -> SpanBatch:
        """The columns read from the spans themselves (where there was no energy pass:
        tests, a caller's own list)."""
        n = len(spans)
        start = np.fromiter((s.start_ns for s in spans), np.int64, n)
        end = np.fromiter((s.end_ns for s in spans), np.int64, n)
        power, attributed = {}, {}
        for label in dict.fromkeys(label for s in spans for label in s.power):
            figs = [s.power.get(label) for s in spans]
            power[label] = (
                np.array([np.nan if f is None or f.mean_w is None else f.mean_w for f in figs],
                         np.float64),
                np.array([np.nan if f is None or f.energy_j is None else f.energy_j
                          for f in figs], np.float64))
            attributed[label] = np.array([np.nan if f is None or f.energy_attr_j is None
                                          else f.energy_attr_j for f in figs], np.float64)
        return cls(spans, start, end, power, attributed)

    @classmethod
    def concat(cls, batches: list[SpanBatch]) -> SpanBatch:
        if len(batches) == 1:
            return batches[0]
        power = {}
        unknown = (None, None)
        for label in dict.fromkeys(label for b in batches for label in b.power):
            parts = [b.power.get(label, unknown) for b in batches]
            power[label] = tuple(
                np.concatenate([np.full(len(b), np.nan) if p[k] is None else p[k]
                                for p, b in zip(parts, batches, strict=True)])
                for k in (0, 1))
        attributed = {
            label: np.concatenate([b.attributed.get(label, np.full(len(b), np.nan))
                                   for b in batches])
            for label in dict.fromkeys(label for b in batches for label in b.attributed)}
        return cls([s for b in batches for s in b.spans],
                   np.concatenate([b.start_ns for b in batches]),
                   np.concatenate([b.end_ns for b in batches]), power, attributed)

    def __len__(self) -> int:
        return len(self.spans)

    def renamed(self, codes: np.ndarray, names: list[tuple[str, str, str, str]]) -> SpanBatch:
        """The same spans and columns, known by other names (each span's code into
        ``names``): how the in-memory figures see a batch whose names were folded."""
        out = SpanBatch(self.spans, self.start_ns, self.end_ns, self.power, self.attributed)
        out._names = (codes, names)
        return out

    def names(self) -> tuple[np.ndarray, list[tuple[str, str, str, str]]]:
        """Each span's code into a list of (pipeline, stream, stage_from, stage_to), in the
        order first seen."""
        if self._names is None:
            codes: dict[tuple[str, str, str, str], int] = {}
            put = codes.setdefault
            idx = np.fromiter((put((s.pipeline, s.stream, s.stage_from, s.stage_to),
                                   len(codes)) for s in self.spans), np.int32, len(self.spans))
            self._names = (idx, list(codes))
        return self._names

    def by_pair(self) -> list[tuple[tuple[str, str, str], np.ndarray]]:
        """(pipeline, stage_from, stage_to) and its spans' positions in batch order, pairs
        in the order first seen."""
        codes, names = self.names()
        pairs: dict[tuple[str, str, str], int] = {}
        of_name = np.array([pairs.setdefault((p, a, b), len(pairs)) for p, _, a, b in names],
                           np.int32)
        pair = of_name[codes]
        order = np.argsort(pair, kind="stable")
        bounds = np.searchsorted(pair[order], np.arange(len(pairs) + 1)).tolist()
        return [(key, order[bounds[i]:bounds[i + 1]]) for i, key in enumerate(pairs)]


@dataclass(frozen=True, slots=True)
class Unpaired:
    """A mark that found no partner, with why (``timeout``, ``orphan``, ``duplicate``)."""

    pipeline: str
    stage_from: str
    stage_to: str
    reason: str
    mark: StageMark
