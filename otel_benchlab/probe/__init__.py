"""Stage marks from any Python application: ``from otel_benchlab import probe``.

    probe.mark("decoded", frame=n)              # frame n reached stage "decoded"
    with probe.stage("encode", frame=n): ...    # a stage measured whole
    @probe.stage("infer")                        # every call of a function
    def infer(batch): ...

A call stamps CLOCK_MONOTONIC and appends one small tuple to a bounded buffer: no system
call, no lock, about a microsecond. The buffer goes to the local agent's probe receiver
(``BENCHLAB_PROBE_ADDR``, default ``udp://127.0.0.1:4797``; ``unix:///path`` for a datagram
socket shared with a container) in datagrams of up to ``BATCH`` records: sent by the call
that fills a batch, or by a small daemon thread within ``FLUSH_S`` (marks carry their own
time, so a late delivery changes nothing). The socket is non-blocking and connected: a
call never waits, never raises into the application and never holds more than
``MAX_PENDING`` records; when no agent listens or its socket is full, records are dropped
and counted (``stats()``). A ``stage`` is one span record, pair ``<name>.start-><name>.end``.

The probe room: this API, its wire format (``wire``, which the agent's probe receiver
reads too) and the GStreamer probe (``gstreamer``). Applications import it, so it imports
nothing of the agent, only ``settings`` (the address's syntax).
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from otel_benchlab.probe.wire import ADDR_VARIABLE, MAGIC, address, clean, span_line

F = TypeVar("F", bound=Callable[..., Any])

_now = time.monotonic_ns
BATCH = 128  # records per datagram (a few kB)
FLUSH_S = 0.05
MAX_PENDING = 16_384


def _default_pipeline() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return clean(os.path.splitext(name)[0] or "app")


def _line(rec: tuple) -> str:
    if len(rec) == 5:
        ts, pipeline, stream, stage, frame = rec
        return f"m\t{ts}\t{pipeline}\t{stream}\t{stage}\t{'' if frame is None else frame}"
    if len(rec) == 7:  # a span with its own stage names (gst --to-agent)
        return span_line(*rec)
    start, end, pipeline, stream, name, frame = rec
    return (f"s\t{start}\t{end}\t{pipeline}\t{stream}\t{name}.start\t{name}.end\t"
            f"{'' if frame is None else frame}")


class Probe:
    """One connection to the agent. The module's functions share one, made on first use;
    make your own for another address or default pipeline name."""

    def __init__(self, addr: str | None = None, pipeline: str | None = None,
                 stream: str = "main") -> None:
        self.addr = addr if addr is not None else os.environ.get(ADDR_VARIABLE, "")
        self.pipeline = clean(pipeline or _default_pipeline())
        self.stream = clean(stream)
        self.sent = 0
        self.dropped = 0
        self._pending: deque[tuple] = deque()
        self._sock: socket.socket | None = None
        self._target = None
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        try:
            self._target = address(self.addr)
        except ValueError:
            self._target = None  # a bad address drops everything (counted), never raises

    # -- the application's side: append only -------------------------------------------
    def _put(self, rec: tuple) -> bool:
        pending = self._pending
        if len(pending) >= MAX_PENDING or self._target is None:
            self.dropped += 1
            return False
        pending.append(rec)
        if len(pending) >= BATCH:
            self.flush()
        elif self._flusher is None:
            self._start_flusher()
        return True

    def mark(self, stage: str, frame: int | None = None, stream: str | None = None,
             pipeline: str | None = None) -> bool:
        if frame is not None and type(frame) is not int:
            try:
                frame = int(frame)
            except (TypeError, ValueError):
                self.dropped += 1
                return False
        return self._put((_now(), pipeline or self.pipeline, stream or self.stream, stage,
                          frame))

    def mark_at(self, ts_ns: int, stage: str, frame: int | None = None,
                stream: str | None = None, pipeline: str | None = None) -> bool:
        """A mark stamped by the caller (CLOCK_MONOTONIC ns), e.g. on a streaming thread."""
        return self._put((ts_ns, pipeline or self.pipeline, stream or self.stream, stage,
                          frame))

    def span(self, name: str, start_ns: int, end_ns: int, frame: int | None = None,
             stream: str | None = None, pipeline: str | None = None) -> bool:
        return self._put((start_ns, end_ns, pipeline or self.pipeline, stream or self.stream,
                          name, frame))

    def stage(self, name: str, frame: int | None = None, stream: str | None = None,
              pipeline: str | None = None) -> Stage:
        return Stage(self, name, frame, stream, pipeline)

    def stage_span(self, start_ns: int, end_ns: int, pipeline: str, stream: str,
                   stage_from: str, stage_to: str, frame: int | None) -> bool:
        """A span whose two stage names the caller chooses (``gst --to-agent``)."""
        return self._put((start_ns, end_ns, pipeline, stream, stage_from, stage_to, frame))

    # -- sending -------------------------------------------------------------------------
    def _connect(self) -> bool:
        family, where = self._target  # type: ignore[misc]
        try:
            sock = socket.socket(socket.AF_UNIX if family == "unix" else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(where)
        except OSError:
            return False  # no agent (yet): dropped now, tried again next time
        self._sock = sock
        return True

    def flush(self) -> None:
        """Send what is pending now (also done by the flusher thread and at exit)."""
        pending = self._pending
        while pending:
            batch = []
            try:
                for _ in range(BATCH):
                    batch.append(pending.popleft())
            except IndexError:
                pass
            if not batch:
                return
            lines = []
            for rec in batch:
                try:
                    lines.append(_line(rec))
                except Exception:
                    self.dropped += 1
            data = (MAGIC + "\n" + "\n".join(lines)).encode("utf-8", "replace")
            if self._sock is None and not self._connect():
                self.dropped += len(lines)
                continue
            try:
                self._sock.send(data)  # type: ignore[union-attr]
                self.sent += len(lines)
            except OSError:
                # ECONNREFUSED (no agent), EAGAIN (its socket is full): dropped, counted;
                # a unix socket is connected again next time (the agent may have restarted).
                self.dropped += len(lines)
                if self._target and self._target[0] == "unix":
                    self._sock.close()  # type: ignore[union-attr]
                    self._sock = None

    def _start_flusher(self) -> None:
        if self._closed:
            return
        ref = weakref.ref(self)
        wake = self._wake

        def run() -> None:
            while not wake.wait(FLUSH_S):
                probe = ref()
                if probe is None or probe._closed:
                    return
                if probe._pending:
                    probe.flush()
                del probe

        self._flusher = threading.Thread(target=run, name="benchlab-probe", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _after_fork(self) -> None:
        # The child has no flusher thread and must not share the parent's pending marks.
        self._pending.clear()
        self._flusher = None
        self._wake = threading.Event()


class Stage:
    """``with probe.stage("encode", frame=n):`` or ``@probe.stage("encode")``."""

    __slots__ = ("probe", "name", "frame", "stream", "pipeline", "_t0")

    def __init__(self, probe: Probe | None, name: str, frame: int | None,
                 stream: str | None, pipeline: str | None) -> None:
        self.probe = probe
        self.name = clean(name)
        self.frame = frame
        self.stream = stream
        self.pipeline = pipeline
        self._t0 = 0

    def __enter__(self) -> Stage:
        self._t0 = _now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _now()
        (self.probe or default()).span(self.name, self._t0, end, self.frame, self.stream,
                                       self.pipeline)

    def __call__(self, fn: F) -> F:
        name, stream, pipeline = self.name, self.stream, self.pipeline
        probe = self.probe

        @wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                (probe or default()).span(name, t0, _now(), None, stream, pipeline)

        return timed  # type: ignore[return-value]


_default: Probe | None = None
_lock = threading.Lock()


def default() -> Probe:
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = Probe()
                atexit.register(_default.flush)
    return _default


def _after_fork() -> None:
    if _default is not None:
        _default._after_fork()


os.register_at_fork(after_in_child=_after_fork)


def mark(stage: str, frame: int | None = None, stream: str | None = None,
         pipeline: str | None = None) -> bool:
    """Frame ``frame`` of ``stream`` reached ``stage`` now. Never raises, never blocks."""
    return (_default or default()).mark(stage, frame, stream, pipeline)


def stage(name: str, frame: int | None = None, stream: str | None = None,
          pipeline: str | None = None) -> Stage:
    """A stage measured whole: a context manager, or a decorator for a function."""
    return Stage(None, name, frame, stream, pipeline)


def flush() -> None:
    """Send the shared probe's pending records now."""
    if _default is not None:
        _default.flush()


def stats() -> dict[str, int]:
    """What the shared probe sent, dropped (no agent, a full socket) and holds."""
    p = default()
    return {"sent": p.sent, "dropped": p.dropped, "pending": len(p._pending)}
