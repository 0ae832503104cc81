"""A BENCHLAB that speaks the byte protocol on a pseudo-terminal.

``--simulate`` reads it through the real reader, and the tests fault it. It encodes its
replies from the firmware contract's field offsets (pycore's contract JSON), independently
of the ctypes structures the reader decodes with. Faults: short replies, silence, junk
before a reply, slow replies, unplug/replug (the port disappears and comes back on a new
path, same UID), an unknown firmware.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import struct
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from .benchlab_layout import (
    READ_FAN_PROFILE,
    READ_NAME,
    READ_RGB,
    READ_SENSORS,
    READ_UID,
    READ_VENDOR_DATA,
    STATUS,
    VENDOR_ID,
    WELCOME,
    WRITE_FAN_PROFILE,
    WRITE_RGB,
    contract,
    structures,
)

_FMT = {"int16_t": "h", "uint16_t": "H", "int32_t": "i", "uint32_t": "I", "uint8_t": "B",
        "uint64_t": "Q", "int8_t": "b"}
# request length after the opcode, for the opcodes with fixed parameters
_PARAMS = {0x02: 4, 0x05: 2, 0x06: 16, 0x07: 1, 0x08: 7, 0x0A: 178, 0x0B: 1, 0x0C: 1}
STATUS_OK, STATUS_BAD_LENGTH, STATUS_UNKNOWN_OPCODE = 0, 1, 3


@dataclass
class Faults:
    short_replies: int = 0  # the next N sensor replies are cut in half
    silent_replies: int = 0  # the next N requests get no reply at all
    junk_replies: int = 0  # the next N replies come after junk bytes
    delay_s: float = 0.0  # every reply waits this long
    unknown_firmware: bool = False


@dataclass
class Readings:
    """What the emulated meter measures, in physical units."""

    rails_w: dict[str, float] = field(default_factory=dict)
    rail_v: dict[str, float] = field(default_factory=dict)
    tchip_c: float = 40.0
    tamb_c: float | None = 24.5  # None: the I2C read failed (sent as 0)
    hum_pct: float | None = 45.5
    probes_c: list[float | None] = field(default_factory=lambda: [35.0, 31.5])
    fans: list[tuple[int, int, int]] = field(default_factory=lambda: [(1, 40, 900)] * 3)
    fan_ext_duty: int | None = None
    vin_mv: list[int | None] = field(default_factory=lambda: [12000, 5000, 3300] + [None] * 10)


def default_readings(load: float, product_id: int) -> Readings:
    cpu, gpu, mb = 30 + 70 * load, 35 + 230 * load, 22 + 6 * load
    split = {"EPS1": cpu * 0.55, "EPS2": cpu * 0.45, "ATX3V": mb * 0.15, "ATX5V": mb * 0.2,
             "ATX5VSB": mb * 0.05, "ATX12V": mb * 0.6, "PCIE1": gpu * 0.2, "PCIE2": gpu * 0.1,
             "PCIE3": 0.0, "HPWR1": gpu * 0.7, "HPWR2": 0.0}
    volts = {"ATX3V": 3.31, "ATX5V": 5.02, "ATX5VSB": 5.01}
    r = Readings(rails_w=split, rail_v={k: volts.get(k, 12.05) for k in split})
    if product_id == 0x11:
        for n in (1, 2):
            for w in range(1, 7):
                r.rails_w[f"HPWR{n}_W{w}"] = split[f"HPWR{n}"] / 6
                r.rail_v[f"HPWR{n}_W{w}"] = 12.05
    r.tchip_c = 38 + 20 * load
    return r


def _count(spec: object, constants: dict[str, int]) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    m = re.match(r"\s*(\d+)", str(spec))
    return int(m.group(1)) if m else constants[str(spec).strip()]


class SensorEncoder:
    """Packs a SensorStruct from the contract's field list."""

    def __init__(self, product_id: int, fw_version: int) -> None:
        self.c = contract.contract_for(product_id, fw_version)
        self.size = self.c.struct_size("SensorStruct")
        self.constants = self.c.raw["constants"]
        self.widths = self.c.raw["enum_width_bytes"]

    def _put(self, buf: bytearray, struct_name: str, base: int, values: dict) -> None:
        for f in self.c.fields(struct_name):
            name, typ, off = f["name"], f["type"], base + f["offset"]
            n = _count(f["array"], self.constants)
            val = values.get(name)
            if val is None:
                continue
            if typ in self.c.raw["structs"]:  # nested structs (PowerSensor, FanSensor)
                step = self.c.struct_size(typ)
                for i, item in enumerate(val if n else [val]):
                    self._put(buf, typ, off + i * step, item)
                continue
            fmt = "<" + (_FMT.get(typ) or {1: "B", 2: "H", 4: "I"}[self.widths[typ]])
            width = struct.calcsize(fmt)
            for i, item in enumerate(val if n else [val]):
                struct.pack_into(fmt, buf, off + i * width, item)

    def encode(self, values: dict) -> bytes:
        buf = bytearray(self.size)
        self._put(buf, "SensorStruct", 0, values)
        return bytes(buf)


