"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``): every GPU, and every
MIG instance where MIG is on.

Per GPU (``hw.id`` = its UUID; ``hw.model``, ``hw.serial_number``, ``hw.driver_version``,
``benchlab.gpu.pci_bus_id``): utilisation (general, memory, encoder, decoder), memory used
and total, power and its limit, temperature, SM and memory clocks, clock throttle reasons,
PCIe throughput, and energy: NVML's own counter (``nvmlDeviceGetTotalEnergyConsumption``,
mJ) where the GPU has one, else the power integrated here. Each GPU is a power source
``gpu0``, ``gpu1`` ... (by index; ``gpu`` is the BENCHLAB's GPU group); with several GPUs
their sum is ``gpu_sum``. Per MIG instance (its own UUID, ``benchlab.gpu.parent_id``):
memory used and total (NVML measures power per physical GPU only).

What a GPU does not support is found at start, skipped for that GPU (one debug line) and
never asked again. No driver or library: one line, no GPUs. A GPU that falls off the bus
(``GpuIsLost``): one error line, its readings stop, and it is looked for again by UUID
every ``RETRY_S``; when it is back it is read again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.host import HostConfig
from otel_benchlab.records import SensorInfo

from .host import HostSourceKind

log = logging.getLogger("otel_benchlab")

RETRY_S = 5.0


def load_nvml() -> Any:
    import pynvml

    return pynvml


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _Gpu:
    def __init__(self, nv: Any, index: int, handle: Any, driver: str) -> None:
        self.index = index
        self.handle = handle
        self.label = f"gpu{index}"
        self.uuid = _text(nv.nvmlDeviceGetUUID(handle))
        self.attrs = {"hw.id": self.uuid, "hw.type": "gpu", "hw.name": self.label,
                      "hw.vendor": "nvidia", "hw.driver_version": driver}
        for key, fn in (("hw.model", lambda: nv.nvmlDeviceGetName(handle)),
                        ("hw.serial_number", lambda: nv.nvmlDeviceGetSerial(handle)),
                        ("benchlab.gpu.pci_bus_id",
                         lambda: nv.nvmlDeviceGetPciInfo(handle).busId)):
            with contextlib.suppress(nv.NVMLError):
                self.attrs[key] = _text(fn())
        self.lost = False
        self.retry_at = 0.0
        self.fields: dict[str, Callable[[], float]] = {}
        self.metrics: dict[str, tuple[str, str, dict[str, str]]] = {}
        self.has_counter = False
        self.energy_j = 0.0  # integrated from power where there is no counter
        self.last_power: tuple[int, float] | None = None
        self.migs: list[tuple[str, Any, dict[str, str]]] = []


class NvidiaGpus:
    name = "nvml"

    def __init__(self, nv: Any, counters: AgentCounters) -> None:
        self.nv = nv
        self.counters = counters
        driver = ""
        with contextlib.suppress(nv.NVMLError):
            driver = _text(nv.nvmlSystemGetDriverVersion())
        self.gpus: list[_Gpu] = []
        for i in range(nv.nvmlDeviceGetCount()):
            try:
                gpu = _Gpu(nv, i, nv.nvmlDeviceGetHandleByIndex(i), driver)
            except nv.NVMLError as exc:
                log.warning("NVIDIA GPU %d cannot be read (%s); it is left out", i, exc)
                continue
            self._probe_fields(gpu)
            self._find_migs(gpu)
            self.gpus.append(gpu)
            counters.declare("device.disconnects", source=gpu.uuid)

    # -- what each GPU supports, found once ----------------------------------------------
    def _probe_fields(self, gpu: _Gpu) -> None:
        nv, h = self.nv, gpu.handle
        util = {"hw.gpu.task": "general"}
        candidates: list[tuple[str, str, str, dict[str, str], Callable[[], float]]] = [
            ("power", "hw.power", "W", {}, lambda: nv.nvmlDeviceGetPowerUsage(h) / 1e3),
            ("energy", "hw.energy", "J", {},
             lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3),
            ("utilization", "hw.gpu.utilization", "1", util,
             lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu / 100.0),
            ("memory_utilization", "hw.gpu.memory.utilization", "1", {},
             lambda: nv.nvmlDeviceGetUtilizationRates(h).memory / 100.0),
            ("encoder_utilization", "hw.gpu.utilization", "1", {"hw.gpu.task": "encoder"},
             lambda: nv.nvmlDeviceGetEncoderUtilization(h)[0] / 100.0),
            ("decoder_utilization", "hw.gpu.utilization", "1", {"hw.gpu.task": "decoder"},
             lambda: nv.nvmlDeviceGetDecoderUtilization(h)[0] / 100.0),
            ("memory_used", "hw.gpu.memory.usage", "By", {},
             lambda: float(nv.nvmlDeviceGetMemoryInfo(h).used)),
            ("memory_total", "hw.gpu.memory.limit", "By", {},
             lambda: float(nv.nvmlDeviceGetMemoryInfo(h).total)),
            ("power_limit", "benchlab.gpu.power.limit", "W", {},
             lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3),
            ("temperature", "hw.temperature", "Cel", {"hw.sensor_location": "gpu"},
             lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
            ("clock_sm", "benchlab.gpu.clock.sm", "Hz", {},
             lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) * 1e6),
            ("clock_memory", "benchlab.gpu.clock.memory", "Hz", {},
             lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM) * 1e6),
            ("throttle_reasons", "benchlab.gpu.throttle_reasons", "{bitmask}", {},
             lambda: float(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))),
            ("pcie_tx", "benchlab.gpu.pcie.throughput", "By/s",
             {"network.io.direction": "transmit"},
             lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) * 1e3),
            ("pcie_rx", "benchlab.gpu.pcie.throughput", "By/s",
             {"network.io.direction": "receive"},
             lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) * 1e3),
        ]
        for field, metric, unit, extra, read in candidates:
            try:
                read()
            except nv.NVMLError as exc:
                log.debug("GPU %s (%s): %s not read (%s)", gpu.label, gpu.uuid, field, exc)
                continue
            gpu.fields[field] = read
            gpu.metrics[field] = (metric, unit, {**gpu.attrs, **extra})
        gpu.has_counter = "energy" in gpu.fields
        if not gpu.has_counter and "power" in gpu.fields:
            # No counter (older GPUs): the energy is the power integrated here, sample by
            # sample, so the GPU is still a power source of one kind.
            gpu.metrics["energy"] = ("hw.energy", "J", dict(gpu.attrs))

    def _find_migs(self, gpu: _Gpu) -> None:
        nv = self.nv
        try:
            current, _ = nv.nvmlDeviceGetMigMode(gpu.handle)
        except nv.NVMLError:
            return  # not a MIG-capable GPU
        if current != nv.NVML_DEVICE_MIG_ENABLE:
            return
        for k in range(nv.nvmlDeviceGetMaxMigDeviceCount(gpu.handle)):
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, k)
                uuid = _text(nv.nvmlDeviceGetUUID(mig))
            except nv.NVMLError:
                continue  # an empty slot
            attrs = {"hw.id": uuid, "hw.type": "gpu", "hw.name": f"{gpu.label}/mig{k}",
                     "hw.vendor": "nvidia", "benchlab.gpu.parent_id": gpu.uuid}
            gpu.migs.append((f"{gpu.label}.mig{k}", mig, attrs))

    # -- the receiver's side ---------------------------------------------------------------
    def sensors(self) -> list[SensorInfo]:
        out = []
        for g in self.gpus:
            for field, (metric, unit, attrs) in g.metrics.items():
                out.append(SensorInfo(self.name, f"{g.label}.{field}", metric, unit, attrs,
                                      power_source=g.label if field == "energy" else None,
                                      kind="energy" if field == "energy" else "gauge"))
            for key, _, attrs in g.migs:
                out.append(SensorInfo(self.name, f"{key}.memory_used", "hw.gpu.memory.usage",
                                      "By", attrs))
                out.append(SensorInfo(self.name, f"{key}.memory_total",
                                      "hw.gpu.memory.limit", "By", attrs))
        if sum(1 for g in self.gpus if "energy" in g.metrics) > 1:
            out.append(SensorInfo(self.name, "sum.energy", "", "J", {"hw.type": "gpu"},
                                  power_source="gpu_sum", kind="energy"))
        return out

    def read(self) -> dict[str, float]:
        nv = self.nv
        values: dict[str, float] = {}
        energies = []
        now = time.monotonic()
        for g in self.gpus:
            if g.lost and not self._back(g, now):
                continue
            try:
                for field, read in g.fields.items():
                    values[f"{g.label}.{field}"] = read()
                for key, mig, _ in g.migs:
                    mem = nv.nvmlDeviceGetMemoryInfo(mig)
                    values[f"{key}.memory_used"] = float(mem.used)
                    values[f"{key}.memory_total"] = float(mem.total)
            except nv.NVMLError_GpuIsLost:
                self._lose(g, now)
                for k in [k for k in values if k.startswith(f"{g.label}.")]:
                    del values[k]
                continue
            if not g.has_counter and f"{g.label}.power" in values:
                t = time.monotonic_ns()
                p = values[f"{g.label}.power"]
                if g.last_power is not None:
                    g.energy_j += (t - g.last_power[0]) * 1e-9 * (p + g.last_power[1]) / 2
                g.last_power = (t, p)
                values[f"{g.label}.energy"] = g.energy_j
            if f"{g.label}.energy" in values:
                energies.append(values[f"{g.label}.energy"])
        # The sum only when every GPU has its figure: a lost GPU leaves a gap, not a dip.
        expected = sum(1 for g in self.gpus if "energy" in g.metrics)
        if expected > 1 and len(energies) == expected:
            values["sum.energy"] = sum(energies)
        return values

    def _lose(self, g: _Gpu, now: float) -> None:
        g.lost = True
        g.retry_at = now + RETRY_S
        g.last_power = None
        self.counters.add("device.disconnects", 1, source=g.uuid)
        log.error("NVIDIA GPU %s (%s) fell off the bus (GpuIsLost): its readings stop; it is "
                  "looked for again every %.0f s. Check `nvidia-smi` and the kernel log "
                  "(Xid errors).", g.label, g.uuid, RETRY_S)

    def _back(self, g: _Gpu, now: float) -> bool:
        if now < g.retry_at:
            return False
        g.retry_at = now + RETRY_S
        nv = self.nv
        try:
            handle = nv.nvmlDeviceGetHandleByUUID(g.uuid)
            nv.nvmlDeviceGetPowerUsage(handle)
        except nv.NVMLError:
            return False
        g.handle = handle
        g.lost = False
        # The readers hold the old handle: make them again for the new one.
        fields = set(g.fields)
        self._probe_fields(g)
        g.fields = {k: v for k, v in g.fields.items() if k in fields}
        self.counters.add("device.reconnects", 1, source=g.uuid)
        log.warning("NVIDIA GPU %s (%s) is back; reading it again", g.label, g.uuid)
        return True

    def close(self) -> None:
        with contextlib.suppress(self.nv.NVMLError):
            self.nv.nvmlShutdown()


def open_nvml(cfg: HostConfig, counters: AgentCounters,
              loader: Callable[[], Any] = load_nvml) -> tuple[list, str]:
    try:
        nv = loader()
    except ImportError:
        return [], "nvidia-ml-py is not installed: NVIDIA GPUs are not read"
    try:
        nv.nvmlInit()
    except nv.NVMLError_LibraryNotFound:
        return [], ("no NVIDIA driver library (libnvidia-ml.so.1) on this machine or in "
                    "this container: NVIDIA GPUs are not read (in Kubernetes, run the agent "
                    "with the NVIDIA runtime class or the device plugin's libraries)")
    except nv.NVMLError as exc:
        return [], f"NVML did not start ({exc}): NVIDIA GPUs are not read"
    gpus = NvidiaGpus(nv, counters)
    if not gpus.gpus:
        gpus.close()
        return [], "NVML found no NVIDIA GPU"
    return [gpus], ""


SOURCE = HostSourceKind("NVIDIA GPUs (NVML)", "nvml", open_nvml)
