"""CPU energy from RAPL through powercap (``<sysfs>/class/powercap``): Intel's
``intel-rapl:*`` zones, which AMD's RAPL driver also provides, with their sub-zones
(core, uncore, dram).

``energy_uj`` counts up and wraps at ``max_energy_range_uj``; each zone is unwrapped into a
counter in J from the agent's start. Metrics ``hw.energy`` / ``hw.power`` with
``hw.type=cpu`` and ``benchlab.rapl.domain`` (``package``, ``core``, ``uncore``, ``dram``,
``psys``): a core or uncore zone is part of its package, so sum one level, not both. The
package zones sum into the power source ``cpu_rapl`` (a counter). Since Linux 5.10 (the
PLATYPUS fix) ``energy_uj`` is readable by root only: the agent says so once, with how to
grant access, and runs without it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.host import HostConfig
from otel_benchlab.records import SensorInfo

from .host import HostSourceKind

ZONE = re.compile(r"^[a-z]+-rapl:\d+(:\d+)?$")  # intel-rapl:0, intel-rapl:0:1 (not -mmio)
PERMISSION_HINT = (
    "RAPL energy counters ({path}) are readable by root only (Linux 5.10 and later); CPU "
    "energy is off. Grant read access with a udev rule, e.g. /etc/udev/rules.d/"
    "99-rapl.rules: ACTION==\"add\", SUBSYSTEM==\"powercap\", RUN+=\"/bin/chmod a+r "
    "/sys%p/energy_uj\" (then `udevadm trigger -s powercap`), or run the agent with "
    "CAP_DAC_READ_SEARCH (Kubernetes: the chart's securityContext)")


def _domain(name: str, top: bool) -> str:
    if name.startswith("package"):
        return "package"
    return name if name in ("core", "uncore", "dram", "psys") else ("zone" if top else name)


class RaplZone:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self.top = self.id.count(":") == 1
        self.label = (path / "name").read_text().strip()
        self.domain = _domain(self.label, self.top)
        rng = path / "max_energy_range_uj"
        self.range_uj = int(rng.read_text()) if rng.exists() else 0
        self.fd = os.open(path / "energy_uj", os.O_RDONLY)
        self.last_uj: int | None = None
        self.joules = 0.0

    def read_uj(self) -> int:
        return int(os.pread(self.fd, 32, 0))

    def update(self, uj: int) -> float:
        """Unwrap: J counted since the agent started."""
        if self.last_uj is not None:
            delta = uj - self.last_uj
            if delta < 0:  # wrapped at max_energy_range_uj
                delta += self.range_uj + 1 if self.range_uj else 0
            self.joules += max(delta, 0) / 1e6
        self.last_uj = uj
        return self.joules


class Rapl:
    name = "rapl"

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self.packages = [z for z in zones if z.top and z.domain == "package"]
        self._last: tuple[int, dict[str, float]] | None = None

    def sensors(self) -> list[SensorInfo]:
        out = []
        for z in self.zones:
            attrs = {"hw.id": f"rapl:{z.id}", "hw.type": "cpu", "hw.name": z.label,
                     "benchlab.rapl.domain": z.domain}
            out.append(SensorInfo(self.name, f"{z.id}.energy", "hw.energy", "J", attrs,
                                  kind="energy"))
            out.append(SensorInfo(self.name, f"{z.id}.power", "hw.power", "W", attrs))
        if self.packages:
            out.append(SensorInfo(self.name, "packages.energy", "", "J",
                                  {"hw.type": "cpu"}, power_source="cpu_rapl", kind="energy"))
        return out

    def read(self) -> dict[str, float]:
        now = time.monotonic_ns()
        values: dict[str, float] = {}
        for z in self.zones:
            values[f"{z.id}.energy"] = z.update(z.read_uj())
        if self._last is not None:
            t0, before = self._last
            dt = (now - t0) / 1e9
            if dt > 0:
                for z in self.zones:
                    key = f"{z.id}.energy"
                    values[f"{z.id}.power"] = (values[key] - before[key]) / dt
        self._last = (now, dict(values))
        if self.packages:
            values["packages.energy"] = sum(values[f"{z.id}.energy"] for z in self.packages)
        return values

    def close(self) -> None:
        for z in self.zones:
            os.close(z.fd)


def open_rapl(cfg: HostConfig, counters: AgentCounters) -> tuple[list, str]:
    base = Path(cfg.sysfs_root) / "class" / "powercap"
    if not base.is_dir():
        return [], f"no {base}: no RAPL (CPU energy) on this machine or in this container"
    paths = sorted(p for p in base.iterdir() if ZONE.match(p.name))
    if not paths:
        return [], f"no RAPL zones in {base}: CPU energy is off"
    zones = []
    for p in paths:
        try:
            zones.append(RaplZone(p))
        except PermissionError:
            return [], PERMISSION_HINT.format(path=p / "energy_uj")
        except (OSError, ValueError) as exc:
            return [], f"RAPL zone {p} cannot be read ({exc}); CPU energy is off"
    rapl = Rapl(zones)
    rapl.read()  # the first read starts every counter
    return [rapl], ""


SOURCE = HostSourceKind("RAPL (CPU energy)", "rapl", open_rapl)
