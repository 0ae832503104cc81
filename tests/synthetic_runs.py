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
        tables.append(pa.table({k: cols[k] for k in schema.names}, schema=schema))
    pq.write_table(pa.concat_tables(tables), folder / "aligned" / "part-000001.parquet")
    (folder / "session.json").write_text(json.dumps({
        "session_id": folder.name, "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T10:04:00+00:00", "end_reason": "stopped",
        "config": {"pairs": [list(p) for p in pairs]}}))
    return folder


UNIX = 1_796_000_000_000_000_000
