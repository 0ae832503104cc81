"""A session's upload outbox: the files still to go to the object store.

``<session>/.upload-outbox.jsonl``, a journal of JSON lines appended and never rewritten::

    {"outbox": 1, "store": "s3://b/p", "endpoint": "", "node": "n1", "date": "2026-12-03",
     "session": "ID"}                                   the first line: where it all goes
    {"add": "aligned/part-000001.parquet", "n": 1764...}  a file closed (n: unique, its time)
    {"done": "aligned/part-000001.parquet", "n": 1764..., "bytes": 12345}
    {"gone": "aligned/part-000001.parquet", "n": 1764...}  removed locally before it went

A file is pending while its latest ``add`` has no ``done`` (or ``gone``) with the same
``n``: a file added again while it was uploading (``session.json`` at the end) goes again.
The file is the only truth: the agent, ``report`` and ``recover`` append to it, and every
reader applies the lines it has not seen. A line a crash tore is skipped. Appends are single
``write`` calls on an ``O_APPEND`` descriptor, so writers in several processes never
interleave a line. The store's key of each file is fixed by the first line
(``store.object_name``), so a retry or a restart writes the same key.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTBOX_NAME = ".upload-outbox.jsonl"


@dataclass
class Pending:
    relpath: str
    n: int  # the add's time (ns): how long it has waited, and which add a done answers


@dataclass
class Outbox:
    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    _added: dict[str, int] = field(default_factory=dict)  # every file ever added: its last n
    # what waits (kept as the lines come, so a long session's journal of thousands of
    # settled files costs nothing to ask)
    _pending: dict[str, int] = field(default_factory=dict)
    _offset: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, session_path: Path, header: dict[str, Any]) -> Outbox:
        path = Path(session_path) / OUTBOX_NAME
        if not path.exists():
            _append(path, {"outbox": 1, **header})
        box = cls.open(session_path)
        if not box.header:  # the first line was torn by a crash: it is written again
            _append(path, {"outbox": 1, **header})
            box.refresh()
        return box

    @classmethod
    def open(cls, session_path: Path) -> Outbox:
        box = cls(Path(session_path) / OUTBOX_NAME)
        box.refresh()
        return box

    @property
    def session_path(self) -> Path:
        return self.path.parent

    def refresh(self) -> None:
        """Apply the lines appended since the last look (by any process)."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset)
                    data = fh.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1  # a line still being written waits for its end
            for line in data[:end].splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # torn by a crash mid-append; the next line starts whole
                if not isinstance(entry, dict):
                    continue
                if "outbox" in entry and not self.header:
                    self.header = entry
                elif isinstance(entry.get("add"), str):
                    self._added[entry["add"]] = self._pending[entry["add"]] = \
                        int(entry.get("n", 0))
                else:
                    for key in ("done", "gone"):
                        path = entry.get(key)
                        if isinstance(path, str) and self._pending.get(path) == entry.get("n"):
                            del self._pending[path]
            self._offset += end

    def add(self, relpath: str) -> None:
        _append(self.path, {"add": relpath, "n": time.time_ns()})
        self.refresh()

    def done(self, item: Pending, nbytes: int) -> None:
        _append(self.path, {"done": item.relpath, "n": item.n, "bytes": nbytes})
        self.refresh()

    def gone(self, item: Pending) -> None:
        _append(self.path, {"gone": item.relpath, "n": item.n})
        self.refresh()

    def known(self, relpath: str) -> bool:
        with self._lock:
            return relpath in self._added

    def pending(self) -> list[Pending]:
        """Files still to go, oldest first."""
        with self._lock:
            items = [Pending(p, n) for p, n in self._pending.items()]
        return sorted(items, key=lambda i: i.n)

    def pending_bytes(self) -> int:
        total = 0
        for item in self.pending():
            with contextlib.suppress(OSError):
                total += (self.session_path / item.relpath).stat().st_size
        return total


def _append(path: Path, entry: dict[str, Any]) -> None:
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        # A torn last line (a crash mid-append) must not swallow this one.
        if os.fstat(fd).st_size and _last_byte(path) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def open_outbox(session_path: Path) -> Outbox | None:
    """The session's outbox, or None when it was recorded without uploads."""
    return Outbox.open(session_path) if (Path(session_path) / OUTBOX_NAME).exists() else None


def outboxes(data_root: str | Path) -> list[Path]:
    """Every session folder under ``data_root`` that has an outbox."""
    root = Path(data_root) / "sessions"
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob(f"*/{OUTBOX_NAME}")
                  if not p.parent.is_symlink())
