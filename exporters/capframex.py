"""CapFrameX captures: one CSV and one JSON per (pipeline, stage pair).

Follows CapFrameX's importer (docs/sessions-and-files.md): the CSV header starts with
``Application`` and carries PresentMon 1.x columns; the stage latency is the frame time
(``MsBetweenPresents``); power and energy per source are extra columns CapFrameX ignores
but keeps: ``Power_<source>_W`` and ``Energy_<source>_J``, the frame's attributed share of
the source, the energy per frame that adds up over frames and stages (the while-it-ran
figure stays in the aligned Parquet). The JSON is
CapFrameX's own capture format; measured power goes into the ``PmdCpuPower`` /
``PmdGpuPower`` / ``PmdSystemPower`` arrays, which CapFrameX plots at ``i * SampleTime`` ms
from the start of the capture, so we resample the power series onto that grid. Files are
written under a temporary name that CapFrameX ignores and renamed when complete; a capture
with too few frames for CapFrameX (it needs over 20 lines) is skipped with a log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.agent.heap import return_freed_memory
from otel_benchlab.components import Component
from otel_benchlab.exporters.capframex_format import (
    PMD_ARRAYS,
    Frames,
    attributed_column,
    csv_pieces,
    json_document,
    json_pieces,
    safe_name,
)
from otel_benchlab.exporters.decimal_text import Decimals
from otel_benchlab.session.temp_files import open_temp


@dataclass
class CapFrameXConfig:
    # write a CapFrameX capture per pair
    enabled: bool = True
    # the captures' Application name (CX_APP)
    app: str = "otel-benchlab"
    watch_dir: str = ""  # also copy finished files here (CapFrameX's capture folder)
    sample_time_ms: int = 100  # Pmd* power array spacing in the JSON


log = logging.getLogger(__name__)

MIN_ROWS = 20  # CapFrameX wants more than 20 lines: a header and at least 20 rows
WRITE_THREADS = min(4, os.cpu_count() or 1)



def _groups(table: pa.Table, names: list[str]) -> Iterator[tuple[tuple[str, ...], np.ndarray]]:
    """Row indices of each distinct combination of ``names``, in order of first row."""
    columns = [table[name] for name in names]
    if table.num_rows and all(c.null_count == 0 and pc.all(pc.equal(c, c[0])).as_py()
                              for c in columns):
        # One group (a replayed pair): no encoding, no sorting.
        yield tuple(c[0].as_py() for c in columns), np.arange(table.num_rows)
        return
    codes = np.zeros(table.num_rows, np.int64)
    dictionaries = []
    for column in columns:
        enc = pc.dictionary_encode(column.combine_chunks())
        dictionaries.append(enc.dictionary.to_pylist())
        codes = codes * len(enc.dictionary) + enc.indices.to_numpy(zero_copy_only=False)
    uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    by_group = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))
    for g in np.argsort(first, kind="stable").tolist():
        rest, key = int(uniq[g]), []
        for d in reversed(dictionaries):
            rest, i = divmod(rest, len(d))
            key.append(d[i])
        yield tuple(reversed(key)), by_group[(bounds[g - 1] if g else 0):bounds[g]]


class CapFrameXWriter:
    """Captures are sorted by start time when written (at rollover every ``max_frames``
    and at shutdown). Until then a live agent keeps each capture's rows in a hidden Arrow
    IPC file in the capture folder (``spill=True``), not in memory, so a long session costs
    no memory for them; replay, which has everything at hand, keeps them in memory. Power
    samples are kept only as far back as a pending capture needs.

    A failed write (full disk) is counted through ``on_error`` and logged once naming the
    file; the capture stays pending and its next write makes it whole. What a stopped
    agent could never write stays in the hidden files, and ``replay`` makes it again."""

    POWER_KEEP_NS = 30_000_000_000  # with no capture pending: spans never start earlier

    def __init__(self, directory: Path, app: str, power_columns: list[tuple[str, str, str]],
                 sample_time_ms: int = 100, watch_dir: str | Path | None = None,
                 max_frames: int = 100_000, spill: bool = False,
                 on_error: Callable[[str, int], None] | None = None) -> None:
        self.directory = Path(directory)
        self.app = safe_name(app)
        self.power_columns = power_columns
        self.sample_time_ms = sample_time_ms
        self.watch_dir = Path(watch_dir) if watch_dir else None
        self.max_frames = max_frames
        self.spill = spill
        self._on_error = on_error or (lambda what, n: None)
        self._names = ["start_ns", "end_ns", "latency_ms"] + [
            c for _, mean_col, energy_col in power_columns
            for c in (mean_col, attributed_column(energy_col))]
        self._pending: dict[tuple[str, str, str], _Pending] = {}
        self._parts: dict[tuple[str, str, str], int] = {}
        self._stems: dict[tuple[str, str, str], str] = {}
        self._power: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._failing = False
        self._retry_at: dict[tuple[str, str, str], int] = {}  # rows, after a failed write
        self._spills = 0
        self.files_written: list[Path] = []

    def add_power(self, label: str, ts_ns: np.ndarray, watts: np.ndarray) -> None:
        if label in PMD_ARRAYS:
            self._power.setdefault(label, []).append(
                (np.asarray(ts_ns, np.int64), np.asarray(watts, np.float64)))

    def export(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        cols = table.select(self._names + ["frame", "stream"])
        for k, idx in _groups(table, ["pipeline", "stage_from", "stage_to"]):
            part = cols.take(pa.array(idx)) if len(idx) < table.num_rows else cols
            pending = self._pending.get(k)
            if pending is None:
                self._spills += 1
                pending = self._pending[k] = _Pending(
                    self.directory / f".pending-{self._spills}-{self._stem(k)}.arrows"
                    if self.spill else None)
            try:
                pending.add(part)
            except (OSError, pa.ArrowException) as exc:
                # A torn file takes nothing more: this capture starts again (replay makes
                # the whole one from the Parquet files).
                self._failed(pending.path, pending.rows + part.num_rows, exc)
                pending.discard()
                del self._pending[k]
                continue
            if pending.rows >= max(self.max_frames, self._retry_at.get(k, 0)):
                self._write_groups([k])
        self._trim_power()

    def force_flush(self) -> bool:
        return True  # captures are written whole, at rollover and at shutdown

    def shutdown(self) -> None:
        self._write_groups(list(self._pending))

    # -- keeping what is pending -----------------------------------------------------
    def _stem(self, key: tuple[str, str, str]) -> str:
        """A file stem per capture, unique even where sanitising makes two names equal
        (``a/b`` and ``a_b``): a later one gets ``_2``, ``_3`` ..."""
        stem = self._stems.get(key)
        if stem is None:
            pipeline, a, b = key
            base = stem = f"{safe_name(pipeline)}_{safe_name(a)}_to_{safe_name(b)}"
            n = 1
            while stem in self._stems.values():
                n += 1
                stem = f"{base}_{n}"
            self._stems[key] = stem
        return stem

    def _trim_power(self) -> None:
        """Drop power samples no pending or future capture can need."""
        starts = [p.first_start for p in self._pending.values() if p.rows]
        newest = max((c[-1][0][-1] for c in self._power.values() if c and len(c[-1][0])),
                     default=None)
        if newest is None:
            return
        keep_from = min(starts) - self.sample_time_ms * 1_000_000 if starts else \
            int(newest) - self.POWER_KEEP_NS
        for label, chunks in self._power.items():
            self._power[label] = [c for c in chunks if len(c[0]) and c[0][-1] >= keep_from]

    def _failed(self, path: Path | None, rows: int, exc: Exception) -> None:
        self._on_error("capframex", rows)
        if not self._failing:
            log.error("CapFrameX: cannot write %s: %s; free space (captures will be "
                      "incomplete; replay makes them again from the Parquet files)", path, exc)
            self._failing = True

    # -- writing ---------------------------------------------------------------------
    def _write_groups(self, keys: list[tuple[str, str, str]]) -> None:
        """Write these captures, in parallel (the formatting is Arrow and numpy work that
        runs outside the GIL), each capture's CSV and then its JSON: a 100,000-frame
        rollover peaked 9 MB higher with its two files made side by side, no faster."""
        ready = [c for c in map(self._prepare, keys) if c is not None]
        if not ready:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            for c in ready:
                self._keep_for_retry(c, exc)
            return
        with ThreadPoolExecutor(max_workers=min(len(ready), WRITE_THREADS)) as pool:
            outcomes = list(pool.map(self._write_files, ready))
        failed = {id(c): exc for c, exc in zip(ready, outcomes, strict=True) if exc}
        for c in ready:
            c.table, c.columns, c.frames = None, {}, None
            if id(c) in failed:
                self._keep_for_retry(c, failed[id(c)])
                continue
            self._retry_at.pop(c.key, None)
            self._parts[c.key] = c.part
            c.pending.discard()
            self.files_written += [c.csv_path, c.json_path]
            for p in (c.csv_path, c.json_path):
                if self.watch_dir is not None:
                    self._copy_to_watch_dir(p)
        del ready
        return_freed_memory()

    def _keep_for_retry(self, c: _Capture, exc: OSError) -> None:
        """A capture that could not be written (a full disk) stays pending, rows and all:
        its next write, one rollover's worth of frames later or at shutdown, makes the
        whole capture. Frames that arrive meanwhile join it (a later part of its hidden
        file); at exit the hidden files keep what was never written, for replay."""
        self._failed(c.csv_path, c.rows, exc)
        c.pending.keep_for_retry()
        self._pending[c.key] = c.pending
        self._retry_at[c.key] = c.pending.rows + self.max_frames

    def _prepare(self, key: tuple[str, str, str]) -> _Capture | None:
        pending = self._pending.pop(key, None)
        if pending is None or not pending.rows:
            if pending is not None:
                pending.discard()
            return None
        try:
            table = pending.table()
        except (OSError, pa.ArrowException) as exc:
            self._failed(pending.path, pending.rows, exc)
            return None
        if table.num_rows < MIN_ROWS:
            log.warning("CapFrameX capture %s %s->%s skipped: %d frames, CapFrameX needs at "
                        "least %d", *key, table.num_rows, MIN_ROWS)
            pending.discard()
            return None
        start = table["start_ns"].to_numpy()
        if len(start) > 1 and not (start[1:] >= start[:-1]).all():  # sorted: no copy
            table = table.take(pa.array(np.argsort(start, kind="stable")))
        part = self._parts.get(key, 0) + 1
        stem = self._stem(key) + ("" if part == 1 else f"_part{part}")
        # Copies, not views: a view would keep the hidden file's whole record batches
        # (every column) in memory while the files are made (~10 MB a 100,000 frames).
        columns = {n: np.concatenate([c.to_numpy(zero_copy_only=False)
                                      for c in table[n].chunks]) for n in self._names}
        table = pa.table({n: pa.concat_arrays(table[n].chunks) for n in ("frame", "stream")})
        start = columns["start_ns"]
        # Frame times and latencies are written in both files: scaled, rounded and put
        # into text once, here, before the two files are made side by side.
        frames = Frames(Decimals((start - start[0]) / 1e9, 6),
                         Decimals(columns["latency_ms"], 4))
        return _Capture(key, pending, table, columns, frames, part,
                        self.directory / f"{stem}.csv", self.directory / f"{stem}.json")

    def _write_files(self, c: _Capture) -> OSError | None:
        try:
            _atomic_write(c.csv_path, csv_pieces(self.app, self.power_columns, c.table,
                                                 c.columns, c.frames))
            _atomic_write(c.json_path, json_pieces(json_document(
                self.app, self.sample_time_ms, c.key, c.columns, c.frames, self._power)))
        except OSError as exc:
            return exc
        return None

    def _copy_to_watch_dir(self, path: Path) -> None:
        assert self.watch_dir is not None
        try:
            self.watch_dir.mkdir(parents=True, exist_ok=True)
            fh, tmp = open_temp(self.watch_dir / path.name)
            try:
                with fh, open(path, "rb") as src:
                    shutil.copyfileobj(src, fh)
                os.replace(tmp, self.watch_dir / path.name)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.error("cannot copy %s to CapFrameX watch folder %s: %s", path.name,
                      self.watch_dir, exc)

@dataclass
class _Capture:
    """One capture on its way to its files."""

    key: tuple[str, str, str]
    pending: _Pending
    table: pa.Table | None  # sorted by start
    columns: dict[str, np.ndarray]  # its numeric columns, for both files
    frames: Frames | None
    part: int
    csv_path: Path
    json_path: Path

    @property
    def rows(self) -> int:
        return self.pending.rows


class _Pending:
    """One capture's rows until it is written: Arrow tables in memory, or appended to a
    hidden IPC stream file (``path``); after a failed write, later rows go to a file of
    their own beside the earlier ones (``_segments``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows = 0
        self.first_start = 0
        self._tables: list[pa.Table] = []
        self._segments: list[Path] = []
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def add(self, table: pa.Table) -> None:
        start = int(np.min(table["start_ns"].to_numpy()))
        self.first_start = start if not self.rows else min(self.first_start, start)
        if self.path is None:
            self._tables.append(table)
        else:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pa.ipc.new_stream(str(self.path), table.schema)
            self._writer.write_table(table)
        self.rows += table.num_rows

    def table(self) -> pa.Table:
        if self.path is None:
            return pa.concat_tables(self._tables)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        tables = []
        for path in [*self._segments, self.path]:
            if path.exists():
                with pa.OSFile(str(path), "rb") as fh:
                    tables.append(pa.ipc.open_stream(fh).read_all())
        return pa.concat_tables(tables)

    def keep_for_retry(self) -> None:
        """The rows stay; a closed hidden file takes no more, so later rows start the
        next one."""
        if self.path is not None and self.path.exists():
            self._segments.append(self.path)
            self.path = self.path.with_name(f"{self._segments[0].stem}.{len(self._segments)}"
                                            ".arrows")

    def discard(self) -> None:
        self._tables = []
        if self._writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._writer.close()
            self._writer = None
        for path in [*self._segments, self.path]:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)


def _atomic_write(path: Path, pieces: Iterable[bytes | pa.Buffer]) -> None:
    fh, tmp = open_temp(path)  # CapFrameX ignores names not ending .csv/.json
    try:
        with fh:
            for piece in pieces:
                fh.write(piece)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # no half-written file left behind
            tmp.unlink(missing_ok=True)
        raise


# Settings only: the runtime writes every session's captures.
COMPONENT = Component("capframex", "capframex", settings=CapFrameXConfig,
                      env={"CX_APP": "app"}, ranges={"sample_time_ms": (1, 60_000)})
