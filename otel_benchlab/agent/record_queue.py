"""What the receivers put records on: one queue bounded in records (a receiver's thread
never blocks on it; a full queue is counted), and the emit function each receiver gets,
which counts the marks and spans that arrive later than ``intake.max_delay_s``."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers import Receiver, Record
from otel_benchlab.records import Sample, StageSpan


class RecordQueue(queue.Queue):
    """The receivers' queue, bounded in records: an item is a record or a non-empty list of
    them (a probe datagram's), so ``queue_size`` means the same however they come. Built on
    the hooks ``queue.Queue`` keeps for this (``_put``, ``_get``, ``_qsize``)."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._records = 0

    def _qsize(self) -> int:
        return self._records

    def _put(self, item: Record | list[Record]) -> None:
        self.queue.append(item)
        self._records += len(item) if type(item) is list else 1

    def _get(self) -> Record | list[Record]:
        item = self.queue.popleft()
        self._records -= len(item) if type(item) is list else 1
        return item


def late_counting_emitter(emit: Callable[[Record | list[Record]], bool], receiver: Receiver,
                          counters: AgentCounters, late_ns: int, max_delay_s: float
                          ) -> Callable[[Record | list[Record]], bool]:
    """``emit`` for one receiver: marks and spans that arrive more than
    ``intake.max_delay_s`` after their own time are counted by source (the first
    record of a list stands for it: a datagram's or a request's records come in time
    order), then queued as any other."""
    monotonic_ns = time.monotonic_ns
    source = getattr(receiver, "input_source", "") or \
        str(getattr(receiver, "name", type(receiver).__name__)).split(":")[0]
    hint = (f"marks or spans arrived more than intake.max_delay_s "
            f"({max_delay_s:g} s) after their own time (a sender's "
            "batching and retries, or a file read from its start); they are kept, "
            "without energy where the power history no longer covers them. Raise "
            "[intake] max_delay_s for a sender that slow")

    def late_at(rec: Record) -> int:
        return rec.end_ns if type(rec) is StageSpan else rec.ts_ns  # type: ignore

    def emit_counting_late(record: Record | list[Record]) -> bool:
        first = record[0] if type(record) is list else record
        if type(first) is not Sample:
            horizon = monotonic_ns() - late_ns
            if late_at(first) < horizon:
                n = sum(1 for r in record if type(r) is not Sample and
                        late_at(r) < horizon) if type(record) is list else 1
                counters.add("input.late", n, hint, source=source)
        return emit(record)

    return emit_counting_late
