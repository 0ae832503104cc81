"""Probe datagrams (``otel_benchlab.probe``, ``otel-benchlab gst --to-agent``) into marks
and measured stage spans.

Listens where ``[probe] listen`` / ``BENCHLAB_PROBE_ADDR`` says (default
``udp://127.0.0.1:4797``), on by default, so a probe finds the agent with no configuration.
A malformed datagram or line is counted (``benchlab.agent.input.rejected{source="probe"}``)
and skipped; an address that is taken is one log line, and the agent runs without probes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import sys
import threading
from dataclasses import dataclass

from otel_benchlab.components import Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.probe.wire import MAGIC
from otel_benchlab.records import SensorInfo, StageMark, StageSpan
from otel_benchlab.settings import parse_probe_addr

from . import Emit


@dataclass
class ProbeConfig:
    # Where the agent listens for probe datagrams (otel_benchlab.probe, `gst --to-agent`):
    # udp://HOST:PORT, unix:///path (a datagram socket), or "off". BENCHLAB_PROBE_ADDR sets
    # it for the agent and the probes alike.
    listen: str = "udp://127.0.0.1:4797"


log = logging.getLogger("otel_benchlab")

RCVBUF = 4 << 20  # a few seconds of marks at 100k/s if the agent is busy
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: datagrams the kernel dropped
# After a wake-up that found a few datagrams, let the next ones gather in the socket this
# long: the agent drains its queue every 250 ms, pairs once a second, and each mark carries
# its own time, so nothing is late for it, and at 60 fps a thread wake-up per probe flush
# (20 a second, ~100 us of CPU each here) cost more than the marks. A busy socket (many
# datagrams a wake-up) is read again at once, so the socket's buffer only ever holds 250 ms
# of a quiet probe.
PACE_S = 0.25
PACE_BELOW = 16


# Distinct names (pipelines, streams, stages) kept as one string object each.
MAX_NAMES = 4096


def parse_datagram(data: bytes, names: dict[str, str] | None = None
                   ) -> tuple[list[StageMark | StageSpan], list[str]]:
    """Records, and a reason for each rejected line (or the whole datagram).

    ``names`` (the receiver's, across datagrams) maps each name to the one string object
    the usual datagram's marks share: a mark then holds the same few strings as every
    other, whose hashes are made once and which stay in the CPU's cache, instead of three
    new strings a mark, which the pairing, the frames and the Parquet columns each read
    again."""
    names = {} if names is None else names
    get = names.get

    def name(text: str) -> str:
        if len(names) < MAX_NAMES:  # a sender making up names cannot grow it without end
            names[text] = text
        return text

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], ["not_utf8"]
    lines = text.split("\n")
    if lines[0] != MAGIC:
        return [], ["not_probe"]
    del lines[0]
    if lines and not lines[-1]:
        del lines[-1]  # the text ends with a newline
    try:
        # The usual datagram: marks with frame ids, every line well formed. Parsed in one
        # comprehension; anything else (a measured span, an id-less or a bad line) raises
        # or fails the check and the datagram is read line by line below.
        fields = [line.split("\t") for line in lines]
        if all(len(f) == 6 and f[0] == "m" and f[4] and f[5] for f in fields):
            return [StageMark(int(f[1]), get(f[2]) or name(f[2]), get(f[3]) or name(f[3]),
                              get(f[4]) or name(f[4]), int(f[5])) for f in fields], []
    except ValueError:
        pass
    out: list[StageMark | StageSpan] = []
    rejected: list[str] = []
    for line in lines:
        if not line:
            continue
        f = line.split("\t")
        try:
            if f[0] == "m" and len(f) == 6 and f[4]:
                out.append(StageMark(int(f[1]), f[2], f[3], f[4], int(f[5]) if f[5] else None))
                continue
            if f[0] == "s" and len(f) == 8 and f[5] and f[6]:
                start, end = int(f[1]), int(f[2])
                if end >= start:
                    out.append(StageSpan(get(f[3]) or name(f[3]), get(f[4]) or name(f[4]),
                                         int(f[7]) if f[7] else None,
                                         get(f[5]) or name(f[5]), get(f[6]) or name(f[6]),
                                         start, end))
                    continue
        except ValueError:
            pass
        rejected.append("malformed")
    return out, rejected


class ProbeReceiver:
    name = "probe"

    def __init__(self, listen: str, counters: AgentCounters) -> None:
        self.listen = listen
        self.counters = counters
        counters.declare("input.rejected", source="probe", reason="malformed")
        counters.declare("input.dropped", source="probe", reason="socket_full")
        self._sock: socket.socket | None = None
        self._path: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._overflow_seen = 0  # the kernel's running count of datagrams it dropped
        self._names: dict[str, str] = {}  # see parse_datagram

    def sensors(self) -> list[SensorInfo]:
        return []

    def _bind(self) -> socket.socket | None:
        target = parse_probe_addr(self.listen)
        if target is None:
            return None
        family, where = target
        sock = socket.socket(socket.AF_UNIX if family == "unix" else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            if family == "unix":
                self._remove_stale(str(where))
                sock.bind(str(where))
                self._path = str(where)
                # Probes in other containers and users send to it (a hostPath socket).
                os.chmod(self._path, 0o666)
            else:
                sock.bind(where)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            with contextlib.suppress(OSError):
                # Datagrams that found the socket full are dropped by the kernel; this makes
                # it tell us how many, so they are counted too.
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError as exc:
            sock.close()
            log.warning("probe receiver: cannot listen on %s (%s); probes will not reach "
                        "this agent. Is another agent running? Set BENCHLAB_PROBE_ADDR (the "
                        "same value for the agent and its probes) or [probe] listen = "
                        "\"off\".", self.listen, exc.strerror or exc)
            return None
        return sock

    @staticmethod
    def _remove_stale(path: str) -> None:
        """A socket file left by an agent that died; refuse to remove anything else."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens on it
            return
        finally:
            probe.close()
        raise OSError(f"another process listens on {path}")

    def start(self, emit: Emit) -> None:
        self._sock = self._bind()
        if self._sock is None:
            return
        self._thread = threading.Thread(target=self._run, args=(emit,), name="probe",
                                        daemon=True)
        self._thread.start()

    def _run(self, emit: Emit) -> None:
        sock = self._sock
        assert sock is not None
        sock.setblocking(False)
        read = 0
        while not self._stop.is_set():
            if read == 0:  # an idle socket: sleep until something arrives
                ready, _, _ = select.select([sock], [], [], 0.2)
                if not ready:
                    continue
            read = self._drain(sock, emit)
            if read < 0:
                return
            if 0 < read < PACE_BELOW and self._stop.wait(PACE_S):
                break

    def _drain(self, sock: socket.socket, emit: Emit) -> int:
        """Everything queued in the socket: the datagrams read, -1 once it is closed."""
        read = 0
        cmsg_size = socket.CMSG_SPACE(4)
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(65536, cmsg_size)
            except (BlockingIOError, InterruptedError):
                return read
            except OSError:
                return -1
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                    total = int.from_bytes(value[:4], sys.byteorder)
                    if total > self._overflow_seen:
                        self.counters.add(
                            "input.dropped", total - self._overflow_seen, "probe datagrams "
                            "found the agent's socket full and were dropped by the kernel "
                            "(the agent is short of CPU)", source="probe",
                            reason="socket_full")
                        self._overflow_seen = total
            read += 1
            records, rejected = parse_datagram(data, self._names)
            if records:
                emit(records)  # one queue item a datagram
            for reason in rejected:
                self.counters.add("input.rejected", 1, "a probe datagram was not in the "
                                  "probe format (otel_benchlab.probe.wire); it was skipped",
                                  source="probe", reason=reason)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)


COMPONENT = Component(
    "probe", "probe", lambda cfg: parse_probe_addr(cfg.probe.listen) is not None,
    lambda cfg, ctx: Built(receivers=[ProbeReceiver(cfg.probe.listen, ctx.counters)]),
    settings=ProbeConfig, env={"BENCHLAB_PROBE_ADDR": "listen"},
    validate=lambda probe: parse_probe_addr(probe.listen))


