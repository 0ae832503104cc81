"""Compaction: many closed Parquet parts of one kind become one, and no reader sees half of
it or a row twice.

The compacted part is written in a sibling folder, ``<kind>.compact.tmp``, beside the
folder it replaces parts of. That folder is then given every other entry of the live one
as a hard link (later parts, the journal in progress, which the writer keeps appending to
through its open descriptor: a link is the same file), and the two folders are swapped with
one ``renameat2(RENAME_EXCHANGE)``. A reader lists either the old parts or the compacted
one with the rest, never both; the old parts, now in ``.compact.tmp``, are removed after.
A crash at any point leaves only a ``.compact.tmp`` folder, garbage either way, removed
next time (and by ``recover``).

- A **finished** session (retention, ``compact_folder``) has every part compacted into
  ``part-000000.parquet``.
- A **running** session (the agent's own, ``RunningCompaction``) has the parts closed since
  the last compaction compacted every ``[parquet] compact_every_s`` (an hour) into
  ``part-FIRST-LAST.parquet``, which names the parts it replaces. Only parts the upload
  outbox no longer waits for are taken: the store already has them under their own names,
  so the compacted part stays local (``recover`` never queues a range part) and the store
  ends with each row once. Its rows are written part by part (one part in memory), on a
  thread of its own; only the swap, a few hundred links, runs on the agent's loop, between
  two writes of the session's files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from otel_benchlab.agent.heap import return_freed_memory
from otel_benchlab.session.journal import JOURNAL_NAME, PART_NAME

log = logging.getLogger("otel_benchlab")

COMPACT_SUFFIX = ".compact.tmp"
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


def staging_folder(folder: Path) -> Path:
    return folder.with_name(folder.name + COMPACT_SUFFIX)


def remove_stale(folder: Path) -> None:
    """What a crash mid-compaction left beside ``folder``."""
    stale = staging_folder(folder)
    if stale.exists() and not stale.is_symlink():
        shutil.rmtree(stale, ignore_errors=True)


def write_compacted(target: Path, parts: list[Path],
                    cancelled: Callable[[], bool] = lambda: False) -> int:
    """``parts`` as one Parquet file at ``target``, a part at a time (row groups as they
    were), under a temporary name, fsynced, then renamed; returns its rows."""
    import pyarrow.parquet as pq  # here: 8 MB the agent carries only once it compacts

    from otel_benchlab.exporters.parquet import parquet_file

    schema = pq.read_schema(parts[0])
    rows = 0
    with parquet_file(target, schema) as writer:
        for p in parts:
            if cancelled():
                raise InterruptedError("compaction cancelled")
            table = pq.read_table(p)
            writer.write_table(table.cast(schema) if table.schema != schema else table)
            rows += table.num_rows
    return rows


def swap_in(folder: Path, staged: Path, replaced: set[str]) -> None:
    """Give ``staged`` every entry of ``folder`` but ``replaced`` (as hard links), then
    exchange the two folders; ``staged`` then holds the replaced parts, to be removed."""
    for entry in os.scandir(folder):
        if entry.name not in replaced and not (staged / entry.name).exists():
            os.link(entry.path, staged / entry.name, follow_symlinks=False)
    dir_fd = os.open(folder.parent, os.O_RDONLY)
    try:
        exchange(staged, folder)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def compact_folder(folder: Path, dry_run: bool = False) -> int:
    """A finished session's ``folder``: every part into ``part-000000.parquet``; returns how
    many parts it replaced (0: none)."""
    if not dry_run:
        remove_stale(folder)
    if not folder.is_dir() or folder.is_symlink():
        return 0
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) < 2 or any(folder.glob(".journal-*")) or any(folder.glob(".*.tmp")):
        return 0
    if dry_run:
        return len(parts)
    staged = staging_folder(folder)
    staged.mkdir()
    write_compacted(staged / "part-000000.parquet", parts)
    swap_in(folder, staged, {p.name for p in parts})
    shutil.rmtree(staged)  # now the old parts
    return len(parts)


def part_range(name: str) -> tuple[int, int] | None:
    """(first, last) part number a part's name covers: ``part-N`` is (N, N)."""
    m = PART_NAME.match(name)
    if m is None:
        return None
    first = int(m.group(1))
    return first, int(m.group(2) or first)


