"""One clock per host: CLOCK_MONOTONIC ns inside, Unix epoch ns only at the edges."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimeBase:
    """Maps monotonic ns to Unix ns with one offset measured at start.

    The offset is taken as the midpoint of two monotonic reads around one wall-clock read,
    so its error is at most half that (sub-microsecond) window.
    """

    offset_ns: int

    @classmethod
    def measure(cls) -> TimeBase:
        best: tuple[int, int] | None = None
        for _ in range(5):
            m0 = time.monotonic_ns()
            wall = time.time_ns()
            m1 = time.monotonic_ns()
            if best is None or m1 - m0 < best[0]:
                best = (m1 - m0, wall - (m0 + m1) // 2)
        assert best is not None
        return cls(offset_ns=best[1])

    def to_unix_ns(self, mono_ns: int) -> int:
        return mono_ns + self.offset_ns

    def to_mono_ns(self, unix_ns: int) -> int:
        return unix_ns - self.offset_ns


def now_ns() -> int:
    return time.monotonic_ns()
