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
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pyarrow as pa

from otel_benchlab.agent.collection import BatchCollection
from otel_benchlab.agent.limits import KeyLimits
from otel_benchlab.agent.live import LiveStats
from otel_benchlab.agent.power_sources import choose_power_sources
from otel_benchlab.agent.record_queue import RecordQueue, late_counting_emitter
from otel_benchlab.agent.session_files import SessionFiles
from otel_benchlab.agent.summary import Progress, live_status, session_summary
from otel_benchlab.agent.telemetry import Telemetry
from otel_benchlab.config import attribution_delay_s, config_as_dict
from otel_benchlab.counters import AgentCounters
from otel_benchlab.processors.attribution import StageShares
from otel_benchlab.processors.energy import EnergyAnnotator
from otel_benchlab.processors.frames import FrameAssembler, TraceIds
from otel_benchlab.processors.live_attribution import LiveAttribution
from otel_benchlab.processors.pairing import StagePairer
from otel_benchlab.receivers import Receiver, Record
from otel_benchlab.records import Sample, StageMark, StageSpan, Unpaired
from otel_benchlab.session.folder import Session
from otel_benchlab.session.retention import RetentionSchedule
from otel_benchlab.timebase import TimeBase

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger("otel_benchlab")

# The queue is drained and marks are paired this often. Spans are processed once a batch
# (BATCH_S) anyway; each wake-up costs ~100 us of CPU on a VM, so 4 a second, not 10.
TICK_S = 0.25
IDLESS_WARNINGS = 100  # streams told apart in the warning about marks without frame ids
RELEASE_SLICE = 10_000  # spans released and written at a time
BATCH_S = 1.0  # energy, metrics, traces and files work on batches of about a second


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
        self.pairer = StagePairer(cfg.pair_tuples(), window_ns, cfg.limits.max_pending_marks)
        # Power history for a span whose last mark (or the span itself) arrives up to
        # intake.max_delay_s late and that began up to a window before that mark.
        self.late_ns = int(cfg.intake.max_delay_s * 1e9)
        # Energy shared among overlapping spans, an interval at a time once no span that
        # can still arrive overlaps it (attribution_delay_s behind now).
        delay_ns = int(attribution_delay_s(cfg) * 1e9)
        self.attribution = LiveAttribution(
            self.labels, gap_ns, delay_ns, time.monotonic_ns(),
            StageShares(self.labels, cfg.attribution.sources, cfg.attribution.weights),
            cfg.genai) if self.labels else None
        self.annotator = EnergyAnnotator(self.power_sources, gap_ns,
                                         keep_ns=window_ns + self.late_ns + gap_ns + delay_ns,
                                         attribution=self.attribution)
        self.ids = TraceIds(session.id)
        targets = {k: int(v * 1e9) for k, v in cfg.traces.latency_targets_s.items()}
        # A frame's spans come out of the energy pass up to the attribution delay apart.
        self.frames = FrameAssembler(self.ids, cfg.pair_tuples(), window_ns + gap_ns + delay_ns,
                                     cfg.traces.sample_ratio, targets,
                                     cfg.limits.max_pending_frames)
        self.stats = LiveStats(self.labels[0] if self.labels else None, cfg.pair_tuples())
        self.spans_total = 0
        self.marks_total = 0
        self.samples_total = 0
        self.measured_total = 0
        self.unpaired_by_reason: dict[str, int] = {}
        self._idless_seen: set[tuple[str, str]] = set()
        self.limits = KeyLimits(cfg.limits, self.counters)
        self.files = SessionFiles(cfg, session, self.labels, self.power_sources,
                                  self.timebase, self._write_error, self.file_sinks,
                                  lambda batch: self.limits.fold_batch(batch, count=False))
        self._stop = threading.Event()
        self.progress = Progress(self)
        self._latency_observers = [r for r in receivers if hasattr(r, "observe_latency")]
        first = cfg.pairs[0] if cfg.pairs else ["", ""]
        self._control_pair = cfg.benchlab.control.rgb_pair or f"{first[0]}->{first[1]}"
        self._hurry = threading.Event()
        self.telemetry = Telemetry(cfg, self.counters, self.sensors, self.queue.qsize,
                                   self.timebase)
        self.telemetry.samples.attributions = list(attributions or [])
        # The live page beside /metrics (views/live_page.py), when that port is served.
        self.live_page = None
        if self.telemetry.prometheus is not None:
            from otel_benchlab.views.live_page import LivePage

            self.live_page = LivePage(self.labels[0] if self.labels else None,
                                      self.timebase.offset_ns, lambda: live_status(self),
                                      cfg.pair_tuples(), cfg.live.max_bytes, self.stats)
            self.telemetry.prometheus.routes.update(self.live_page.routes())

    def _write_error(self, what: str, n: int) -> None:
        self.counters.add("write.errors", 1, exporter=what)

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
        """``emit`` for one receiver, counting what arrives late (``record_queue``)."""
        return late_counting_emitter(self.emit, receiver, self.counters, self.late_ns,
                                     self.cfg.intake.max_delay_s)

    def _handle(self, records: list[Record], spans: list[StageSpan],
                unpaired: list[Unpaired]) -> None:
        """One queue item's records (a probe datagram holds up to 128 marks): marks, the
        bulk of them, in this loop; a measured span or a sample in a method of its own."""
        keep_mark = self.files.raw_marks.append
        # With no trace exporter no frame is kept (``id``: a call that does nothing).
        add_mark = self.frames.add_mark if self.telemetry.traces is not None else id
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
        if (mark.pipeline, mark.stream) in self._idless_seen or \
                len(self._idless_seen) >= IDLESS_WARNINGS:
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
        self.files.measured.append(span)
        spans.append(span)

    def _sample(self, rec: Sample) -> None:
        self.samples_total += 1
        self.telemetry.samples.on_sample(rec.ts_ns, rec.source, rec.values, rec.rtt_ns)
        self.files.add_sample(rec)
        # Only the power sensors of this source are looked up (a BENCHLAB has ~110 values).
        for name, label in self._power_sensors.get(rec.source, ()):
            v = rec.values.get(name)
            if v is None:
                continue
            self.annotator.add_power(label, rec.ts_ns, v)
            self.files.add_power(label, rec.ts_ns, v)

    def _process(self, spans: list[StageSpan], unpaired: list[Unpaired], now: int,
                 flush: bool = False) -> None:
        # A span from an application keeps its own ids.
        self.ids.assign_many([s for s in spans if not s.trace_id])
        for s in spans:
            self.annotator.add_span(s)
        if unpaired:
            for u in unpaired:
                self.unpaired_by_reason[u.reason] = self.unpaired_by_reason.get(u.reason, 0) + 1
            shown_unpaired = self.limits.fold_unpaired(unpaired)
            self.telemetry.pipeline.export_unpaired(shown_unpaired)
            self.stats.add_unpaired(shown_unpaired)
        # A burst (a flood after the attribution delay) goes a slice at a time, each
        # written before the next, so its cost in memory is a slice's, not the burst's.
        while True:
            self._release(now, flush)
            if not self.annotator.cut:
                break
            self.files.flush()

    def _release(self, now: int, flush: bool) -> None:
        shared = self.attribution
        before = (shared.total_j[0], shared.idle_j[0]) if shared is not None else (0.0, 0.0)
        done = self.annotator.release(now, flush=flush, max_spans=RELEASE_SLICE)
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
            # Figures kept in memory see the names folded at their bounds; the files and
            # the span sinks see every name.
            shown = self.limits.fold_batch(done)
            self.telemetry.pipeline.export(shown)
            self.stats.add(shown)
            if self.live_page is not None:
                self.live_page.add(shown)
            self.files.add_spans(done)
            for sink in self.span_sinks:
                sink.export(done.spans)
        # The agent's frame traces (none without a trace exporter) are made of the spans
        # that came without ids: the others are in their application's trace already.
        if self.telemetry.traces is not None:
            frames = self.frames.add_spans([s for s in done.spans if not s.foreign])
            frames += self.frames.expire(now, flush=flush)
            if frames:
                self.telemetry.traces.export(frames)

    def _drain(self, spans: list[StageSpan], unpaired: list[Unpaired]) -> None:
        get = self.queue.get_nowait
        try:
            while True:
                item = get()
                self._handle(item if type(item) is list else [item], spans, unpaired)
        except queue.Empty:
            pass

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
            self.files.open()
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
                    self.files.flush()
                    collection.after_batch()
                    self.progress.tick(now_s)
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
        self._step("writing the last batch", self.files.flush)
        for what, close in self.files.closing_steps():
            self._step(what, close)
        for sink in self.span_sinks:
            self._step(f"closing {getattr(sink, 'name', sink)}", sink.shutdown)
        self._status(time.monotonic())
        summary = session_summary(self)
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
            for p in self.files.captures_written if p.is_relative_to(self.session.path)]
        for sink in self.file_sinks:
            for relpath in closed:
                self._step(f"{getattr(sink, 'name', sink)}: {relpath}",
                           lambda s=sink, r=relpath: s.file_closed(r))
            self._step(f"closing {getattr(sink, 'name', sink)}",
                       lambda s=sink: s.shutdown(hurry=self._hurry))