class BenchlabEmulator:
    def __init__(self, product_id: int = 0x10, fw_version: int = 6,
                 uid: bytes = bytes.fromhex("0123456789abcdef01234567"),
                 name: str = "emulated BENCHLAB",
                 load: Callable[[float], float] | None = None) -> None:
        self.product_id, self.fw_version = product_id, fw_version
        self.uid, self.name = uid, name
        self.load = load or (lambda t: 0.5 + 0.3 * math.sin(t / 3.0))
        self.readings_for: Callable[[float], Readings] = lambda t: default_readings(
            self.load(t), product_id)
        self.encoder = SensorEncoder(product_id, fw_version)
        self.c = self.encoder.c
        self.faults = Faults()
        self.writes: list[bytes] = []  # WRITE_* requests received, for checks
        self.fan_profiles: dict[tuple[int, int], bytes] = {}
        self.requests = 0
        self._status = STATUS_OK
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._plugged = threading.Event()
        self._master = self._slave = -1
        self.path = ""
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None

    # -- the port ----------------------------------------------------------------------
    def start(self) -> BenchlabEmulator:
        self._plug()
        self._thread = threading.Thread(target=self._serve, name="benchlab-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        with self._lock:
            self._master, self._slave = master, slave
            self.path = os.ttyname(slave)
        self._plugged.set()

    def unplug(self) -> None:
        """The device drops off USB: the port goes away (reads on it fail)."""
        self._plugged.clear()
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1
            self.path = ""

    def replug(self) -> None:
        """It comes back, on a new path, with the same UID."""
        self._plug()

    def ports(self) -> list[str]:
        return [self.path] if self.path else []

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.unplug()

    # -- replies -----------------------------------------------------------------------
    def sensor_values(self, t: float) -> dict:
        r = self.readings_for(t)
        power = []
        for rail in (structures.SENSOR_POWER_NAMES_BL2 if self.product_id == 0x11 else
                     structures.SENSOR_POWER_NAMES_ORIGINAL):
            w, v = r.rails_w.get(rail, 0.0), r.rail_v.get(rail, 12.0)
            amps = w / v if v else 0.0
            power.append({"Voltage": round(v * 1000), "Current": round(amps * 1000),
                          "Power": round(w * 1000)})
        whole = (self.product_id == 0x10 and self.fw_version <= 2) or (
            self.product_id == 0x11 and self.fw_version <= 3)
        n_probes = 8 if self.product_id == 0x11 else 4
        probes = (r.probes_c + [None] * n_probes)[:n_probes]
        fans = (r.fans + [(0, 0, 0)] * 9)[:9]
        values = {
            "Vin": [0x7FFF if v is None else v for v in (r.vin_mv + [None] * 13)[:13]],
            "Vdd": 3300, "Vref": 2500,
            "Tchip": round(r.tchip_c if whole else r.tchip_c * 10),
            "Ts": [0x7FFF if p is None else round(p * 10) for p in probes],
            "Tamb": 0 if r.tamb_c is None else round(r.tamb_c * 10),
            "Hum": 0 if r.hum_pct is None else round(r.hum_pct * 10),
            "FanSwitchStatus": 0, "RGBSwitchStatus": 0, "RgbExtStatus": 0,
            "FanExtDuty": 255 if r.fan_ext_duty is None else r.fan_ext_duty,
            "PowerReadings": power,
            "Fans": [{"Enable": e, "Duty": d, "Tach": rpm} for e, d, rpm in fans],
            "FaultStatus": 0, "FaultLog": 0,
        }
        return values

    def reply(self, request: bytes) -> bytes | None:
        """The device's answer to one request (None: it sends nothing)."""
        op = request[0]
        size = self.c.response_size
        if op == WELCOME:
            return b"BENCHLAB\0".ljust(size("WELCOME"), b"\0")
        if op == READ_VENDOR_DATA:
            fw = 0x63 if self.faults.unknown_firmware else self.fw_version
            return bytes([VENDOR_ID, self.product_id, fw])
        if op == READ_UID:
            return self.uid
        if op == READ_NAME:
            return self.name.encode()[:31].ljust(32, b"\0")
        if op == READ_SENSORS:
            return self.encoder.encode(self.sensor_values(time.monotonic() - self._t0))
        if op == STATUS:
            return bytes([self._status])
        if op in (WRITE_RGB, WRITE_FAN_PROFILE):
            self.writes.append(request)
            if op == WRITE_FAN_PROFILE:
                self.fan_profiles[(request[1], request[2])] = request[3:]
            return None
        if op == READ_FAN_PROFILE:
            return self.fan_profiles.get((request[1], request[2]), bytes(14))
        if op == READ_RGB:
            return bytes(6)
        self._status = STATUS_UNKNOWN_OPCODE
        return None

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            if not self._plugged.wait(0.05):
                pending = b""
                continue
            with self._lock:
                master = self._master
            try:
                ready, _, _ = select.select([master], [], [], 0.25)
                if not ready:
                    continue
                pending += os.read(master, 512)
            except (OSError, ValueError):  # unplugged under us
                pending = b""
                continue
            while pending:
                op = pending[0]
                need = 1 + _PARAMS.get(op, 0)
                if len(pending) < need:
                    break
                request, pending = pending[:need], pending[need:]
                self.requests += 1
                self._status = STATUS_OK
                self._answer(master, request)

    def _answer(self, master: int, request: bytes) -> None:
        f = self.faults
        if f.silent_replies > 0:
            f.silent_replies -= 1
            return
        data = self.reply(request)
        if data is None:
            return
        if request[0] == READ_SENSORS and f.short_replies > 0:
            f.short_replies -= 1
            data = data[: len(data) // 2]
        if f.junk_replies > 0:
            f.junk_replies -= 1
            data = b"\xa5\x5a\x00junk" + data
        if f.delay_s:
            time.sleep(f.delay_s)
        with contextlib.suppress(OSError):
            os.write(master, data)
