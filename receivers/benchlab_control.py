"""Optional BENCHLAB device control (off by default, behind explicit flags):

- RGB status feedback from pipeline latency: green below ``green_below_ms``, yellow up to
  ``red_above_ms``, red above it (a single colour in the RGB profile of the switch's
  current WORK/PLAY position);
- automatic fan duty from temperature: ``min_duty`` below ``threshold_c``, rising linearly
  to ``max_duty`` at ``full_c``, from the hottest temperature probe (else the chip), set as
  FIXED duty in the fan profile of the fan switch's current position. The rest of that
  profile is read back from the device and kept.

Writes use the real commands (WRITE_RGB, READ/WRITE_FAN_PROFILE) with pycore's structures,
happen only when the wanted state changes, and are checked with STATUS. ``dry_run`` logs
what would be written instead. The decisions are pure functions, tested on their own.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass

from .benchlab_layout import READ_FAN_PROFILE, STATUS, WRITE_FAN_PROFILE, WRITE_RGB, structures


@dataclass
class BenchlabControlConfig:
    rgb_feedback: bool = False  # RGB colour from pipeline latency
    rgb_pair: str = ""  # "A->B" whose latency drives it; "" = the first pair
    # RGB feedback: green below this median latency
    green_below_ms: float = 10.0
    # RGB feedback: red above it (yellow between)
    red_above_ms: float = 20.0
    fan_auto: bool = False  # fan duty from temperature
    # automatic fan: the duty starts rising here
    fan_threshold_c: float = 60.0
    # automatic fan: full duty from here
    fan_full_c: float = 80.0
    # automatic fan: the lowest duty (0-255)
    fan_min_duty: int = 25
    # automatic fan: the highest duty (0-255)
    fan_max_duty: int = 100
    dry_run: bool = False  # log what would be written instead of writing


log = logging.getLogger(__name__)

COLOURS = {"green": (0, 255, 0), "yellow": (255, 180, 0), "red": (255, 0, 0)}
FAN_MODE_FIXED = int(structures.FanMode.FIXED)
RGB_SINGLE_COLOR = int(structures.RGBMode.SINGLE_COLOR)
STATUS_NAMES = {0: "OK", 1: "BAD_LENGTH", 2: "BAD_PARAMETER", 3: "UNKNOWN_OPCODE", 4: "BUSY"}


def colour_for_latency(ms: float, green_below_ms: float, red_above_ms: float) -> str:
    if ms < green_below_ms:
        return "green"
    return "yellow" if ms <= red_above_ms else "red"


def fan_duty_for(temp_c: float, threshold_c: float, full_c: float, min_duty: int,
                 max_duty: int) -> int:
    if temp_c < threshold_c:
        return min_duty
    if temp_c >= full_c or full_c <= threshold_c:
        return max_duty
    return round(min_duty + (max_duty - min_duty) * (temp_c - threshold_c) /
                 (full_c - threshold_c))


def control_temperature(values: dict[str, float]) -> float | None:
    probes = [v for k, v in values.items() if k.startswith("TS_")]
    return max(probes) if probes else values.get("Tchip")


@dataclass
class ControlSettings:
    rgb_feedback: bool = False
    green_below_ms: float = 10.0
    red_above_ms: float = 20.0
    fan_auto: bool = False
    threshold_c: float = 60.0
    full_c: float = 80.0
    min_duty: int = 25
    max_duty: int = 100
    fans: tuple[int, ...] = tuple(range(1, 10))  # channels 1..9
    dry_run: bool = False


class BenchlabControl:
    """Decides what to write; the device's own polling thread does the writing (it owns
    the port), so control never races a read."""

    def __init__(self, settings: ControlSettings) -> None:
        self.s = settings
        self._latency_ms: float | None = None
        self._lock = threading.Lock()
        self._applied: dict[tuple[str, str], object] = {}
        self.writes = 0

    @property
    def active(self) -> bool:
        return self.s.rgb_feedback or self.s.fan_auto

    def observe_latency(self, ms: float) -> None:
        """The pipeline's current latency (the runtime reports each batch's median)."""
        with self._lock:
            self._latency_ms = ms

    def apply(self, uid: str, port, values: dict[str, float]) -> None:
        """Called by the device thread after a good sample."""
        with self._lock:
            latency = self._latency_ms
        if self.s.rgb_feedback and latency is not None:
            colour = colour_for_latency(latency, self.s.green_below_ms, self.s.red_above_ms)
            profile = int(values.get("RGBSwitch", 0))
            if self._applied.get((uid, "rgb")) != (profile, colour):
                self._write_rgb(uid, port, profile, colour, latency)
                self._applied[(uid, "rgb")] = (profile, colour)
        temp = control_temperature(values)
        if self.s.fan_auto and temp is not None:
            duty = fan_duty_for(temp, self.s.threshold_c, self.s.full_c, self.s.min_duty,
                                self.s.max_duty)
            profile = int(values.get("FanSwitch", 0))
            if self._applied.get((uid, "fan")) != (profile, duty):
                self._write_fans(uid, port, profile, duty, temp)
                self._applied[(uid, "fan")] = (profile, duty)

    def _send(self, uid: str, port, payload: bytes, what: str) -> None:
        if self.s.dry_run:
            log.info("dry run: would write to BENCHLAB %s: %s (%s)", uid, what, payload.hex())
            return
        port.request(payload, 0)
        status, _, _ = port.request(bytes([STATUS]), 1)
        self.writes += 1
        if status and status[0] != 0:
            log.warning("BENCHLAB %s refused %s: %s", uid, what,
                        STATUS_NAMES.get(status[0], status[0]))
        else:
            log.info("BENCHLAB %s: %s", uid, what)

    def _write_rgb(self, uid: str, port, profile: int, colour: str, latency: float) -> None:
        cfg = structures.RGBConfigStruct()
        cfg.Mode = RGB_SINGLE_COLOR
        cfg.Red, cfg.Green, cfg.Blue = COLOURS[colour]
        self._send(uid, port, bytes([WRITE_RGB, profile]) + bytes(cfg),
                   f"RGB profile {profile} {colour} (latency {latency:.1f} ms)")

    def _write_fans(self, uid: str, port, profile: int, duty: int, temp: float) -> None:
        size = ctypes.sizeof(structures.FanConfigStruct)
        for fan in self.s.fans:
            current = b""
            if not self.s.dry_run:
                current, _, _ = port.request(bytes([READ_FAN_PROFILE, profile, fan - 1]), size)
            cfg = structures.FanConfigStruct.from_buffer_copy(
                current if len(current) == size else bytes(size))
            cfg.FanMode = FAN_MODE_FIXED
            cfg.FixedDuty = duty
            self._send(uid, port, bytes([WRITE_FAN_PROFILE, profile, fan - 1]) + bytes(cfg),
                       f"fan {fan} profile {profile} fixed duty {duty} % ({temp:.1f} degC)")
