"""Fake sysfs trees (powercap RAPL zones, hwmon chips) laid out as the kernel lays them out,
for the host receivers' tests and checks."""

from __future__ import annotations

from pathlib import Path


def rapl_zone(root: Path, zone: str, name: str, uj: int,
              max_uj: int = 262143328850) -> Path:
    d = root / "class" / "powercap" / zone
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_uj(zone_dir: Path, uj: int) -> None:
    (zone_dir / "energy_uj").write_text(f"{uj}\n")


def hwmon_chip(root: Path, n: int, driver: str, files: dict[str, str]) -> Path:
    d = root / "class" / "hwmon" / f"hwmon{n}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(driver + "\n")
    for name, value in files.items():
        (d / name).write_text(value + "\n")
    return d


def machine(root: Path) -> Path:
    """One package with core and dram sub-zones, a CPU sensor chip, and an amdgpu."""
    rapl_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    rapl_zone(root, "intel-rapl:0:0", "core", 500_000)
    rapl_zone(root, "intel-rapl:0:1", "dram", 100_000)
    rapl_zone(root, "intel-rapl-mmio:0", "package-0", 7)  # the same package again: skipped
    hwmon_chip(root, 0, "k10temp", {"temp1_input": "45125", "temp1_label": "Tctl"})
    hwmon_chip(root, 1, "amdgpu", {"power1_average": "95000000", "temp1_input": "60000",
                                   "temp1_label": "edge", "fan1_input": "1200"})
    return root
