"""Retention and compaction of sessions under a data root.

- ``raw/`` of a session older than ``raw_keep_days`` is removed; a whole session older than
  ``days`` is removed. A session's age runs from its recorded end (``ended_at``), else from
  its newest file (a crashed session).
- Never a session still being written: one whose agent holds its lock, or that records no
  end and has a file changed in the last ``ACTIVE_GRACE_S``. Never anything outside the
  data root, never through a symlink (a symlinked session or folder is skipped, and
  removal never follows links).
- Never a session whose upload outbox still holds files (``outbox.py``): they may be the
  only copy; it says so, and when the session is past its limit, a warning.
- A finished session's Parquet parts are compacted into one part per kind
  (``compaction.py`` says how no reader sees a mix).

The ``retention`` command and the agent (every ``retention_interval_h``) run this code.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from otel_benchlab.fleet.outbox import open_outbox
from otel_benchlab.session.compaction import compact_folder
from otel_benchlab.session.folder import agent_alive, file_stats, newest_mtime, read_manifest

log = logging.getLogger("otel_benchlab")

ACTIVE_GRACE_S = 600.0
PART_DIRS = ("raw/marks", "raw/samples", "aligned")


@dataclass
class RetentionResult:
    dry_run: bool
    raw_removed: list[Path] = field(default_factory=list)
    sessions_removed: list[Path] = field(default_factory=list)
    compacted: list[tuple[Path, int]] = field(default_factory=list)  # (folder, parts before)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    freed_bytes: int = 0

    def report(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} raw data of {p.parent.name if p.name == 'raw' else p}: {p}"
               for p in self.raw_removed]
        out += [f"{verb} session {p}" for p in self.sessions_removed]
        out += [f"{'would compact' if self.dry_run else 'compacted'} {p} ({n} parts into 1)"
                for p, n in self.compacted]
        out += [f"kept {p}: {why}" for p, why in self.skipped]
        out.append(f"{'would free' if self.dry_run else 'freed'} "
                   f"{self.freed_bytes / 2**20:.1f} MiB")
        return out


def _size(path: Path) -> int:
    return sum(st.st_size for st in file_stats(path))


def _remove(path: Path) -> None:
    """Remove a real folder (never a link); rmtree does not follow links inside it."""
    if path.is_symlink():
        raise OSError(f"{path} is a symlink; not removed")
    shutil.rmtree(path)


def _ended_at(manifest: dict | None) -> float | None:
    text = (manifest or {}).get("ended_at")
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def apply_retention(data_root: str | Path, days: float, raw_keep_days: float,
                    dry_run: bool = False, compact: bool = True,
                    now: float | None = None) -> RetentionResult:
    now = time.time() if now is None else now
    result = RetentionResult(dry_run)
    root = Path(data_root) / "sessions"
    if not root.is_dir() or root.is_symlink():
        return result
    for entry in sorted(root.iterdir()):
        try:
            mode = os.lstat(entry).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            result.skipped.append((entry, "a symlink (never followed)"))
            continue
        if not stat.S_ISDIR(mode):
            continue
        try:
            _one_session(entry, days, raw_keep_days, dry_run, compact, now, result)
        except OSError as exc:
            result.skipped.append((entry, f"error: {exc}"))
            log.warning("retention: %s: %s", entry, exc)
    return result


def _one_session(path: Path, days: float, raw_keep_days: float, dry_run: bool,
                 compact: bool, now: float, result: RetentionResult) -> None:
    manifest = read_manifest(path)
    ended = _ended_at(manifest)
    if agent_alive(path):
        result.skipped.append((path, "an agent is writing it"))
        return
    box = open_outbox(path)
    waiting = box.pending() if box is not None else []
    if waiting:
        # Its files are the only copy of what the store has not got yet (and compaction
        # would rename the parts the outbox names).
        mib = box.pending_bytes() / 2**20
        result.skipped.append((path, f"{len(waiting)} files ({mib:.1f} MiB) still to upload "
                               f"to {box.header.get('store')}"))
        if ended is not None and (now - ended) / 86400 > min(days, raw_keep_days):
            log.warning("retention keeps %s past its limit: %d files (%.1f MiB) have not "
                        "reached %s yet (see the upload errors)", path, len(waiting), mib,
                        box.header.get("store"))
        return
    newest = newest_mtime(path)
    if ended is None and now - newest < ACTIVE_GRACE_S:
        result.skipped.append((path, "no end recorded and changed in the last "
                               f"{ACTIVE_GRACE_S / 60:.0f} minutes"))
        return
    age_days = (now - (ended if ended is not None else newest)) / 86400
    if age_days > days:
        result.freed_bytes += _size(path)
        result.sessions_removed.append(path)
        if not dry_run:
            _remove(path)
        return
    raw = path / "raw"
    if age_days > raw_keep_days and raw.is_dir() and not raw.is_symlink():
        result.freed_bytes += _size(raw)
        result.raw_removed.append(raw)
        if not dry_run:
            _remove(raw)
    if compact and ended is not None:
        for kind in PART_DIRS:
            folder = path / kind
            if folder.parent.is_symlink():
                continue
            before = _size(folder) if folder.is_dir() else 0
            n = compact_folder(folder, dry_run)
            if n:
                result.compacted.append((folder, n))
                if not dry_run:
                    result.freed_bytes += max(0, before - _size(folder))


class RetentionSchedule:
    """The agent's own retention: with per-node storage no CronJob reaches every node's
    data, so each agent prunes its data root every ``interval_h`` (first a minute after
    start), skipping its own session (its lock is held)."""

    def __init__(self, data_root: str, days: float, raw_keep_days: float,
                 interval_h: float, first_after_s: float = 60.0) -> None:
        self.args = (data_root, days, raw_keep_days)
        self.interval_s = interval_h * 3600
        self.first_after_s = first_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = self.first_after_s
        while not self._stop.wait(wait):
            wait = self.interval_s
            try:
                result = apply_retention(*self.args)
            except Exception as exc:  # retention must never stop the agent
                log.warning("retention failed: %s; tried again in %.0f h", exc,
                            self.interval_s / 3600)
                continue
            if result.raw_removed or result.sessions_removed or result.compacted:
                log.info("retention: %s", "; ".join(result.report()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
