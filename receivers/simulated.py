"""Simulated sources for a machine without the hardware: a pipeline with frame ids, power
rails and a GPU. All follow one load curve, so a busy stretch shows up as longer stages
and more power at once, and the correlation is visible downstream.
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time

from otel_benchlab.config import SimulateConfig
from otel_benchlab.records import Sample, SensorInfo, StageMark

from . import Emit

SIM_BENCHLAB_UID = "SIM00BENCHLAB"
SIM_GPU_UUID = "GPU-00000000-sim0-0000-0000-000000000000"


def load_at(t_s: float) -> float:
    """Load in [0.1, 1]: a 20 s wave with a faster ripple."""
    x = 0.55 + 0.3 * math.sin(2 * math.pi * t_s / 20.0) + 0.1 * math.sin(2 * math.pi * t_s / 3.1)
    return min(1.0, max(0.1, x))


class _Thread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, emit: Emit) -> None:
        self._thread = threading.Thread(target=self._run, args=(emit,), name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sleep_until(self, deadline_ns: int) -> bool:
        """Sleep to an absolute deadline (no drift); False once stopped."""
        delay = (deadline_ns - time.monotonic_ns()) / 1e9
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()

    def _run(self, emit: Emit) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class SimulatedPipeline(_Thread):
    """Frames at ``fps`` through ``stages``; each step's latency grows with the load and
    jitters; each mark may be lost with probability ``mark_loss``."""

    def __init__(self, cfg: SimulateConfig, seed: int | None = None) -> None:
        super().__init__("sim-pipeline")
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.t0_ns = time.monotonic_ns()

    def sensors(self) -> list[SensorInfo]:
        return []

    def _frame_marks(self, frame: int, t_ns: int) -> list[StageMark]:
        cfg = self.cfg
        marks = []
        for stream in cfg.streams:
            t = t_ns
            for k, stage in enumerate(cfg.stages):
                if k:
                    base = cfg.stage_latency_ms[k - 1] * 1e6
                    load = load_at((t - self.t0_ns) / 1e9)
                    step = base * (0.6 + 0.8 * load) * max(0.05, self.rng.gauss(1, cfg.jitter))
                    t += int(step)
                if self.rng.random() >= cfg.mark_loss:
                    marks.append(StageMark(t, cfg.pipeline, stream, stage,
                                           frame if cfg.frame_ids else None))
        return marks

    def _run(self, emit: Emit) -> None:
        period = int(1e9 / self.cfg.fps)
        next_frame = time.monotonic_ns()
        frame = 0
        heap: list[tuple[int, int, StageMark]] = []
        seq = 0
        while True:
            now = time.monotonic_ns()
            while next_frame <= now:
                for m in self._frame_marks(frame, next_frame):
                    heapq.heappush(heap, (m.ts_ns, seq, m))
                    seq += 1
                frame += 1
                next_frame += period
            while heap and heap[0][0] <= now:
                emit(heapq.heappop(heap)[2])
            # Wake once per frame: marks carry their own time, so handing them over up to
            # a frame late changes nothing downstream and saves most of the wake-ups.
            if not self._sleep_until(next_frame):
                return


class SimulatedPower(_Thread):
    """A BENCHLAB-like meter (CPU, GPU, MB rails and the SYS total) and a GPU with an
    energy counter, sampled at ``hz`` on absolute deadlines."""

    RAILS = {"EPS1": ("CPU", 0.55), "EPS2": ("CPU", 0.45), "ATX12V": ("MB", 0.6),
             "ATX5V": ("MB", 0.25), "ATX3V": ("MB", 0.15), "PCIE1": ("GPU", 0.35),
             "HPWR1": ("GPU", 0.65)}

    def __init__(self, hz: float, seed: int | None = None) -> None:
        super().__init__("sim-power")
        self.hz = hz
        self.rng = random.Random(seed)
        self.t0_ns = time.monotonic_ns()
        self._gpu_energy_j = 0.0
        self._last_ns: int | None = None

    def sensors(self) -> list[SensorInfo]:
        uid = SIM_BENCHLAB_UID
        ident = {"benchlab.device.name": "simulated BENCHLAB"}
        out = [
            SensorInfo(uid, "SYS", "hw.host.power", "W", {"hw.id": f"{uid}:SYS",
                       "hw.name": "SYS", **ident}, power_source="SYS", kind="power"),
            SensorInfo(uid, "CPU", "hw.power", "W", {"hw.id": f"{uid}:CPU", "hw.type": "cpu",
                       "hw.name": "CPU", **ident}, power_source="CPU", kind="power"),
            SensorInfo(uid, "GPU", "hw.power", "W", {"hw.id": f"{uid}:GPU", "hw.type": "gpu",
                       "hw.name": "GPU", **ident}, power_source="GPU", kind="power"),
            SensorInfo(uid, "MB", "hw.power", "W", {"hw.id": f"{uid}:MB",
                       "hw.type": "power_supply", "hw.name": "MB", **ident}),
            SensorInfo(uid, "Tchip", "hw.temperature", "Cel", {"hw.id": f"{uid}:Tchip",
                       "hw.type": "temperature", "hw.sensor_location": "chip", **ident}),
        ]
        for rail in self.RAILS:
            out.append(SensorInfo(uid, f"{rail}_P", "hw.power", "W", {
                "hw.id": f"{uid}:{rail}", "hw.type": "power_supply", "hw.name": rail, **ident}))
            out.append(SensorInfo(uid, f"{rail}_V", "hw.voltage", "V", {
                "hw.id": f"{uid}:{rail}", "hw.type": "voltage", "hw.name": rail, **ident}))
        g = {"hw.id": SIM_GPU_UUID, "hw.type": "gpu", "hw.name": "Simulated GPU",
             "hw.vendor": "simulated", "hw.model": "SimGPU"}
        out += [
            SensorInfo("sim-gpu0", "power", "hw.power", "W", g),
            SensorInfo("sim-gpu0", "energy", "hw.energy", "J", g, power_source="gpu0",
                       kind="energy"),
            SensorInfo("sim-gpu0", "utilization", "hw.gpu.utilization", "1", g),
            SensorInfo("sim-gpu0", "memory_used", "hw.gpu.memory.usage", "By", g),
        ]
        return out

    def readings(self, t_ns: int) -> tuple[dict[str, float], dict[str, float]]:
        load = load_at((t_ns - self.t0_ns) / 1e9)
        noise = self.rng.gauss
        groups = {"CPU": 30 + 70 * load + noise(0, 1.5), "GPU": 35 + 230 * load + noise(0, 3),
                  "MB": 22 + 6 * load + noise(0, 0.5)}
        bench: dict[str, float] = {k: round(v, 3) for k, v in groups.items()}
        bench["SYS"] = round(sum(groups.values()), 3)
        bench["Tchip"] = round(38 + 20 * load, 1)
        for rail, (group, share) in self.RAILS.items():
            volts = {"ATX5V": 5.02, "ATX3V": 3.31}.get(rail, 12.05) + noise(0, 0.01)
            bench[f"{rail}_P"] = round(groups[group] * share, 3)
            bench[f"{rail}_V"] = round(volts, 3)
        gpu_w = groups["GPU"] * 0.92
        if self._last_ns is not None:
            self._gpu_energy_j += gpu_w * (t_ns - self._last_ns) * 1e-9
        self._last_ns = t_ns
        gpu = {"power": round(gpu_w, 3), "energy": self._gpu_energy_j,
               "utilization": round(min(1.0, load * 1.05), 3),
               "memory_used": float(int((2 + 6 * load) * 2**30))}
        return bench, gpu

    def _run(self, emit: Emit) -> None:
        period = int(1e9 / self.hz)
        deadline = time.monotonic_ns()
        while True:
            t = time.monotonic_ns()
            bench, gpu = self.readings(t)
            emit(Sample(t, SIM_BENCHLAB_UID, bench))
            emit(Sample(t, "sim-gpu0", gpu))
            deadline += period
            now = time.monotonic_ns()
            if deadline < now:  # fell behind (suspended?): skip, do not burst
                deadline = now + period - (now - deadline) % period
            if not self._sleep_until(deadline):
                return
