"""BENCHLAB wire layouts and sensor naming, from the vendor's ``benchlab-pycore``.

The layout is chosen from READ_VENDOR_DATA (product id and firmware) through pycore's
contracts (generated from the firmware headers), never from a byte count. Decoding uses
pycore's ctypes structures and its translation (scaling, the Tchip unit change, group
sums); we only rename, drop the "absent" sentinels, and describe each sensor once with
OTel names and units.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

from otel_benchlab.records import SensorInfo

_PYCORE_LOGGER = "benchlab_pycore.core.serial_io"


def _import_pycore():
    """Import pycore, and undo the stdout log handler it installs on import: its records
    go through our logging (stderr, our format) instead."""
    from benchlab_pycore.core import contract, sensor_translation, structures

    plog = logging.getLogger(_PYCORE_LOGGER)
    for h in list(plog.handlers):
        plog.removeHandler(h)
    plog.propagate = True
    return contract, sensor_translation, structures


contract, sensor_translation, structures = _import_pycore()
UnknownFirmwareError = contract.UnknownFirmwareError

VENDOR_ID = 0xEE
PRODUCTS = {0x10: "BENCHLAB ORIGINAL", 0x11: "BENCHLAB 2"}
GROUPS = ("SYS", "CPU", "GPU", "MB")
ABSENT_DUTY = 255

# opcodes (shared/spec/benchlab-protocol.md)
WELCOME, READ_SENSORS, ACTION, READ_NAME, WRITE_NAME = 0x00, 0x01, 0x02, 0x03, 0x04
READ_FAN_PROFILE, WRITE_FAN_PROFILE, READ_RGB, WRITE_RGB = 0x05, 0x06, 0x07, 0x08
READ_UID, READ_VENDOR_DATA, STATUS = 0x0D, 0x0E, 0x14


@dataclass(frozen=True)
class Layout:
    product_id: int
    fw_version: int
    product: str
    sensor_size: int
    welcome_size: int
    struct: type[ctypes.Structure]
    rails: tuple[str, ...]
    probes: tuple[str, ...]
    faults: bool


def layout_for(product_id: int, fw_version: int) -> Layout:
    """The layout of a device's firmware; UnknownFirmwareError for one pycore lacks."""
    c = contract.contract_for(product_id, fw_version)
    size = c.response_size("READ_SENSORS")
    candidates = [structures.SensorStructOriginal, structures.SensorStructBL2Legacy,
                  structures.SensorStructBL2]
    struct = next((s for s in candidates if ctypes.sizeof(s) == size
                   and (product_id == 0x10) == (s is structures.SensorStructOriginal)), None)
    if struct is None:
        raise UnknownFirmwareError(
            f"no decoder for {size}-byte sensor data of product {product_id:#04x} "
            f"fw{fw_version:02d}; upgrade benchlab-pycore")
    bl2 = product_id == 0x11
    return Layout(product_id, fw_version, PRODUCTS.get(product_id, f"{product_id:#04x}"),
                  size, c.response_size("WELCOME") or 9, struct,
                  tuple(structures.SENSOR_POWER_NAMES_BL2 if bl2 else
                        structures.SENSOR_POWER_NAMES_ORIGINAL),
                  tuple(structures.SENSOR_TS_NAMES_BL2 if bl2 else
                        structures.SENSOR_TS_NAMES_ORIGINAL),
                  any(f["name"] == "FaultStatus" for f in c.fields("SensorStruct")))


