"""The agent's own counts (queue drops, unpaired marks, export failures, ...).

Plain integers behind a lock, owned by the runtime and handed to whoever counts; the OTel
self-metrics read them. Each (name, labels) is logged the first time it goes up, with
``hint`` saying what to do, so a recurring problem is one log line, not a flood.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger("otel_benchlab")


class AgentCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = defaultdict(int)
        self._warned: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._gauges: dict[str, Callable[[], float]] = {}

    def add(self, name: str, n: int = 1, hint: str = "", **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] += n
            first = key not in self._warned
            self._warned.add(key)
        if first and hint:
            where = ", ".join(f"{k}={v}" for k, v in key[1])
            log.warning("%s%s: %s (counted in benchlab.agent.%s; logged once)", name,
                        f" [{where}]" if where else "", hint, name)

    def declare(self, name: str, **labels: str) -> None:
        """Make a series exist at 0 before anything happens, so rate() and absence alerts
        work from the first scrape (Prometheus' advice for known label values)."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts.setdefault(key, 0)

    def get(self, name: str, **labels: str) -> int:
        with self._lock:
            if labels:
                return self._counts.get((name, tuple(sorted(labels.items()))), 0)
            return sum(v for (n, _), v in self._counts.items() if n == name)

    def items(self, name: str) -> list[tuple[dict[str, str], int]]:
        with self._lock:
            return [(dict(lbl), v) for (n, lbl), v in self._counts.items() if n == name]

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A value read when metrics are exported (an outbox's size), by whoever has it."""
        self._gauges[name] = read

    def gauge_value(self, name: str) -> float | None:
        read = self._gauges.get(name)
        return None if read is None else read()
