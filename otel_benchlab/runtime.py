"""The runtime: wires receivers -> processors -> exporters. Only it knows all three.

Receivers run on their own threads and put records on one bounded queue without ever
blocking (a full queue is counted as a drop). One consumer thread owns all processor
state, so pairing needs no locks; exporters that talk to the network (OTLP) do so from
the SDK's own threads.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from itertools import repeat
from typing import TextIO

import numpy as np
import pyarrow as pa

from otel_benchlab.collection import BatchCollection
from otel_benchlab.config import Config, attribution_delay_s, config_as_dict
from otel_benchlab.counters import AgentCounters
from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.exporters.parquet import ParquetPartWriter
from otel_benchlab.live import LiveStats
from otel_benchlab.processors.attribution import LiveAttribution, StageShares, energy_split
from otel_benchlab.processors.energy import EnergyAnnotator
from otel_benchlab.processors.frames import FrameAssembler, TraceIds
from otel_benchlab.processors.pairing import StagePairer
from otel_benchlab.receivers import Receiver, Record
from otel_benchlab.records import Sample, SensorInfo, SpanBatch, StageMark, StageSpan, Unpaired
from otel_benchlab.retention import RetentionSchedule
from otel_benchlab.schema import (
    MARK_SCHEMA,
    SAMPLE_SCHEMA,
    aligned_schema,
    marks_to_table,
    power_columns,
    power_source_order,
    spans_to_table,
)
from otel_benchlab.session import Session
from otel_benchlab.telemetry import Telemetry
from otel_benchlab.timebase import TimeBase

log = logging.getLogger("otel_benchlab")

# The queue is drained and marks are paired this often. Spans are processed once a batch
# (BATCH_S) anyway; each wake-up costs ~100 us of CPU on a VM, so 4 a second, not 10.
TICK_S = 0.25
BATCH_S = 1.0  # energy, metrics, traces and files work on batches of about a second


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


def choose_power_sources(cfg: Config, sensors: list[SensorInfo]) -> dict[str, str]:
    """label -> kind ("power" or "energy"), primary first: the configured list, else sys,
    cpu, gpu, then any other power source in the order the receivers described them."""
    seen: dict[str, str] = {}
    for s in sensors:
        if s.power_source and s.power_source not in seen:
            seen[s.power_source] = "energy" if s.kind == "energy" else "power"
    if cfg.power_sources:
        missing = [p for p in cfg.power_sources if p not in seen]
        if missing:
            log.warning("power sources %s are configured but no receiver provides them "
                        "(have: %s); their energy columns stay empty", missing,
                        ", ".join(seen) or "none")
        return {p: seen.get(p, "power") for p in cfg.power_sources}
    return {p: seen[p] for p in power_source_order(list(seen))}


class Agent:
    def __init__(self, cfg: Config, receivers: list[Receiver], session: Session,
                 status_out: TextIO | None = None,
                 counters: AgentCounters | None = None,
                 span_sinks: list | None = None, timebase: TimeBase | None = None,
                 attributions: list | None = None, file_sinks: list | None = None) -> None:
        self.cfg = cfg
        self.receivers = receivers
        self.session = session
        self.status_out = status_out
        self.counters = counters or AgentCounters()
        # The agent hands Arrow small batches (about a second of rows); Arrow's default
        # mimalloc pool reserves some 40 MB of arena for them up front, the system
        # allocator does not. This reaches pyarrow's own calls in a process that built
        # the agent itself; the command line also sets Arrow's C++ default pool, which
        # the Parquet and IPC writers use, before pyarrow loads (heap.py).
        pa.set_memory_pool(pa.system_memory_pool())
        self.timebase = timebase or TimeBase.measure()
        self.queue = RecordQueue(maxsize=cfg.queue_size)
        # Exporters that get every stage span once it has its power (the OTLP intake's
        # forwarder adds the figures to the application's own spans).
        self.span_sinks = list(span_sinks or [])
        # Exporters of files (the uploader): told of each session file once it is whole.
        self.file_sinks = list(file_sinks or [])
        self.sensors = [s for r in receivers for s in r.sensors()]
        self.power_sources = choose_power_sources(cfg, self.sensors)
        self.labels = list(self.power_sources)
        self._power_sensors: dict[str, list[tuple[str, str]]] = {}
        for s in self.sensors:
            if s.power_source in self.power_sources:
                self._power_sensors.setdefault(s.source, []).append((s.name, s.power_source))
        window_ns = int(cfg.pair_window_s * 1e9)
        gap_ns = int(cfg.power_max_gap_s * 1e9)
        self.pairer = StagePairer(cfg.pair_tuples(), window_ns)
        # Power history for a span whose last mark (or the span itself) arrives up to
        # intake.max_delay_s late and that began up to a window before that mark.
        self.late_ns = int(cfg.intake.max_delay_s * 1e9)
        # Energy shared among overlapping spans, an interval at a time once no span that
        # can still arrive overlaps it (attribution_delay_s behind now).
        delay_ns = int(attribution_delay_s(cfg) * 1e9)
        self.attribution = LiveAttribution(
            self.labels, gap_ns, delay_ns, time.monotonic_ns(),
            StageShares(self.labels, cfg.attribution.sources, cfg.attribution.weights)) \
            if self.labels else None
        self.annotator = EnergyAnnotator(self.power_sources, gap_ns,
                                         keep_ns=window_ns + self.late_ns + gap_ns + delay_ns,
                                         attribution=self.attribution)
        self.ids = TraceIds(session.id)
        targets = {k: int(v * 1e9) for k, v in cfg.traces.latency_targets_s.items()}
        # A frame's spans come out of the energy pass up to the attribution delay apart.
        self.frames = FrameAssembler(self.ids, cfg.pair_tuples(), window_ns + gap_ns + delay_ns,
                                     cfg.traces.sample_ratio, targets)
        self.stats = LiveStats(self.labels[0] if self.labels else None, cfg.pair_tuples())
        self.spans_total = 0
        self.marks_total = 0
        self.samples_total = 0
        self.measured_total = 0
        self.unpaired_by_reason: dict[str, int] = {}
        self._idless_seen: set[tuple[str, str]] = set()
        self._raw_marks: list[StageMark] = []
        self._aligned: list[SpanBatch] = []  # until the files' next flush
        self._cx_power: dict[str, tuple[list[int], list[float]]] = {}
        self._raw_samples: dict[str, list] = {f.name: [] for f in SAMPLE_SCHEMA}
        self._stop = threading.Event()
        self._latency_observers = [r for r in receivers if hasattr(r, "observe_latency")]
        first = cfg.pairs[0] if cfg.pairs else ["", ""]
        self._control_pair = cfg.benchlab.control.rgb_pair or f"{first[0]}->{first[1]}"
        self._hurry = threading.Event()
        self.parquet: dict[str, ParquetPartWriter] | None = None
        self.capframex: CapFrameXWriter | None = None
        self.telemetry = Telemetry(cfg, self.counters, self.sensors, self.queue.qsize,
                                   self.timebase)
        self.telemetry.samples.attributions = list(attributions or [])
        # The live page beside /metrics (views/live_page.py), when that port is served.
        self.live_page = None
        if self.telemetry.prometheus is not None:
            from otel_benchlab.views.live_page import LivePage

            self.live_page = LivePage(self.labels[0] if self.labels else None,
                                      self.timebase.offset_ns, self._live_status,
                                      cfg.pair_tuples())
            self.telemetry.prometheus.routes.update(self.live_page.routes())

    # -- wiring ------------------------------------------------------------------------
    def _open_files(self) -> None:
        cfg, c = self.cfg, self.counters

        def on_error(what: str, n: int) -> None:
            c.add("write.errors", 1, exporter=what)

        p = cfg.parquet
        self.parquet = None
        if p.enabled:
            on_part = self._file_closed if self.file_sinks else None
            self.parquet = {
                name: ParquetPartWriter(directory, schema, p.part_rows, p.part_seconds,
                                        on_error, on_part=on_part)
                for name, directory, schema in (
                    ("aligned", self.session.aligned, aligned_schema(self.labels)),
                    ("marks", self.session.raw_marks, MARK_SCHEMA),
                    ("samples", self.session.raw_samples, SAMPLE_SCHEMA))}
        self.capframex = None
        if cfg.capframex.enabled:
            self.capframex = CapFrameXWriter(self.session.capframex, cfg.capframex.app,
                                             power_columns(self.labels),
                                             cfg.capframex.sample_time_ms,
                                             cfg.capframex.watch_dir or None, spill=True,
                                             on_error=on_error)

    def _file_closed(self, path) -> None:  # noqa: ANN001 - a Path under the session
        relpath = path.relative_to(self.session.path).as_posix()
        for sink in self.file_sinks:
            sink.file_closed(relpath)

    # -- intake ------------------------------------------------------------------------
    def emit(self, record: Record | list[Record]) -> bool:
        """Called by receivers on their threads: never blocks. A list is one batch."""
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.counters.add("queue.dropped", len(record) if type(record) is list else 1,
                              "the processors cannot keep up; records are dropped (raise "
                              "queue_size or lower the sample rate)")
            return False

    def emitter(self, receiver: Receiver) -> Callable[[Record | list[Record]], bool]:
        """``emit`` for one receiver: marks and spans that arrive more than
        ``intake.max_delay_s`` after their own time are counted by source (the first
        record of a list stands for it: a datagram's or a request's records come in time
        order), then queued as any other."""
        emit, counters, late_ns, monotonic_ns = self.emit, self.counters, self.late_ns, \
            time.monotonic_ns
        source = getattr(receiver, "input_source", "") or \
            str(getattr(receiver, "name", type(receiver).__name__)).split(":")[0]
        hint = (f"marks or spans arrived more than intake.max_delay_s "
                f"({self.cfg.intake.max_delay_s:g} s) after their own time (a sender's "
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

    def _handle(self, records: list[Record], spans: list[StageSpan],
                unpaired: list[Unpaired]) -> None:
        """One queue item's records (a probe datagram holds up to 128 marks): marks, the
        bulk of them, in this loop; a measured span or a sample in a method of its own."""
        keep_mark = self._raw_marks.append
        add_mark = self.frames.add_mark
        pair = self.pairer.push
        marks = 0
        for rec in records:
            if isinstance(rec, StageMark):
                marks += 1
                if rec.frame is None:
                    self._warn_idless(rec)
                keep_mark(rec)
                add_mark(rec)
                for r in pair(rec):
                    (spans if isinstance(r, StageSpan) else unpaired).append(r)
            elif isinstance(rec, StageSpan):
                self._measured(rec, spans)
            else:
                self._sample(rec)
        self.marks_total += marks

    def _warn_idless(self, mark: StageMark) -> None:
        if (mark.pipeline, mark.stream) in self._idless_seen:
            return
        self._idless_seen.add((mark.pipeline, mark.stream))
        log.warning("pipeline %s stream %s sends stage marks without frame ids: they are "
                    "paired by order, which can only tell frames apart for stages shorter "
                    "than one frame interval; a longer (pipelined) stage gets another "
                    "frame's latency. Give the marks frame ids.", mark.pipeline, mark.stream)

    def _measured(self, span: StageSpan, spans: list[StageSpan]) -> None:
        # Measured whole by its source (GStreamer's tracer, an application's span): no
        # pairing. Its two ends are kept as raw marks, so replay finds it again.
        self.measured_total += 1
        self._raw_marks.append(StageMark(span.start_ns, span.pipeline, span.stream,
                                         span.stage_from, span.frame))
        self._raw_marks.append(StageMark(span.end_ns, span.pipeline, span.stream,
                                         span.stage_to, span.frame))
        spans.append(span)

    def _sample(self, rec: Sample) -> None:
        self.samples_total += 1
        self.telemetry.samples.on_sample(rec.ts_ns, rec.source, rec.values, rec.rtt_ns)
        # A BENCHLAB sample holds ~110 values: bulk list operations, and only the
        # power sensors of this source looked up, keep the per-sample cost flat.
        raw = self._raw_samples
        n = len(rec.values)
        raw["ts_ns"].extend(repeat(rec.ts_ns, n))
        raw["source"].extend(repeat(rec.source, n))
        raw["sensor"].extend(rec.values)
        raw["value"].extend(rec.values.values())
        raw["rtt_ns"].extend(repeat(rec.rtt_ns, n))
        raw["uncertain"].extend(repeat(rec.uncertain, n))
        for name, label in self._power_sensors.get(rec.source, ()):
            v = rec.values.get(name)
            if v is None:
                continue
            self.annotator.add_power(label, rec.ts_ns, v)
            if self.capframex is not None and self.power_sources[label] == "power":
                ts_list, v_list = self._cx_power.setdefault(label, ([], []))
                ts_list.append(rec.ts_ns)
                v_list.append(v)

    def _process(self, spans: list[StageSpan], unpaired: list[Unpaired], now: int,
                 flush: bool = False) -> None:
        # A span from an application keeps its own ids.
        self.ids.assign_many([s for s in spans if not s.trace_id])
        for s in spans:
            self.annotator.add_span(s)
        if unpaired:
            for u in unpaired:
                self.unpaired_by_reason[u.reason] = self.unpaired_by_reason.get(u.reason, 0) + 1
            self.telemetry.pipeline.export_unpaired(unpaired)
            self.stats.add_unpaired(unpaired)
        shared = self.attribution
        before = (shared.total_j[0], shared.idle_j[0]) if shared is not None else (0.0, 0.0)
        done = self.annotator.release(now, flush=flush)
        if shared is not None:
            self.stats.add_energy(shared.total_j[0] - before[0], shared.idle_j[0] - before[1])
        if done and self._latency_observers:
            codes, names = done.names()
            pair = [k for k, (_, _, a, b) in enumerate(names)
                    if f"{a}->{b}" == self._control_pair]
            if pair:
                chosen = np.isin(codes, pair)
                ms = float(np.median((done.end_ns - done.start_ns)[chosen])) / 1e6
                for r in self._latency_observers:
                    r.observe_latency(ms)
        if done:
            self.spans_total += len(done)
            self.telemetry.pipeline.export(done)
            self.stats.add(done)
            if self.live_page is not None:
                self.live_page.add(done)
            self._aligned.append(done)
            for sink in self.span_sinks:
                sink.export(done.spans)
        # Spans that arrived with their own ids are already in their application's trace
        # (the forwarder sends them on); the agent's frame traces are made of the rest.
        frames = self.frames.add_spans([s for s in done.spans if not s.foreign])
        frames += self.frames.expire(now, flush=flush)
        if frames and self.telemetry.traces is not None:
            self.telemetry.traces.export(frames)

    def _drain(self, spans: list[StageSpan], unpaired: list[Unpaired]) -> None:
        get = self.queue.get_nowait
        try:
            while True:
                item = get()
                self._handle(item if type(item) is list else [item], spans, unpaired)
        except queue.Empty:
            pass

    def _flush_files(self) -> None:
        if self._aligned:
            table = spans_to_table(SpanBatch.concat(self._aligned), self.timebase,
                                   self.labels)
            self._aligned = []
            if self.parquet:
                self.parquet["aligned"].export(table)
            if self.capframex:
                self.capframex.export(table)
        if self.capframex is not None:
            for label, (ts, v) in self._cx_power.items():
                if ts:
                    self.capframex.add_power(label, np.array(ts, np.int64), np.array(v))
            self._cx_power = {}
        self._flush_raw()

    def _flush_raw(self) -> None:
        if self.parquet is None:
            self._raw_marks.clear()
            for v in self._raw_samples.values():
                v.clear()
            return
        if self._raw_marks:
            self.parquet["marks"].export(marks_to_table(self._raw_marks, self.timebase))
            self._raw_marks.clear()
        raw = self._raw_samples
        if raw["ts_ns"]:
            ts = np.asarray(raw["ts_ns"], np.int64)
            raw["ts_unix_ns"] = ts + self.timebase.offset_ns
            raw["ts_ns"] = ts
            self.parquet["samples"].export(pa.table(raw, schema=SAMPLE_SCHEMA))
            self._raw_samples = {f.name: [] for f in SAMPLE_SCHEMA}
        for w in self.parquet.values():
            w.tick()

    # -- running -----------------------------------------------------------------------
    def banner(self) -> list[str]:
        lines = [f"otel-benchlab session {self.session.id}",
                 f"  session directory: {self.session.path}"]
        lines += self.telemetry.banner()
        lines.append("  pairs: " + ", ".join(f"{a}->{b}" for a, b in self.cfg.pair_tuples()))
        lines.append("  power sources: " + (", ".join(self.labels) or "none"))
        return lines

    def stop(self) -> None:
        """Stop measuring and close everything (the first SIGINT/SIGTERM)."""
        self._stop.set()

    def hurry(self) -> None:
        """Stop waiting for the network at exit (the second SIGINT); files still close."""
        self._stop.set()
        self._hurry.set()

    def abandon(self) -> None:
        """Let go of an agent that never ran (interrupted during start-up)."""
        self.telemetry.close(0.0, self._hurry)

    def _start(self) -> None:
        """Everything that can fail at start-up, in an order that leaves nothing behind:
        the Prometheus port, then the session folder, then its files."""
        self.telemetry.start()
        try:
            self.session.create()
            self._open_files()
            self.session.start(config_as_dict(self.cfg),
                               [{"name": getattr(r, "name", type(r).__name__),
                                 **({"devices": r.identities()} if hasattr(r, "identities")
                                    else {})} for r in self.receivers],
                               [asdict(s) for s in self.sensors],
                               {k: str(v) for k, v in
                                self.telemetry.resource.attributes.items()})
            for sink in self.file_sinks:
                sink.open_session(self.session.path, self.session.manifest)
                sink.start()
        except BaseException:
            self.session.discard()
            self.telemetry.close(0.0, self._hurry)
            raise

    def run(self, duration_s: float | None = None,
            on_started: Callable[[], None] | None = None) -> int:
        self._start()
        retention = RetentionSchedule(self.cfg.data_root, self.cfg.retention_days,
                                      self.cfg.raw_keep_days, self.cfg.retention_interval_h)
        retention.start()
        for line in self.banner():
            print(line, file=self.status_out or sys.stderr, flush=True)
        collection = BatchCollection()
        collection.start()
        spans: list[StageSpan] = []
        unpaired: list[Unpaired] = []
        t_start = time.monotonic()
        try:
            for r in self.receivers:
                r.start(self.emitter(r))
            if on_started:
                on_started()
            next_tick = next_flush = t_start
            next_status = t_start + self.cfg.status_interval_s
            end = t_start + duration_s if duration_s is not None else None
            # Tick-driven: sleep to the next tick, then take everything queued in one batch.
            # Records carry their own timestamps, so waiting up to a tick costs no accuracy,
            # and the consumer wakes 10 times a second instead of once per record.
            while True:
                wake = next_tick if end is None else min(next_tick, end)
                if self._stop.wait(max(0.0, wake - time.monotonic())):
                    break
                now_s = time.monotonic()
                if end is not None and now_s >= end:
                    break
                next_tick = max(next_tick + TICK_S, now_s)
                self._drain(spans, unpaired)
                if now_s >= next_flush:
                    # Batches, not ticks: per-call costs (numpy, Arrow, the OTel SDK) are paid
                    # once a second; every record keeps its own timestamp, so nothing moves.
                    next_flush = now_s + BATCH_S
                    now_ns = time.monotonic_ns()
                    for r in self.pairer.expire(now_ns):
                        (spans if isinstance(r, StageSpan) else unpaired).append(r)
                    self._process(spans, unpaired, now_ns)
                    spans, unpaired = [], []
                    self._flush_files()
                    collection.after_batch()
                if now_s >= next_status:
                    self._status(now_s)
                    next_status = now_s + self.cfg.status_interval_s
        finally:
            retention.stop()
            errors_before = self.counters.get("write.errors")
            try:
                self._shutdown(spans, unpaired, time.monotonic() - t_start)
            finally:
                collection.stop()
        if self.close_errors or self.counters.get("write.errors") > errors_before:
            log.error("the session was closed, but not everything could be written (see the "
                      "errors above); `otel-benchlab recover %s` finishes it once they are "
                      "fixed, and replay makes the CapFrameX captures again", self.session.path)
            return 1
        return 0

    def _status(self, now_s: float) -> None:
        if self.status_out is None:
            return
        for line in self.stats.lines(now_s):
            print(line, file=self.status_out, flush=True)

    def _step(self, what: str, fn: Callable[[], object]) -> bool:
        """One closing step: a failure is logged with what failed and the rest still run."""
        try:
            fn()
            return True
        except Exception as exc:
            self.close_errors.append(f"{what}: {exc}")
            log.error("while closing, %s failed: %s", what, exc)
            return False

    def _shutdown(self, spans: list[StageSpan], unpaired: list[Unpaired],
                  ran_s: float) -> None:
        """Files first (they are the record), then the session's end, then a bounded wait
        for the network: a dead collector costs at most ``otlp.flush_timeout_s``."""
        self.close_errors: list[str] = []
        for r in self.receivers:
            self._step(f"stopping receiver {getattr(r, 'name', r)}", r.stop)

        def finish_processing() -> None:
            self._drain(spans, unpaired)
            for r in self.pairer.flush():
                (spans if isinstance(r, StageSpan) else unpaired).append(r)
            self._process(spans, unpaired, time.monotonic_ns(), flush=True)

        self._step("processing the last records", finish_processing)
        self._step("writing the last batch", self._flush_files)
        for name, w in (self.parquet or {}).items():
            self._step(f"closing Parquet {name} in {w.directory}", w.shutdown)
        if self.capframex is not None:
            self._step(f"writing CapFrameX captures in {self.capframex.directory}",
                       self.capframex.shutdown)
        for sink in self.span_sinks:
            self._step(f"closing {getattr(sink, 'name', sink)}", sink.shutdown)
        self._status(time.monotonic())
        summary = self._summary()
        self._step("recording the end of the session", lambda: self.session.finish(summary))
        undelivered = self.telemetry.close(self.cfg.otlp.flush_timeout_s, self._hurry)
        if undelivered:
            summary["undelivered"] = undelivered
            self._step("recording undelivered telemetry",
                       lambda: self.session.finish(summary))
        if self.file_sinks:
            self._close_file_sinks()
        self.session.release()
        if self.status_out is not None:
            for line in self.stats.summary(ran_s, self.session.path, summary):
                print(line, file=self.status_out, flush=True)
        log.info("session %s closed: %d marks, %d samples, %d spans", self.session.id,
                 self.marks_total, self.samples_total, self.spans_total)

    def _close_file_sinks(self) -> None:
        """The session's last files go to the file sinks (the end's session.json, the
        captures), which then get ``upload.flush_timeout_s`` to send what is left."""
        closed = ["session.json"] + [
            p.relative_to(self.session.path).as_posix()
            for p in (self.capframex.files_written if self.capframex else [])
            if p.is_relative_to(self.session.path)]
        for sink in self.file_sinks:
            for relpath in closed:
                self._step(f"{getattr(sink, 'name', sink)}: {relpath}",
                           lambda s=sink, r=relpath: s.file_closed(r))
            self._step(f"closing {getattr(sink, 'name', sink)}",
                       lambda s=sink: s.shutdown(hurry=self._hurry))

    def _live_status(self) -> dict:
        """For the live page: each power source up or down (as benchlab.source.up says of
        the devices that feed it), and the loss counters."""
        up = self.telemetry.samples.sources_up()
        feeds = {label: [src for src, pairs in self._power_sensors.items()
                         if any(lbl == label for _, lbl in pairs)] for label in self.labels}
        return {"session": self.session.id,
                "sources": [{"name": label, "up": any(up.get(src, False)
                                                      for src in feeds[label])}
                            for label in self.labels],
                "losses": {**{f"unpaired {k}": v for k, v in self.unpaired_by_reason.items()},
                           "queue dropped": self.counters.get("queue.dropped"),
                           "late": self.counters.get("input.late"),
                           "export failures": self.counters.get("export.failures")}}

    def _energy_summary(self) -> dict:
        """Per source: the meter's energy over the session (where known), how much of it
        the spans were attributed and how much was idle (no span running); they add up."""
        a = self.attribution
        if a is None:
            return {}
        return {"energy_j": {label: energy_split(a.total_j[j], a.assigned_j[j], a.idle_j[j])
                             for j, label in enumerate(a.labels)},
                "unattributed_spans": a.unattributed,
                # What the totals cover: the agent's start to the last span shared out.
                "energy_window_unix_ns": [a.start_ns + self.timebase.offset_ns,
                                          a.done_to + self.timebase.offset_ns]}

    def _summary(self) -> dict:
        return {
            "marks": self.marks_total, "samples": self.samples_total,
            "spans": self.spans_total, "measured_spans": self.measured_total,
            "unpaired": dict(self.unpaired_by_reason),
            # frames per pipeline (`otel-benchlab sessions` lists them from the store)
            "frames": self.stats.frames_by_pipeline(),
            "traces": {"sampled": self.frames.sampled,
                       "kept_over_target": self.frames.kept_over_target,
                       "unsampled": self.frames.unsampled},
            "queue_dropped": self.counters.get("queue.dropped"),
            "late": {lbl["source"]: n for lbl, n in self.counters.items("input.late")},
            **self._energy_summary(),
            "export_failures": self.counters.get("export.failures"),
            "export_dropped": self.counters.get("export.dropped"),
            "write_errors": self.counters.get("write.errors"),
            "close_errors": list(self.close_errors),
            "capframex_files": [str(p) for p in (self.capframex.files_written
                                                 if self.capframex else [])],
        }
