"""``--simulate llm``: a simulated LLM server for a machine without a GPU, so a newcomer sees
energy per request and per token on the live page at once.

A continuous-batching engine in real time: requests arrive (Poisson), wait in a queue,
are scheduled into the running batch up to ``max_batch``, get their prompt prefilled in a
step of their own (time per input token) and then one output token per decode step (a
step's time grows with the batch). The simulated GPU's power follows what the engine runs
(idle, prefill, decode by batch size), sampled as a GPU would be. Each finished request is
sent as vLLM sends it, one ``llm_request`` span with vLLM's ``gen_ai.*`` attributes,
through the OpenTelemetry SDK at its defaults (batch processor, gRPC exporter) into the
agent's own OTLP intake, so it takes the same path as a real server's spans.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from otel_benchlab.records import Sample, SensorInfo

from . import Emit

SIM_LLM_GPU = "GPU-00000000-sim1-0000-0000-00000000011a"


@dataclass
class LLMServerConfig:
    model: str = "sim-llama-8b"
    service: str = "vllm-sim"
    requests_per_s: float = 4.0
    max_batch: int = 16
    input_tokens: float = 400.0  # the median prompt
    output_tokens: float = 120.0  # the median answer
    prefill_s_per_token: float = 0.00004  # a prefill step: 25,000 tokens a second
    decode_step_s: float = 0.012  # a decode step alone; each running request adds:
    decode_step_s_per_request: float = 0.0008
    idle_w: float = 70.0
    prefill_w: float = 330.0
    decode_w: float = 140.0  # a decode step with one request; each more adds:
    decode_w_per_request: float = 12.0
    max_w: float = 400.0


@dataclass
class _Request:
    rid: int
    arrived: int  # monotonic ns
    n_in: int
    n_out: int
    scheduled: int = 0
    first_token: int = 0
    done_tokens: int = 0
    finished: int = 0


@dataclass
class Engine:
    """The batching engine on a simulated clock (ns): ``step`` runs one engine step and
    returns its end; ``power_w`` is what the GPU draws during the step."""

    cfg: LLMServerConfig
    rng: random.Random = field(default_factory=random.Random)
    queue: deque = field(default_factory=deque)
    running: list = field(default_factory=list)
    power_w: float = 0.0
    next_id: int = 0

    def arrive(self, now_ns: int) -> None:
        cfg = self.cfg
        n_in = max(8, int(self.rng.lognormvariate(math.log(cfg.input_tokens), 0.6)))
        n_out = max(2, int(self.rng.lognormvariate(math.log(cfg.output_tokens), 0.7)))
        self.queue.append(_Request(self.next_id, now_ns, n_in, n_out))
        self.next_id += 1

    def step(self, now_ns: int) -> tuple[int, list[_Request]]:
        """(the step's end, the requests it finished)."""
        cfg = self.cfg
        fresh = []
        while self.queue and len(self.running) + len(fresh) < cfg.max_batch:
            r = self.queue.popleft()
            r.scheduled = now_ns
            fresh.append(r)
        if fresh:  # a prefill step: the new prompts, and each request's first token
            tokens = sum(r.n_in for r in fresh)
            end = now_ns + int(1e9 * (0.004 + tokens * cfg.prefill_s_per_token))
            self.power_w = min(cfg.max_w, cfg.prefill_w)
            for r in fresh:
                r.first_token, r.done_tokens = end, 1
            self.running += fresh
            return end, self._finished(end)
        if self.running:
            n = len(self.running)
            end = now_ns + int(1e9 * (cfg.decode_step_s + n * cfg.decode_step_s_per_request))
            self.power_w = min(cfg.max_w, cfg.decode_w + (n - 1) * cfg.decode_w_per_request)
            for r in self.running:
                r.done_tokens += 1
            return end, self._finished(end)
        self.power_w = cfg.idle_w
        return now_ns + 2_000_000, []  # idle: look again in 2 ms

    def _finished(self, end: int) -> list[_Request]:
        done = [r for r in self.running if r.done_tokens >= r.n_out]
        for r in done:
            r.finished = end
        self.running = [r for r in self.running if r.done_tokens < r.n_out]
        return done


def vllm_attributes(r: _Request, model: str) -> dict:
    """The attributes vLLM puts on its ``llm_request`` span (latencies in seconds)."""
    s = 1e-9
    return {
        "gen_ai.response.model": model, "gen_ai.request.id": f"cmpl-sim-{r.rid}",
        "gen_ai.request.max_tokens": 1024, "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 1.0, "gen_ai.request.n": 1,
        "gen_ai.usage.num_sequences": 1,
        "gen_ai.usage.prompt_tokens": r.n_in, "gen_ai.usage.completion_tokens": r.n_out,
        "gen_ai.latency.time_in_queue": (r.scheduled - r.arrived) * s,
        "gen_ai.latency.time_to_first_token": (r.first_token - r.arrived) * s,
        "gen_ai.latency.e2e": (r.finished - r.arrived) * s,
        "gen_ai.latency.time_in_scheduler": 0.0002 * r.n_out,
        "gen_ai.latency.time_in_model_prefill": (r.first_token - r.scheduled) * s,
        "gen_ai.latency.time_in_model_decode": (r.finished - r.first_token) * s,
        "gen_ai.latency.time_in_model_inference": (r.finished - r.scheduled) * s,
    }


class SimulatedLLMServer:
    """The engine in real time on a thread; the GPU's samples go to the agent through
    ``emit``, the finished requests' spans through the OTel SDK to ``endpoint``."""

    name = "sim-llm"

    def __init__(self, cfg: LLMServerConfig, endpoint: str, sample_hz: float,
                 seed: int | None = None) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.sample_hz = sample_hz
        self.engine = Engine(cfg, random.Random(seed))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._energy_j = 0.0
        self._provider = None

    def load(self, t_s: float) -> float:
        """The machine's load in [0.1, 1], for the BENCHLAB emulator: the GPU's draw."""
        return min(1.0, max(0.1, self.engine.power_w / self.cfg.max_w))

    def sensors(self) -> list[SensorInfo]:
        g = {"hw.id": SIM_LLM_GPU, "hw.type": "gpu", "hw.name": "Simulated GPU (LLM)",
             "hw.vendor": "simulated", "hw.model": "SimGPU"}
        return [SensorInfo("sim-gpu0", "power", "hw.power", "W", g, power_source="sim_gpu0",
                           kind="power"),
                SensorInfo("sim-gpu0", "energy", "hw.energy", "J", g)]

    def start(self, emit: Emit) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(resource=Resource.create(
            {"service.name": self.cfg.service}))
        # The SDK at its defaults, as vLLM sets it up: a batch processor, gRPC, no TLS.
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"http://{self.endpoint}", insecure=True)))
        tracer = self._provider.get_tracer("vllm.sim")
        self._threads = [threading.Thread(target=self._serve, args=(tracer,), daemon=True,
                                          name="sim-llm"),
                         threading.Thread(target=self._sample, args=(emit,), daemon=True,
                                          name="sim-llm-gpu")]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._provider is not None:
            self._provider.shutdown()  # sends what the batch processor holds

    def _serve(self, tracer) -> None:  # noqa: ANN001
        from opentelemetry.trace import SpanKind

        eng, rng = self.engine, self.engine.rng
        now = time.monotonic_ns()
        unix = time.time_ns() - now
        next_arrival = now
        while not self._stop.is_set():
            while next_arrival <= now:
                eng.arrive(next_arrival)
                next_arrival += int(rng.expovariate(self.cfg.requests_per_s) * 1e9)
            end, finished = eng.step(now)
            delay = (end - time.monotonic_ns()) / 1e9
            if delay > 0 and self._stop.wait(delay):
                return
            now = end
            for r in finished:
                span = tracer.start_span("llm_request", kind=SpanKind.SERVER,
                                         start_time=r.arrived + unix,
                                         attributes=vllm_attributes(r, self.cfg.model))
                span.end(end_time=r.finished + unix)

    def _sample(self, emit: Emit) -> None:
        period = int(1e9 / self.sample_hz)
        last = time.monotonic_ns()
        while not self._stop.wait(period / 1e9):
            t = time.monotonic_ns()
            watts = self.engine.power_w + self.engine.rng.gauss(0, 1.5)
            self._energy_j += watts * (t - last) * 1e-9
            last = t
            emit(Sample(t, "sim-gpu0", {"power": round(watts, 3), "energy": self._energy_j}))
