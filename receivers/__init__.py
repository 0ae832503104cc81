"""One module per source; each only turns a source into records.

Every receiver has the same small interface (``Receiver``): it describes its sensors once,
then ``start(emit)`` runs it on its own thread, handing each Sample or StageMark to
``emit``, until ``stop()``. A source that is absent says so once and emits nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from otel_benchlab.records import Sample, SensorInfo, StageMark

Emit = Callable[[Sample | StageMark], bool]


class Receiver(Protocol):
    name: str

    def sensors(self) -> list[SensorInfo]: ...

    def start(self, emit: Emit) -> None: ...

    def stop(self) -> None: ...