def decode(raw: bytes, layout: Layout) -> dict[str, float]:
    """Sensor values by our sensor name; absent readings (sentinels) are left out."""
    s = layout.struct.from_buffer_copy(raw)
    t = sensor_translation.translate_sensor_struct(s, layout.product_id, layout.fw_version)
    out: dict[str, float] = {g: t[f"{g}_Power"] for g in GROUPS}
    for rail in layout.rails:
        out[f"{rail}_V"] = t[f"{rail}_Voltage"]
        out[f"{rail}_I"] = t[f"{rail}_Current"]
        out[f"{rail}_P"] = t[f"{rail}_Power"]
    for i in range(len(s.Vin)):
        if t.get(f"VIN_{i}") is not None:
            out[f"VIN{i}"] = t[f"VIN_{i}"]
    out["Vdd"], out["Vref"] = t["Vdd"], t["Vref"]
    if t.get("Chip_Temp") is not None:
        out["Tchip"] = t["Chip_Temp"]
    if s.Tamb != 0 and t.get("Ambient_Temp") is not None:  # 0: the I2C read failed
        out["Tamb"] = t["Ambient_Temp"]
    if s.Hum != 0:
        out["Hum"] = s.Hum / 1000.0  # 0.1 %RH -> fraction (unit "1")
    for name in layout.probes:
        if t.get(name) is not None:
            out[name] = t[name]
    for i, fan in enumerate(s.Fans, start=1):
        out[f"Fan{i}_Enable"] = float(fan.Enable)
        if fan.Duty != ABSENT_DUTY:
            out[f"Fan{i}_Duty"] = fan.Duty / 100.0
            out[f"Fan{i}_RPM"] = float(fan.Tach)
    if s.FanExtDuty != ABSENT_DUTY:
        out["FanExtDuty"] = s.FanExtDuty / 100.0
    out["FanSwitch"] = float(s.FanSwitchStatus)
    out["RGBSwitch"] = float(s.RGBSwitchStatus)
    out["RGBExt"] = float(s.RgbExtStatus)
    if layout.faults:
        out["FaultStatus"] = float(s.FaultStatus)
        out["FaultLog"] = float(s.FaultLog)
    return out


def sensor_infos(uid: str, layout: Layout, identity: dict[str, str],
                 labels: dict[str, str]) -> list[SensorInfo]:
    """Every sensor of one device with OTel names and units. ``labels`` maps the groups
    that are power sources (SYS, CPU, GPU) to their power-source labels."""
    base = {"benchlab.device.uid": uid, **identity}

    def info(name: str, metric: str, unit: str, hw_type: str, **extra: str) -> SensorInfo:
        attrs = {"hw.id": f"{uid}:{name}", "hw.type": hw_type, "hw.name": name, **base,
                 **extra}
        label = labels.get(name)
        return SensorInfo(uid, name, metric, unit, attrs, power_source=label,
                          kind="power" if label else "gauge")

    out = [info("SYS", "hw.host.power", "W", "power_supply"),
           info("CPU", "hw.power", "W", "cpu"), info("GPU", "hw.power", "W", "gpu"),
           info("MB", "hw.power", "W", "power_supply")]
    for rail in layout.rails:
        sub = {"benchlab.rail.wire": "true"} if "_W" in rail else {}
        # Rails have their own metric: hw.power holds the CPU, GPU and MB groups, which
        # partition the machine (they add up to SYS), so sum(hw.power) is not doubled.
        out += [info(f"{rail}_P", "benchlab.rail.power", "W", "power_supply", **sub),
                info(f"{rail}_V", "hw.voltage", "V", "voltage", **sub),
                info(f"{rail}_I", "benchlab.current", "A", "power_supply", **sub)]
    out += [info(f"VIN{i}", "hw.voltage", "V", "voltage") for i in range(13)]
    out += [info("Vdd", "hw.voltage", "V", "voltage"), info("Vref", "hw.voltage", "V", "voltage")]
    out += [info("Tchip", "hw.temperature", "Cel", "temperature", **{"hw.sensor_location": "chip"}),
            info("Tamb", "hw.temperature", "Cel", "temperature",
                 **{"hw.sensor_location": "ambient"}),
            info("Hum", "benchlab.humidity", "1", "temperature")]
    out += [info(p, "hw.temperature", "Cel", "temperature",
                 **{"hw.sensor_location": p.lower()}) for p in layout.probes]
    for i in range(1, 10):
        out += [info(f"Fan{i}_RPM", "hw.fan.speed", "rpm", "fan"),
                info(f"Fan{i}_Duty", "hw.fan.speed_ratio", "1", "fan"),
                info(f"Fan{i}_Enable", "benchlab.fan.enabled", "{state}", "fan")]
    out += [info("FanExtDuty", "hw.fan.speed_ratio", "1", "fan"),
            info("FanSwitch", "benchlab.switch.fan", "{position}", "fan"),
            info("RGBSwitch", "benchlab.switch.rgb", "{position}", "enclosure"),
            info("RGBExt", "benchlab.rgb.external", "{state}", "enclosure")]
    if layout.faults:
        out += [info("FaultStatus", "benchlab.fault.status", "{bitmask}", "enclosure"),
                info("FaultLog", "benchlab.fault.log", "{bitmask}", "enclosure")]
    return out