def compactable(folder: Path, settled: Callable[[str], bool]) -> list[Path]:
    """The closed single parts of ``folder``, oldest first, up to the first that is not
    ``settled`` (the upload outbox has not seen it go) or still has its journal."""
    journals = {int(m.group(1)) for e in os.scandir(folder)
                if (m := JOURNAL_NAME.match(e.name))}
    singles = sorted((int(m.group(1)), folder / e.name) for e in os.scandir(folder)
                     if (m := PART_NAME.match(e.name)) and m.group(2) is None)
    out = []
    for number, path in singles:
        if number in journals or not settled(path.name):
            break
        out.append(path)
    return out


class RunningCompaction:
    """The agent's own session: every ``every_s`` the parts each writer closed since the
    last time become one. ``tick`` is called from the agent's loop, which is also the only
    thread that writes the folders, so the swap never meets a part being written."""

    def __init__(self, session_path: Path, folders: list[Path], every_s: float,
                 uploaded: Callable[[], Callable[[str], bool]],
                 clock: Callable[[], float]) -> None:
        self.session_path = session_path
        self.folders = folders
        self.every_s = every_s
        # asked once a round: which files (paths in the session) the store has got
        self.uploaded = uploaded
        self.clock = clock
        self._due = clock() + every_s
        self._job: threading.Thread | None = None
        self._staged: list[tuple[Path, Path, set[str]]] = []  # (folder, staged, replaced)
        self._cancel = threading.Event()
        self._failed = False
        self.parts_replaced = 0
        self.compactions = 0

    def tick(self) -> None:
        if self.every_s <= 0 or self._failed:
            return
        if self._job is not None:
            if self._job.is_alive():
                return
            self._job = None
            self._swap_all()
        if self.clock() >= self._due:
            self._due = self.clock() + self.every_s
            self._start()

    def _start(self) -> None:
        uploaded = self.uploaded()
        work = []
        for folder in self.folders:
            if not folder.is_dir():
                continue
            rel = folder.relative_to(self.session_path).as_posix()
            parts = compactable(folder, lambda name, rel=rel: uploaded(f"{rel}/{name}"))
            if len(parts) >= 2:
                work.append((folder, parts))
        if work:
            self._job = threading.Thread(target=self._stage, args=(work,),
                                         name="compaction", daemon=True)
            self._job.start()

    def _stage(self, work: list[tuple[Path, list[Path]]]) -> None:
        for folder, parts in work:
            staged = staging_folder(folder)
            try:
                remove_stale(folder)
                staged.mkdir()
                first, last = part_range(parts[0].name)[0], part_range(parts[-1].name)[1]
                write_compacted(staged / f"part-{first:06d}-{last:06d}.parquet", parts,
                                self._cancel.is_set)
            except InterruptedError:
                shutil.rmtree(staged, ignore_errors=True)
                return
            except Exception as exc:  # compaction must never stop the agent
                shutil.rmtree(staged, ignore_errors=True)
                log.warning("cannot compact the parts of %s: %s; they stay as they are "
                            "(tried again in %.0f s)", folder, exc, self.every_s)
                continue
            self._staged.append((folder, staged, {p.name for p in parts}))
        # An hour of parts went through the heap: hand it back, or RSS keeps the peak.
        return_freed_memory()

    def _swap_all(self) -> None:
        staged, self._staged = self._staged, []
        for folder, tmp, replaced in staged:
            try:
                swap_in(folder, tmp, replaced)
            except OSError as exc:
                # e.g. a file system without hard links or renameat2: said once, then off
                log.warning("cannot swap the compacted parts of %s in: %s; this session's "
                            "parts are compacted when it has ended (retention) instead",
                            folder, exc)
                self._failed = True
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            self.compactions += 1
            self.parts_replaced += len(replaced)
            shutil.rmtree(tmp, ignore_errors=True)  # the old parts: an hour's, milliseconds

    def settle(self, timeout: float = 60.0) -> None:
        """Wait for the compaction in progress and swap it in now (tests, benchmarks)."""
        if self._job is not None:
            self._job.join(timeout)
            self.tick()

    def shutdown(self) -> None:
        """An unfinished compaction is dropped: the session is compacted when it has
        ended, as every finished session is."""
        self._cancel.set()
        if self._job is not None:
            self._job.join(timeout=30)
        for _, tmp, _ in self._staged:
            shutil.rmtree(tmp, ignore_errors=True)
        self._staged = []
