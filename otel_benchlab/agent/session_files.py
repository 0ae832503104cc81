"""The session's files as the agent writes them: the Parquet parts (aligned spans, raw
marks, raw samples) and the CapFrameX captures, fed about a second of rows at a time, and
the file sinks (the uploader) told of each file once it is whole."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.exporters.parquet import ParquetPartWriter
from otel_benchlab.fleet.outbox import open_outbox
from otel_benchlab.records import Sample, SpanBatch, StageMark, StageSpan
from otel_benchlab.session.compaction import RunningCompaction
from otel_benchlab.session.folder import Session
from otel_benchlab.session.schema import (
    MARK_SCHEMA,
    SAMPLE_SCHEMA,
    aligned_schema,
    marks_to_table,
    power_columns,
    span_ends_to_table,
    spans_to_table,
)
from otel_benchlab.timebase import TimeBase


class SessionFiles:
    def __init__(self, cfg: Any, session: Session, labels: list[str],
                 power_kinds: dict[str, str], timebase: TimeBase, on_error,  # noqa: ANN001
                 file_sinks: list,
                 fold: Callable[[SpanBatch], SpanBatch] = lambda batch: batch) -> None:
        self.cfg = cfg
        self.session = session
        self.labels = labels
        self.power_kinds = power_kinds  # label -> "power" or "energy"
        self.timebase = timebase
        self.on_error = on_error  # (exporter, rows) when a write fails
        self.file_sinks = file_sinks
        self.fold = fold  # names as the captures show them (limits.KeyLimits.fold_batch)
        self.parquet: dict[str, ParquetPartWriter] | None = None
        self.compaction: RunningCompaction | None = None
        self.capframex: CapFrameXWriter | None = None
        self.raw_marks: list[StageMark] = []
        # Spans measured whole: their two ends are raw marks (replay finds the span again),
        # made into rows from the spans at the flush; two mark objects a span cost ~180 B
        # more at a flood of 50,000 spans a second.
        self.measured: list[StageSpan] = []
        self._aligned: list[SpanBatch] = []  # until the next flush
        self._cx_power: dict[str, tuple[list[int], list[float]]] = {}
        self._raw_samples: dict[str, list] = {f.name: [] for f in SAMPLE_SCHEMA}

    def open(self) -> None:
        cfg = self.cfg
        p = cfg.parquet
        self.parquet = None
        if p.enabled:
            on_part = self._file_closed if self.file_sinks else None
            self.parquet = {
                name: ParquetPartWriter(directory, schema, p.part_rows, p.part_seconds,
                                        self.on_error, on_part=on_part)
                for name, directory, schema in (
                    ("aligned", self.session.aligned, aligned_schema(self.labels)),
                    ("marks", self.session.raw_marks, MARK_SCHEMA),
                    ("samples", self.session.raw_samples, SAMPLE_SCHEMA))}
            self.compaction = RunningCompaction(
                self.session.path, [w.directory for w in self.parquet.values()],
                p.compact_every_s, self._uploaded, time.monotonic)
        self.capframex = None
        if cfg.capframex.enabled:
            self.capframex = CapFrameXWriter(self.session.capframex, cfg.capframex.app,
                                             power_columns(self.labels),
                                             cfg.capframex.sample_time_ms,
                                             cfg.capframex.watch_dir or None, spill=True,
                                             on_error=self.on_error)

    def _uploaded(self) -> Callable[[str], bool]:
        """Which of the session's files the store has got: with uploads on, those the
        outbox saw go (a part not noted in it yet is not); with none, all."""
        if not self.file_sinks:
            return lambda relpath: True
        box = open_outbox(self.session.path)
        if box is None:
            return lambda relpath: False
        waiting = {p.relpath for p in box.pending()}
        return lambda relpath: box.known(relpath) and relpath not in waiting

    def _file_closed(self, path: Path) -> None:
        relpath = path.relative_to(self.session.path).as_posix()
        for sink in self.file_sinks:
            sink.file_closed(relpath)

    def add_sample(self, rec: Sample) -> None:
        # A BENCHLAB sample holds ~110 values: bulk list operations keep its cost flat.
        raw = self._raw_samples
        n = len(rec.values)
        raw["ts_ns"].extend(repeat(rec.ts_ns, n))
        raw["source"].extend(repeat(rec.source, n))
        raw["sensor"].extend(rec.values)
        raw["value"].extend(rec.values.values())
        raw["rtt_ns"].extend(repeat(rec.rtt_ns, n))
        raw["uncertain"].extend(repeat(rec.uncertain, n))

    def add_power(self, label: str, ts_ns: int, value: float) -> None:
        """A power source's reading, for the captures' power columns."""
        if self.capframex is not None and self.power_kinds[label] == "power":
            ts_list, v_list = self._cx_power.setdefault(label, ([], []))
            ts_list.append(ts_ns)
            v_list.append(value)

    def add_spans(self, done: SpanBatch) -> None:
        self._aligned.append(done)

    def flush(self) -> None:
        if self._aligned:
            batch = SpanBatch.concat(self._aligned)
            table = spans_to_table(batch, self.timebase, self.labels)
            self._aligned = []
            if self.parquet:
                self.parquet["aligned"].export(table)
            if self.capframex:
                table = self._capture_names(table, batch)
                if table["request_id"].null_count < table.num_rows:
                    # LLM requests are not frames: no capture (docs/llm-serving.md)
                    table = table.filter(pc.is_null(table["request_id"]))
                self.capframex.export(table)
        if self.capframex is not None:
            for label, (ts, v) in self._cx_power.items():
                if ts:
                    self.capframex.add_power(label, np.array(ts, np.int64), np.array(v))
            self._cx_power = {}
        self._flush_raw()

    def _flush_raw(self) -> None:
        if self.parquet is None:
            self.raw_marks.clear()
            self.measured.clear()
            for v in self._raw_samples.values():
                v.clear()
            return
        if self.raw_marks:
            self.parquet["marks"].export(marks_to_table(self.raw_marks, self.timebase))
            self.raw_marks.clear()
        if self.measured:
            self.parquet["marks"].export(span_ends_to_table(self.measured, self.timebase))
            self.measured.clear()
        raw = self._raw_samples
        if raw["ts_ns"]:
            ts = np.asarray(raw["ts_ns"], np.int64)
            raw["ts_unix_ns"] = ts + self.timebase.offset_ns
            raw["ts_ns"] = ts
            self.parquet["samples"].export(pa.table(raw, schema=SAMPLE_SCHEMA))
            self._raw_samples = {f.name: [] for f in SAMPLE_SCHEMA}
        for w in self.parquet.values():
            w.tick()
        if self.compaction is not None:
            self.compaction.tick()

    def _capture_names(self, table: pa.Table, batch: SpanBatch) -> pa.Table:
        """The rows with the pipeline and pair a capture is kept under: a capture per
        (pipeline, pair) is memory, so past the bounds they are folded; the stream column
        is the rows' own."""
        shown = self.fold(batch)
        if shown is batch:
            return table
        codes, names = shown.names()
        taken = pa.array(codes)
        for i in (0, 2, 3):  # pipeline, stage_from, stage_to
            col = ("pipeline", "stream", "stage_from", "stage_to")[i]
            table = table.set_column(table.schema.get_field_index(col), col, pa.array(
                [k[i] for k in names], pa.string()).take(taken))
        return table

    def closing_steps(self) -> list[tuple[str, Any]]:
        """(what, how) to close the files, each step on its own: Parquet, then captures."""
        steps = [(f"closing Parquet {name} in {w.directory}", w.shutdown)
                 for name, w in (self.parquet or {}).items()]
        if self.compaction is not None:
            steps.insert(0, ("ending the compaction in progress", self.compaction.shutdown))
        if self.capframex is not None:
            steps.append((f"writing CapFrameX captures in {self.capframex.directory}",
                          self.capframex.shutdown))
        return steps

    @property
    def captures_written(self) -> list[Path]:
        return list(self.capframex.files_written) if self.capframex else []
