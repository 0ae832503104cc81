"""Replay: the same processors over a stored session, for any stage pairs, after the fact.

Vectorised and a round at a time (``replay_aligned``): marks are read in chunks, paired by
frame id as arrays, measured and shared out, and each round's rows are written as they are
done, so a session of any length replays in the memory of a round. The Parquet parts are
written on a thread of their own, beside the next round's work, and the CapFrameX
captures, a million frames a file at most, are kept on disk until written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.exporters.parquet import PartStream
from otel_benchlab.receivers.stored import (
    StoredSession,
    mark_chunks,
    open_session,
    rows_range,
)
from otel_benchlab.session.replay_aligned import (
    ROUND_MARKS,
    Pairing,
    aligned_tables,
    power_labels,
)
from otel_benchlab.session.schema import aligned_schema, power_columns
from otel_benchlab.session.window import resolve
from otel_benchlab.settings import ConfigError

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger(__name__)

CAPTURE_FRAMES = 300_000  # frames a CapFrameX file at most
PART_ROWS = 1_000_000  # aligned rows a Parquet part


@dataclass
class ReplayResult:
    out: Path
    marks: int
    seconds: float
    spans: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    idless_marks: int = 0
    # Per power source: the meter's energy over the spans' time, attributed and idle J.
    energy_j: dict[str, dict[str, float]] = field(default_factory=dict)

    def report(self) -> list[str]:
        rate = self.marks / self.seconds if self.seconds > 0 else 0.0
        lines = [f"replayed {self.marks} marks in {self.seconds:.2f} s ({rate:,.0f} marks/s) "
                 f"into {self.out}"]
        for pair, n in self.spans.items():
            un = ", ".join(f"{k} {v}" for k, v in self.unpaired.get(pair, {}).items() if v)
            lines.append(f"  {pair}: {n} spans" + (f"; unpaired: {un}" if un else ""))
        for where, n in self.rejected.items():
            lines.append(f"  skipped {n} bad records in {where}")
        if self.idless_marks:
            lines.append(f"  {self.idless_marks} marks had no frame id and were paired by "
                         "order: reliable only for stages shorter than one frame interval")
        for label, e in self.energy_j.items():
            lines.append(f"  energy {label}: {e['total']:.1f} J from the first span's start "
                         f"to the last one's end = {e['attributed']:.1f} J attributed to "
                         f"spans + {e['idle']:.1f} J idle")
        return lines


def replay_session(session_dir: str | Path, cfg: Config,
                   pairs: list[tuple[str, str]] | None = None, out: str | Path | None = None,
                   force: bool = False, since: str | None = None,
                   until: str | None = None, round_marks: int = ROUND_MARKS) -> ReplayResult:
    """``since``/``until``: only the marks of that window (``session.window``); a frame
    whose marks it cuts in two is unpaired."""
    t0 = time.perf_counter()
    session_dir = Path(session_dir)
    window = None
    if since is not None or until is not None:
        window = resolve(since, until, marks_range(session_dir), str(session_dir))
    try:
        stored = open_session(session_dir, window)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    pairs = pairs or stored.pairs or cfg.pair_tuples()
    out_dir = Path(out) if out else session_dir / "replay"
    _prepare_out(out_dir, force, named=out is not None)
    labels = power_labels(stored, cfg)
    found = Pairing()
    output = _Output(out_dir, labels, stored, cfg)
    try:
        for table in aligned_tables(stored, mark_chunks(session_dir, window, stored.rejected),
                                    pairs, cfg, found, round_marks):
            output.write(table)
        output.close()
    except BaseException:
        output.abandon()
        raise
    result = ReplayResult(out_dir, found.marks, 0.0, spans=found.spans,
                          unpaired=found.unpaired, rejected=dict(stored.rejected),
                          files=output.files, idless_marks=found.idless_marks,
                          energy_j=found.energy_j)
    problem = _missing_stage(session_dir, found, pairs, stored.rejected)
    if problem:
        output.remove()
        raise ConfigError(problem)
    if found.late:
        log.warning("%s: %d spans began more than %.0f s before marks read earlier (the "
                    "session's files out of order): they keep their while-it-ran energy but "
                    "get no attributed share", session_dir, found.late,
                    cfg.pair_window_s + 1)
    (out_dir / OUTPUT_LIST).write_text(json.dumps(
        [str(p.relative_to(out_dir)) for p in result.files]))
    result.seconds = time.perf_counter() - t0
    return result


def marks_range(session_dir: Path) -> tuple[int, int] | None:
    """The marks' time range: their parts' statistics, or a seed session's lines read."""
    marks_dir = session_dir / "raw" / "marks"
    if marks_dir.is_dir():
        return rows_range(marks_dir, "ts_unix_ns")
    lo = hi = None
    for t in mark_chunks(session_dir, None, {}):
        mm = pc.min_max(t["ts_ns"])
        lo = mm["min"].as_py() if lo is None else min(lo, mm["min"].as_py())
        hi = mm["max"].as_py() if hi is None else max(hi, mm["max"].as_py())
    return None if lo is None else (lo, hi)


