"""Hardware monitors (``<sysfs>/class/hwmon``): temperatures, fans and power of whatever
drivers the kernel has (CPU sensors, NVMe, amdgpu ...). amdgpu reports the GPU's power
there (``power1_average``, or ``power1_input`` on newer kernels, in uW): each amdgpu is a
power source ``amdgpu0``, ``amdgpu1`` ... so AMD GPUs are measured as NVIDIA ones are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.host import HostConfig
from otel_benchlab.records import SensorInfo

from .host import HostSourceKind

CHANNEL = re.compile(r"^(temp|fan|power)(\d+)_(input|average)$")
SCALE = {"temp": 1e-3, "fan": 1.0, "power": 1e-6}  # m°C, rpm, uW
METRIC = {"temp": ("hw.temperature", "Cel"), "fan": ("hw.fan.speed", "rpm"),
          "power": ("hw.power", "W")}


class HwmonChannel:
    def __init__(self, chip: str, kind: str, n: str, path: Path, label: str) -> None:
        self.key = f"{chip}.{kind}{n}"
        self.kind = kind
        self.fd = os.open(path, os.O_RDONLY)
        self.label = label

    def read(self) -> float | None:
        try:
            return int(os.pread(self.fd, 32, 0)) * SCALE[self.kind]
        except (OSError, ValueError):
            return None  # a sensor that is asleep or gone reads nothing this time


class Hwmon:
    name = "hwmon"

    def __init__(self, chips: list[tuple[str, str, list[HwmonChannel], str | None]]) -> None:
        self.chips = chips  # (id, driver name, channels, power source label)

    def sensors(self) -> list[SensorInfo]:
        out = []
        for _, driver, channels, label in self.chips:
            for c in channels:
                metric, unit = METRIC[c.kind]
                hw_type = {"temp": "temperature", "fan": "fan"}.get(c.kind, "power_supply")
                if driver == "amdgpu":
                    hw_type = "gpu"
                attrs = {"hw.id": f"hwmon:{c.key}", "hw.type": hw_type,
                         "hw.name": f"{driver} {c.label}", "hw.sensor_location": c.label}
                source = label if (c.kind == "power" and label and
                                   c.key.endswith("power1")) else None
                out.append(SensorInfo(self.name, c.key, metric, unit, attrs,
                                      power_source=source))
        return out

    def read(self) -> dict[str, float]:
        values = {}
        for _, _, channels, _ in self.chips:
            for c in channels:
                v = c.read()
                if v is not None:
                    values[c.key] = v
        return values

    def close(self) -> None:
        for _, _, channels, _ in self.chips:
            for c in channels:
                os.close(c.fd)


def open_hwmon(cfg: HostConfig, counters: AgentCounters) -> tuple[list, str]:
    base = Path(cfg.sysfs_root) / "class" / "hwmon"
    if not base.is_dir():
        return [], f"no {base}: no hardware monitors here"
    chips = []
    amdgpus = 0
    for d in sorted(base.iterdir(), key=lambda p: (len(p.name), p.name)):
        try:
            driver = (d / "name").read_text().strip()
        except OSError:
            continue
        found: dict[tuple[str, str], Path] = {}
        for f in sorted(os.listdir(d)):
            m = CHANNEL.match(f)
            if m:
                kind, n, what = m.groups()
                # power1_average where there is one (the steadier figure), else _input
                if (kind, n) not in found or what == "average":
                    found[(kind, n)] = d / f
        channels = []
        for (kind, n), path in sorted(found.items()):
            lp = d / f"{kind}{n}_label"
            label = lp.read_text().strip() if lp.exists() else f"{kind}{n}"
            try:
                ch = HwmonChannel(d.name, kind, n, path, label)
            except OSError:
                continue
            if ch.read() is not None:
                channels.append(ch)
            else:
                os.close(ch.fd)
        if not channels:
            continue
        label = None
        if driver == "amdgpu" and any(c.kind == "power" for c in channels):
            label = f"amdgpu{amdgpus}"
            amdgpus += 1
        chips.append((d.name, driver, channels, label))
    if not chips:
        return [], f"no readable sensors under {base}"
    return [Hwmon(chips)], ""


SOURCE = HostSourceKind("hwmon", "hwmon", open_hwmon)
