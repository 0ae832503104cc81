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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otel_benchlab.components import BuildContext, Built, Component
from otel_benchlab.records import Sample, SensorInfo, StageMark
from otel_benchlab.settings import setting_error

from . import Emit

if TYPE_CHECKING:
    from otel_benchlab.config import Config

SIM_SOURCES = ("pipeline", "benchlab", "gpu")


@dataclass
class SimulateConfig:
    # frames a second of each simulated stream
    fps: float = 60.0
    # the simulated pipeline's stages, in order
    stages: list[str] = field(default_factory=lambda: ["ingress", "encoded", "inference_done"])
    # its streams
    streams: list[str] = field(default_factory=lambda: ["cam0"])
    # its name
    pipeline: str = "sim"
    # one mean latency per step between stages
    stage_latency_ms: list[float] = field(default_factory=lambda: [8.0, 12.0])
    jitter: float = 0.15  # relative standard deviation of each stage latency
    mark_loss: float = 0.01  # probability that any one mark is lost
    # marks carry frame ids (false: paired by order)
    frame_ids: bool = True
    benchlab_product: str = "original"  # the emulated meter: "original" or "benchlab2"
    # the emulated BENCHLAB's firmware version
    benchlab_firmware: int = 6
    # Which simulated sources run with --simulate; leave one out to use the real one
    # (real probes against simulated power: sources = ["benchlab", "gpu"]).
    sources: list[str] = field(default_factory=lambda: list(SIM_SOURCES))
    # What the simulated machine runs: "video" (a pipeline of stage marks) or "llm" (an
    # LLM server whose requests' spans go to the agent's OTLP intake; --simulate llm)
    workload: str = "video"


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

    HANDOVER_NS = 50_000_000

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
            # Hand marks over in batches, like a buffering probe: they carry their own
            # time, so a delivery up to HANDOVER_NS late changes nothing downstream, and
            # each wake-up of a thread costs real CPU (tens of us on a VM).
            if not self._sleep_until(max(next_frame, now + self.HANDOVER_NS)):
                return


class SimulatedGpu(_Thread):
    """A GPU (power, an energy counter, utilisation, memory) that follows the load, sampled
    at ``hz`` on absolute deadlines. The simulated power meter is the BENCHLAB emulator,
    read through the real BENCHLAB receiver."""

    def __init__(self, hz: float, seed: int | None = None) -> None:
        super().__init__("sim-gpu")
        self.hz = hz
        self.rng = random.Random(seed)
        self.t0_ns = time.monotonic_ns()
        self._energy_j = 0.0
        self._last_ns: int | None = None

    def sensors(self) -> list[SensorInfo]:
        g = {"hw.id": SIM_GPU_UUID, "hw.type": "gpu", "hw.name": "Simulated GPU",
             "hw.vendor": "simulated", "hw.model": "SimGPU"}
        return [
            SensorInfo("sim-gpu0", "power", "hw.power", "W", g),
            SensorInfo("sim-gpu0", "energy", "hw.energy", "J", g, power_source="sim_gpu0",
                       kind="energy"),
            SensorInfo("sim-gpu0", "utilization", "hw.gpu.utilization", "1", g),
            SensorInfo("sim-gpu0", "memory_used", "hw.gpu.memory.usage", "By", g),
        ]

    def readings(self, t_ns: int) -> dict[str, float]:
        load = load_at((t_ns - self.t0_ns) / 1e9)
        watts = (35 + 230 * load) * 0.92 + self.rng.gauss(0, 2)
        if self._last_ns is not None:
            self._energy_j += watts * (t_ns - self._last_ns) * 1e-9
        self._last_ns = t_ns
        return {"power": round(watts, 3), "energy": self._energy_j,
                "utilization": round(min(1.0, load * 1.05), 3),
                "memory_used": float(int((2 + 6 * load) * 2**30))}

    def _run(self, emit: Emit) -> None:
        period = int(1e9 / self.hz)
        deadline = time.monotonic_ns()
        while True:
            t = time.monotonic_ns()
            emit(Sample(t, "sim-gpu0", self.readings(t)))
            deadline += period
            now = time.monotonic_ns()
            if deadline < now:  # fell behind (suspended?): skip, do not burst
                deadline = now + period - (now - deadline) % period
            if not self._sleep_until(deadline):
                return


