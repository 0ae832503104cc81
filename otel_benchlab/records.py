"""The records that cross rooms: receivers make them, processors and exporters read them.

All timestamps are host CLOCK_MONOTONIC nanoseconds (see ``timebase``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(slots=True)
class PowerFigure:
    """Mean power and energy of one power source over a span; None where not known."""

    mean_w: float | None
    energy_j: float | None


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
    power: dict[str, PowerFigure] = field(default_factory=dict)
    # True for a span that came with its application's own trace and span ids (OTLP
    # intake): it stays in that trace instead of the agent's per-frame trace.
    foreign: bool = False

    @property
    def latency_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def pair(self) -> str:
        return f"{self.stage_from}->{self.stage_to}"


def spans_by_pair(spans: Iterable[StageSpan]) -> dict[tuple[str, str, str], list[StageSpan]]:
    """A batch's spans by (pipeline, stage_from, stage_to), each in batch order: what is
    kept per pair is then taken a whole group at a time."""
    groups: dict[tuple[str, str, str], list[StageSpan]] = {}
    for s in spans:
        key = (s.pipeline, s.stage_from, s.stage_to)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(s)
    return groups


@dataclass(frozen=True, slots=True)
class Unpaired:
    """A mark that found no partner, with why (``timeout``, ``orphan``, ``duplicate``)."""

    pipeline: str
    stage_from: str
    stage_to: str
    reason: str
    mark: StageMark
