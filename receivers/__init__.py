"""One module per source; each only turns a source into records.

Every receiver has the same small interface (``Receiver``): it describes its sensors once,
then ``start(emit)`` runs it on its own thread, handing each Sample, StageMark or
StageSpan (a stage measured whole by its source, start and end known) to ``emit``, until
``stop()``. A receiver that gets records in bunches (a probe datagram holds up to 128) may
hand ``emit`` a list of them: one queue item instead of one per record. A source that is
absent says so once and emits nothing.

Each receiver module that the agent builds from configuration declares one ``COMPONENT``
(see ``otel_benchlab.components``): the config section it reads, whether it is enabled,
and a factory. The runtime never names a source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from otel_benchlab.records import Sample, SensorInfo, StageMark, StageSpan

Record = Sample | StageMark | StageSpan
Emit = Callable[[Record | list[Record]], bool]


class Receiver(Protocol):
    name: str

    def sensors(self) -> list[SensorInfo]: ...

    def start(self, emit: Emit) -> None: ...

    def stop(self) -> None: ...