def start_emulator(cfg: Config):
    """The simulated power meter: a BENCHLAB emulator on a pseudo-terminal whose power
    follows the simulated load; the real reader reads it."""
    from .benchlab_emulator import BenchlabEmulator

    product = 0x11 if cfg.sim.benchlab_product == "benchlab2" else 0x10
    return BenchlabEmulator(product, cfg.sim.benchlab_firmware, load=load_at).start()


def build(cfg: Config, ctx: BuildContext) -> Built:
    if cfg.sim.workload == "llm":
        return _build_llm(cfg, ctx)
    built = Built()
    sources = cfg.sim.sources
    if "pipeline" in sources:
        built.receivers.append(SimulatedPipeline(cfg.sim))
    if "benchlab" in sources:
        from .benchlab import benchlab_receiver

        emulator = start_emulator(cfg)
        built.cleanups.append(emulator.stop)
        built.receivers.append(benchlab_receiver(cfg, ctx.counters, emulator))
    if "gpu" in sources:
        built.receivers.append(SimulatedGpu(cfg.sample_hz))
    return built


def _build_llm(cfg: Config, ctx: BuildContext) -> Built:
    """The LLM server (its GPU and its spans) and a BENCHLAB whose load follows it."""
    from .simulated_llm import LLMServerConfig, SimulatedLLMServer

    built = Built()
    server = SimulatedLLMServer(LLMServerConfig(), cfg.intake.otlp_grpc, cfg.sample_hz)
    if "pipeline" in cfg.sim.sources or "gpu" in cfg.sim.sources:
        built.receivers.append(server)
    if "benchlab" in cfg.sim.sources:
        from .benchlab import benchlab_receiver
        from .benchlab_emulator import BenchlabEmulator

        product = 0x11 if cfg.sim.benchlab_product == "benchlab2" else 0x10
        emulator = BenchlabEmulator(product, cfg.sim.benchlab_firmware,
                                    load=server.load).start()
        built.cleanups.append(emulator.stop)
        built.receivers.append(benchlab_receiver(cfg, ctx.counters, emulator))
    return built


def validate(sim: SimulateConfig) -> None:
    if not 0.0 <= sim.mark_loss < 1.0:
        raise setting_error("sim.mark_loss", "must be in [0, 1)")
    if len(sim.stages) < 2:
        raise setting_error("sim.stages", "needs at least two stages")
    if len(sim.stage_latency_ms) != len(sim.stages) - 1:
        raise setting_error("sim.stage_latency_ms", "needs one latency per step between "
                            f"stages ({len(sim.stages) - 1} for {len(sim.stages)} stages)")
    if sim.benchlab_product not in ("original", "benchlab2"):
        raise setting_error("sim.benchlab_product", "use 'original' or 'benchlab2'")
    unknown = [x for x in sim.sources if x not in SIM_SOURCES]
    if unknown:
        raise setting_error("sim.sources", f"{unknown!r}: use any of {', '.join(SIM_SOURCES)}")
    if sim.workload not in ("video", "llm"):
        raise setting_error("sim.workload", "use 'video' or 'llm'")
    if not sim.streams or not all(sim.streams):
        raise setting_error("sim.streams", "needs at least one stream name")


COMPONENT = Component(
    "simulated", "sim", lambda cfg: cfg.simulate, build, settings=SimulateConfig,
    ranges={"fps": (0, 1000), "stage_latency_ms": (0.0, 60_000), "jitter": (0.0, 10),
            "benchlab_firmware": (2, 255)},
    validate=validate)
