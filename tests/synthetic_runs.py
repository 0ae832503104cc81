"""Runs with a known truth for the comparison's tests: frames at a steady rate whose
latency and power follow a slowly varying load (a sum of sinusoids with periods of 10-30 s
and random phases), with per-frame noise on top."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from otel_benchlab.session.schema import aligned_schema
from otel_benchlab.views.bootstrap import Frames


def load(t_s: np.ndarray, rng: np.random.Generator, waves: int = 6) -> np.ndarray:
    """A load of mean 0 and standard deviation 1 that changes over 10-30 s."""
    z = np.zeros_like(t_s)
    for _ in range(waves):
        period = rng.uniform(10.0, 30.0)
        z += np.sin(2 * np.pi * t_s / period + rng.uniform(0, 2 * np.pi))
    return z / np.sqrt(waves / 2)


def run(seed: int, seconds: float = 240.0, fps: float = 30.0, latency_ms: float = 20.0,
        latency_factor: float = 1.0, energy_factor: float = 1.0,
        load_effect: float = 0.08, noise: float = 0.12) -> Frames:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 1 / fps)
    z = load(t, rng)
    noise_z = rng.standard_normal(len(t))
    lat = latency_ms * latency_factor * np.exp(load_effect * z + noise * noise_z)
    power = 200.0 * np.exp(0.1 * z + 0.03 * rng.standard_normal(len(t)))
    energy = power * lat / 1e3 * energy_factor
    return Frames(t + lat / 1e3, lat, {"sys": energy}, {"sys": power})


def write_session(folder: Path, pairs: dict[tuple[str, str], Frames],
                  pipeline: str = "bench", stream: str = "cam0") -> Path:
    """A finished session with these pairs' rows as aligned Parquet (one power source,
    ``sys``), as an agent writes it, and a session.json naming the pairs."""
    (folder / "aligned").mkdir(parents=True)
    schema = aligned_schema(["sys"])
    tables = []
    for (a, b), f in pairs.items():
        n = len(f.t_s)
        end = (f.t_s * 1e9).astype(np.int64) + 1_000_000_000_000
        start = end - (f.latency_ms * 1e6).astype(np.int64)
        cols = {"pipeline": [pipeline] * n, "stream": [stream] * n,
                "frame": np.arange(n), "stage_from": [a] * n, "stage_to": [b] * n,
                "start_ns": start, "end_ns": end, "start_unix_ns": start + UNIX,
                "end_unix_ns": end + UNIX, "latency_ms": f.latency_ms,
                "power_source": ["sys"] * n, "power_mean_w": f.power_w["sys"],
                "energy_j": f.energy_j["sys"], "energy_attr_j": f.energy_j["sys"],
                "trace_id": ["0" * 32] * n, "span_id": ["0" * 16] * n}
        tables.append(pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in schema},
                               schema=schema))
    pq.write_table(pa.concat_tables(tables), folder / "aligned" / "part-000001.parquet")
    (folder / "session.json").write_text(json.dumps({
        "session_id": folder.name, "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T10:04:00+00:00", "end_reason": "stopped",
        "config": {"pairs": [list(p) for p in pairs]}}))
    return folder


UNIX = 1_796_000_000_000_000_000


def write_llm_session(folder: Path, seed: int, seconds: float = 300.0, rate: float = 8.0,
                      decode_j_per_token: float = 0.9, prefill_j_per_token: float = 0.02,
                      model: str = "llama-3-8b") -> Path:
    """A served model's requests as the agent writes them (a row per phase and one per
    request, ``processors.genai``): Poisson arrivals, a queue and prefill that follow the
    load, output tokens decoded at ~25 ms each; each request's attributed joules are its
    tokens times the J a token of each phase (decode's follows the load)."""
    rng = np.random.default_rng(seed)
    arrived = np.cumsum(rng.exponential(1 / rate, int(seconds * rate)))
    n = len(arrived)
    z = load(arrived, rng)
    n_in = rng.integers(50, 1500, n)
    n_out = rng.integers(20, 400, n)
    queue = 0.05 * np.exp(0.1 * z + 0.3 * rng.standard_normal(n))
    prefill = n_in * 4e-5 * np.exp(0.05 * z)
    decode = n_out * 0.025 * np.exp(0.05 * z + 0.05 * rng.standard_normal(n))
    e_pre = n_in * prefill_j_per_token * np.exp(0.05 * rng.standard_normal(n))
    e_dec = n_out * decode_j_per_token * np.exp(0.08 * z + 0.1 * rng.standard_normal(n))
    t0 = 1_000_000_000_000
    s = t0 + (arrived * 1e9).astype(np.int64)
    sch = s + (queue * 1e9).astype(np.int64)
    first = sch + (prefill * 1e9).astype(np.int64)
    end = first + (decode * 1e9).astype(np.int64)
    phases = [("arrived", "scheduled", s, sch, np.zeros(n)),
              ("scheduled", "first_token", sch, first, e_pre),
              ("first_token", "finished", first, end, e_dec),
              ("arrived", "finished", s, end, e_pre + e_dec)]
    schema = aligned_schema(["sys"])
    tables = []
    for a, b, start, stop, joules in phases:
        cols = {"pipeline": [model] * n, "stream": ["vllm"] * n, "stage_from": [a] * n,
                "stage_to": [b] * n, "start_ns": start, "end_ns": stop,
                "start_unix_ns": start + UNIX, "end_unix_ns": stop + UNIX,
                "latency_ms": (stop - start) / 1e6, "power_source": ["sys"] * n,
                "power_mean_w": np.full(n, 300.0), "energy_j": joules, "energy_attr_j": joules,
                "trace_id": ["0" * 32] * n, "span_id": ["0" * 16] * n,
                "request_id": [f"cmpl-{i}" for i in range(n)], "input_tokens": n_in,
                "output_tokens": n_out}
        tables.append(pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type))
                                for f in schema}, schema=schema))
    (folder / "aligned").mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables), folder / "aligned" / "part-000001.parquet")
    (folder / "session.json").write_text(json.dumps({
        "session_id": folder.name, "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T10:05:00+00:00", "end_reason": "stopped",
        "config": {"pairs": []},
        "summary": {"energy_j": {"sys": {"total": float((e_pre + e_dec).sum()) * 1.25}}}}))
    return folder
