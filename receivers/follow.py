"""Follow a growing text file the way ``tail -F`` does, line by line, for the file receivers
(``jsonl_tail``, ``log_pattern``).

- A partial last line waits until its newline arrives.
- Rotation by rename (logrotate's default): the old file is read to its end, and kept open
  for ``ROTATE_GRACE_S`` for a writer that has not reopened yet, then the new file is read
  from its start. Nothing is read twice or skipped.
- copytruncate: the file shrinks under us; reading starts again at its beginning.
- A file that does not exist yet is waited for (said once).
``-`` follows standard input instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from otel_benchlab.records import SensorInfo, StageMark

from . import Emit

log = logging.getLogger("otel_benchlab")

POLL_S = 0.1
ROTATE_GRACE_S = 1.0
MAX_LINE = 1 << 20  # a longer "line" is cut off and rejected, never held whole


class _Open:
    def __init__(self, path: str, from_start: bool) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self.fd)
        self.ino = (st.st_dev, st.st_ino)
        self.offset = 0 if from_start else st.st_size
        self.partial = b""
        self.discarding = False  # inside an over-long line


class FileFollower:
    """Calls ``on_line(bytes)`` for each complete line of ``path`` on its own thread;
    ``on_long_line()`` for each line over MAX_LINE (skipped)."""

    def __init__(self, path: str, on_line: Callable[[bytes], None],
                 on_long_line: Callable[[], None], from_start: bool = True,
                 name: str = "follow") -> None:
        self.path = path
        self.on_line = on_line
        self.on_long_line = on_long_line
        self.from_start = from_start
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        target = self._stdin if self.path == "-" else self._run
        self._thread = threading.Thread(target=target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self.path != "-":
            self._thread.join(timeout=5)

    # -- standard input ----------------------------------------------------------------
    def _stdin(self) -> None:
        stream = sys.stdin.buffer
        while not self._stop.is_set():
            line = stream.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                self.on_long_line()
                continue
            self.on_line(line.rstrip(b"\r\n"))

    # -- a file ------------------------------------------------------------------------
    def _read(self, f: _Open) -> None:
        size = os.fstat(f.fd).st_size
        if size < f.offset:  # copytruncate: start again at the top
            log.info("%s was truncated; reading it again from its start", self.path)
            f.offset, f.partial, f.discarding = 0, b"", False
        while f.offset < size and not self._stop.is_set():
            chunk = os.pread(f.fd, min(1 << 20, size - f.offset), f.offset)
            if not chunk:
                break
            f.offset += len(chunk)
            self._lines(f, chunk)

    def _lines(self, f: _Open, chunk: bytes) -> None:
        data = f.partial + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if f.discarding:
                f.discarding = False
            else:
                self.on_line(data[start:end].rstrip(b"\r"))
            start = end + 1
        f.partial = data[start:]
        if len(f.partial) > MAX_LINE:
            if not f.discarding:
                self.on_long_line()
            f.partial, f.discarding = b"", True

    def _open(self, from_start: bool) -> _Open | None:
        try:
            return _Open(self.path, from_start)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s: %s; trying again every second", self.path, exc)
            return None

    def _run(self) -> None:
        current = self._open(self.from_start)
        if current is None:
            log.warning("%s does not exist (yet); it is read from its start once it does",
                        self.path)
        rotated: tuple[_Open, float] | None = None
        while not self._stop.is_set():
            if current is None:
                current = self._open(True)
            if current is not None:
                self._read(current)
                try:
                    st = os.stat(self.path)
                    moved = (st.st_dev, st.st_ino) != current.ino
                except FileNotFoundError:
                    moved = False  # renamed away, new one not created yet: keep reading
                if moved and rotated is None:
                    log.info("%s was rotated; reading the new file from its start",
                             self.path)
                    rotated, current = (current, time.monotonic()), self._open(True)
            if rotated is not None:
                old, since = rotated
                self._read(old)  # a writer that has not reopened yet still writes here
                if time.monotonic() - since > ROTATE_GRACE_S:
                    os.close(old.fd)
                    rotated = None
            self._stop.wait(POLL_S)
        for f in (current, rotated[0] if rotated else None):
            if f is not None:
                self._read(f)  # what was written before the stop
                with contextlib.suppress(OSError):
                    os.close(f.fd)


class FollowedFileReceiver:
    """A receiver fed by one followed file (or ``-``): a subclass sets ``path``,
    ``from_start`` and ``thread_name``, turns a line into marks (``marks``) and counts what
    it rejects (``_reject``, also called for an over-long line)."""

    path: str
    from_start: bool
    thread_name: str
    _follower: FileFollower | None = None

    def sensors(self) -> list[SensorInfo]:
        return []

    def marks(self, line: bytes) -> list[StageMark]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _reject(self, reason: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self, emit: Emit) -> None:
        def on_line(line: bytes) -> None:
            for mark in self.marks(line):
                emit(mark)

        self._follower = FileFollower(self.path, on_line, lambda: self._reject("too_long"),
                                      self.from_start, name=self.thread_name)
        self._follower.start()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
