"""The BENCHLAB receiver: the USB power meter (ORIGINAL and BENCHLAB 2) as Samples.

pyserial at 115200 8N1, no flow control; each request is one write and a read of exactly
the reply length with a timeout (no fixed sleeps). Polling runs on absolute deadlines.
A sample's time is the midpoint of the request write and the end of the reply, and its
round-trip time is kept with it. Short reads, junk, silence, an unplugged device, an
unknown firmware: counted, one log line per condition, resynchronised (drain, identify
again, rediscover by UID on any port), and the agent never exits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import serial

from otel_benchlab.components import Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.records import Sample, SensorInfo
from otel_benchlab.settings import setting_error

from . import Emit
from .benchlab_control import BenchlabControl, BenchlabControlConfig, ControlSettings

if TYPE_CHECKING:
    from otel_benchlab.config import Config

    from .benchlab_emulator import BenchlabEmulator
from .benchlab_layout import (
    READ_SENSORS,
    decode,
    sensor_infos,
)
from .benchlab_port import (
    BenchlabPort,
    DeviceError,
    Identity,
    discover,
    scan_ports,
)


@dataclass
class BenchlabConfig:
    # read BENCHLAB devices (without --simulate)
    enabled: bool = True
    device: str = "auto"  # "auto", a port path, or "uid:UID"
    max_rtt_ms: float = 20.0  # a sample whose round trip is longer is flagged uncertain
    # per request
    read_timeout_ms: float = 250.0
    control: BenchlabControlConfig = field(default_factory=BenchlabControlConfig)


log = logging.getLogger(__name__)

POWER_GROUPS = ("SYS", "CPU", "GPU")
VDD_RANGE = (2.5, 3.8)  # V: the meter's own supply; outside it a reply is garbled


class BenchlabDevice:
    """Polls one device on its own thread, and survives it going away and coming back."""

    FAILS_BEFORE_REIDENTIFY = 3
    MAX_BACKOFF_S = 10.0

    def __init__(self, port: BenchlabPort, ident: Identity, hz: float,
                 counters: AgentCounters, ports: Callable[[], list[str]], fixed_path: bool,
                 max_rtt_ns: int, control: BenchlabControl | None = None) -> None:
        self.control = control
        self.port: BenchlabPort | None = port
        self.ident = ident
        self.period_ns = int(1e9 / hz)
        self.counters = counters
        self.ports = ports
        self.fixed_path = fixed_path
        self.max_rtt_ns = max_rtt_ns
        self.samples = 0
        for reason in ("timeout", "short_read", "junk", "implausible", "io_error"):
            counters.declare("read.errors", source=ident.uid, reason=reason)
        for name in ("device.disconnects", "device.reconnects", "read.overruns",
                     "sample.uncertain"):
            counters.declare(name, source=ident.uid)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self, reason: str, hint: str) -> None:
        self.counters.add("read.errors", 1, hint, source=self.ident.uid, reason=reason)

    def start(self, emit: Emit) -> None:
        self._thread = threading.Thread(target=self._run, args=(emit,), daemon=True,
                                        name=f"benchlab-{self.ident.uid[-6:]}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.port:
            self.port.close()

    def _run(self, emit: Emit) -> None:
        deadline = time.monotonic_ns()
        fails = 0
        while not self._stop.is_set():
            if self.port is None:
                self._reconnect()
                deadline = time.monotonic_ns()
                fails = 0
                continue
            try:
                fails = 0 if self._poll(emit) else fails + 1
                if fails >= self.FAILS_BEFORE_REIDENTIFY:
                    self.port.drain(0.05)
                    ident = self.port.identify()
                    if ident.uid != self.ident.uid:
                        raise DeviceError("replaced", f"{self.port.path} is now {ident.uid}")
                    fails = 0
            except (DeviceError, OSError, serial.SerialException) as exc:
                reason = getattr(exc, "reason", "io_error")
                self.count(reason, f"BENCHLAB {self.ident.uid} on {self.ident.port} failed "
                           f"({exc}); closing it, will look for it again")
                self.port.close()
                self.port = None
                # Counted once the port is let go: whoever watches the count (a test
                # taking the freed pty) finds the path free.
                self.counters.add("device.disconnects", 1, source=self.ident.uid)
                continue
            deadline += self.period_ns
            now = time.monotonic_ns()
            if deadline < now:  # fell behind: skip the missed slots, never burst
                missed = (now - deadline) // self.period_ns + 1
                self.counters.add("read.overruns", int(missed), source=self.ident.uid)
                deadline += missed * self.period_ns
            self._stop.wait((deadline - time.monotonic_ns()) / 1e9)

    def _poll(self, emit: Emit) -> bool:
        """One sample; False for a lost one (counted)."""
        port = self.port
        assert port is not None
        if port.ser.in_waiting:
            dropped = port.drain(0.0)
            self.count("junk", f"{dropped} unexpected bytes from {port.path} before a "
                       "request; drained")
        size = self.ident.layout.sensor_size
        raw, t0, t1 = port.request(bytes([READ_SENSORS]), size)
        if len(raw) != size:
            reason = "timeout" if not raw else "short_read"
            self.count(reason, f"{len(raw)} of {size} bytes from {port.path} within "
                       f"{port.timeout_s * 1000:.0f} ms; sample dropped, input drained")
            port.drain(0.02)
            return False
        rtt = t1 - t0
        if port.ser.in_waiting:
            # More bytes right behind a full reply: it was shifted by stray bytes, and with
            # no framing or checksum its content cannot be trusted.
            dropped = port.drain(0.01)
            self.count("junk", f"reply from {port.path} was followed by {dropped} stray bytes "
                       "(misaligned); sample dropped, input drained")
            return False
        values = decode(raw, self.ident.layout)
        if not VDD_RANGE[0] <= values["Vdd"] <= VDD_RANGE[1]:
            self.count("implausible", f"reply from {port.path} decodes to Vdd "
                       f"{values['Vdd']:.3f} V (the board's 3.3 V supply); sample dropped")
            port.drain(0.02)
            return False
        uncertain = rtt > self.max_rtt_ns
        if uncertain:
            self.counters.add("sample.uncertain", 1, source=self.ident.uid)
        emit(Sample(t0 + rtt // 2, self.ident.uid, values, rtt_ns=rtt, uncertain=uncertain))
        self.samples += 1
        if self.control is not None:
            self.control.apply(self.ident.uid, port, values)
        return True

    def _reconnect(self) -> None:
        backoff = 0.5
        lost_at = time.monotonic()
        while not self._stop.is_set():
            if self._stop.wait(backoff):
                return
            spec = self.ident.port if self.fixed_path else f"uid:{self.ident.uid}"
            found, errors = discover(spec, self.ports)
            for port, _ in found[1:]:
                port.close()
            if found:
                self.port, ident = found[0]
                self.ident = ident  # the same UID, maybe on another path
                self.counters.add("device.reconnects", 1, source=ident.uid)
                log.warning("BENCHLAB %s is back on %s after %.1f s", ident.uid, ident.port,
                            time.monotonic() - lost_at)
                return
            for e in errors:
                if e.reason in ("permission", "unknown_firmware"):
                    self.count(e.reason, str(e))
            backoff = min(backoff * 2, self.MAX_BACKOFF_S)


class BenchlabReceiver:
    """Every selected BENCHLAB as a source named by its UID."""

    name = "benchlab"

    def __init__(self, spec: str, hz: float, counters: AgentCounters,
                 ports: Callable[[], list[str]] = scan_ports, max_rtt_ms: float = 20.0,
                 timeout_s: float = 0.25, control: BenchlabControl | None = None) -> None:
        self.spec = spec
        self.control = control
        self.counters = counters
        found, errors = discover(spec, ports, timeout_s)
        for e in errors:
            counters.add("read.errors", 1, str(e), source=spec, reason=e.reason)
        if not found:
            where = "on the ttyACM ports with USB id 0483:5740" if spec == "auto" else spec
            log.warning("no BENCHLAB found %s; the agent runs on without it (plug one in and "
                        "restart, pick one with --benchlab-device PATH|uid:UID, or try "
                        "--simulate)", where)
        fixed = spec not in ("auto",) and not spec.startswith("uid:")
        self.devices = [BenchlabDevice(p, i, hz, counters, ports, fixed, int(max_rtt_ms * 1e6),
                                       control) for p, i in found]
        for d in self.devices:
            log.info("BENCHLAB %s (%s, %s %s) on %s", d.ident.uid, d.ident.name,
                     d.ident.product, d.ident.firmware, d.ident.port)

    def sensors(self) -> list[SensorInfo]:
        out = []
        several = len(self.devices) > 1
        for d in self.devices:
            # Power-source labels are lowercase everywhere (see schema.power_source_order).
            labels = {g: (f"{g.lower()}_{d.ident.uid[-6:].lower()}" if several else g.lower())
                      for g in POWER_GROUPS}
            out += sensor_infos(d.ident.uid, d.ident.layout, d.ident.attributes(), labels)
        return out

    def identities(self) -> list[dict[str, str]]:
        return [{"uid": d.ident.uid, "port": d.ident.port, "name": d.ident.name,
                 "product": d.ident.product, "firmware": d.ident.firmware}
                for d in self.devices]

    def observe_latency(self, ms: float) -> None:
        """Pipeline latency, for RGB feedback (the runtime calls this each batch)."""
        if self.control is not None:
            self.control.observe_latency(ms)

    def start(self, emit: Emit) -> None:
        for d in self.devices:
            d.start(emit)

    def stop(self) -> None:
        for d in self.devices:
            d.stop()


def benchlab_receiver(cfg: Config, counters: AgentCounters,
                      emulator: BenchlabEmulator | None = None) -> BenchlabReceiver:
    """The receiver for ``[benchlab]``; with ``emulator``, for that emulated device only."""
    c = cfg.benchlab.control
    control = BenchlabControl(ControlSettings(
        rgb_feedback=c.rgb_feedback, green_below_ms=c.green_below_ms,
        red_above_ms=c.red_above_ms, fan_auto=c.fan_auto, threshold_c=c.fan_threshold_c,
        full_c=c.fan_full_c, min_duty=c.fan_min_duty, max_duty=c.fan_max_duty,
        dry_run=c.dry_run))
    spec = f"uid:{emulator.uid.hex().upper()}" if emulator else cfg.benchlab.device
    return BenchlabReceiver(spec, cfg.sample_hz, counters,
                            ports=emulator.ports if emulator else scan_ports,
                            max_rtt_ms=cfg.benchlab.max_rtt_ms,
                            timeout_s=cfg.benchlab.read_timeout_ms / 1000,
                            control=control if control.active else None)


def _enabled(cfg: Config) -> bool:
    # With --simulate the emulated meter stands in for it, unless [sim] sources leaves the
    # BENCHLAB out (simulated pipeline, real meter).
    simulated = cfg.simulate and "benchlab" in cfg.sim.sources
    return cfg.benchlab.enabled and not simulated


def validate(benchlab: BenchlabConfig) -> None:
    dev = benchlab.device
    if not (dev == "auto" or dev.startswith("/") or (dev.startswith("uid:") and len(dev) > 4)):
        raise setting_error("benchlab.device", f"{dev!r}: use auto, a port path (/dev/ttyACM0) "
                            "or uid:UID")
    ctl = benchlab.control
    if not 0 <= ctl.fan_min_duty <= ctl.fan_max_duty <= 100:
        raise setting_error("benchlab.control.fan_min_duty/fan_max_duty",
                            "need 0 <= min <= max <= 100")
    if ctl.green_below_ms > ctl.red_above_ms:
        raise setting_error("benchlab.control.green_below_ms", "must not exceed red_above_ms")


COMPONENT = Component(
    "benchlab", "benchlab", _enabled,
    lambda cfg, ctx: Built(receivers=[benchlab_receiver(cfg, ctx.counters)]),
    settings=BenchlabConfig, env={"BENCHLAB_DEVICE": "device"},
    ranges={"max_rtt_ms": (0, 60_000), "read_timeout_ms": (1, 60_000),
            "control.green_below_ms": (0.0, 60_000), "control.red_above_ms": (0.0, 60_000),
            "control.fan_threshold_c": (-50, 150), "control.fan_full_c": (-50, 150)},
    validate=validate)