def _missing_stage(session_dir: Path, found: Pairing, pairs: list[tuple[str, str]],
                   rejected: dict[str, int]) -> str | None:
    if not found.marks:
        return f"{session_dir}: no stage marks to replay" + (
            f" (skipped: {rejected})" if rejected else "")
    for a, b in pairs:
        for stage in (a, b):
            if stage not in found.stages:
                return (f"{session_dir}: stage {stage!r} (pair {a}->{b}) does not occur in "
                        f"the session; its stages are {', '.join(sorted(found.stages))}")
    return None


class _Output:
    """Aligned Parquet parts of ``PART_ROWS`` (a row group a round's table) and CapFrameX
    captures of ``CAPTURE_FRAMES``, written on a thread of their own while the next round
    runs."""

    def __init__(self, out_dir: Path, labels: list[str], stored: StoredSession,
                 cfg: Config) -> None:
        self.out_dir = out_dir
        self.parquet = PartStream(out_dir / "aligned", aligned_schema(labels), PART_ROWS)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._writing: Future | None = None
        self.cx = None
        if cfg.capframex.enabled:
            self.cx = CapFrameXWriter(out_dir / "capframex", cfg.capframex.app,
                                      power_columns(labels), cfg.capframex.sample_time_ms,
                                      cfg.capframex.watch_dir or None,
                                      max_frames=CAPTURE_FRAMES)
            for label, (kind, ts, v) in stored.power.items():
                if kind == "power":
                    self.cx.add_power(label, ts, v)
        self.files: list[Path] = []

    def write(self, table: pa.Table) -> None:
        if self._writing is not None:
            self._writing.result()  # one table in writing at a time: bounded memory
        self._writing = self._pool.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        self.parquet.write(table)
        if self.cx is not None:
            self.cx.export(table)

    def close(self) -> None:
        if self._writing is not None:
            self._writing.result()
        self._pool.shutdown()
        self.parquet.close()
        if self.cx is not None:
            self.cx.shutdown()
        self.files = list(self.parquet.parts)
        if self.cx is not None:
            self.files += self.cx.files_written

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.parquet.abandon()

    def remove(self) -> None:
        for p in self.files:
            p.unlink(missing_ok=True)


OUTPUT_LIST = ".replay-files.json"  # what replay wrote: all that --force may remove


def _prepare_out(out_dir: Path, force: bool, named: bool) -> None:
    """Make the output folders, never through a link the user did not name (a link at
    SESSION/replay, or at aligned/ or capframex/ inside the output), and with ``force``
    remove only the files an earlier replay listed as its own."""
    if out_dir.is_symlink() and not named:
        raise ConfigError(f"{out_dir} is a symbolic link (to {os.readlink(out_dir)}); replay "
                          "does not write through links it was not given: remove it, or name "
                          "the place with --out DIR")
    for sub in ("aligned", "capframex"):
        if (out_dir / sub).is_symlink():
            raise ConfigError(f"{out_dir / sub} is a symbolic link; replay does not write "
                              "through it: remove it or choose another --out")
    listed = out_dir / OUTPUT_LIST
    if force and listed.is_file() and not listed.is_symlink():
        try:
            names = json.loads(listed.read_text())
        except ValueError:
            names = []
        for name in names if isinstance(names, list) else []:
            p = out_dir / str(name)
            # Only plain files directly in our two folders: a listed name cannot reach out.
            if p.parent.name in ("aligned", "capframex") and p.parent.parent == out_dir and \
                    p.is_file() and not p.is_symlink():
                p.unlink()
        listed.unlink()
    old = list((out_dir / "aligned").glob("*.parquet")) if (out_dir / "aligned").is_dir() \
        else []
    if old:
        raise ConfigError(f"{out_dir / 'aligned'} holds Parquet files"
                          + (" that replay did not write; it leaves them" if force else
                             " of an earlier replay; use --force to replace them")
                          + ", or choose another --out")
    for sub in ("aligned", "capframex"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


