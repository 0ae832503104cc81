"""Runs with a known truth for the comparison's tests: frames at a steady rate whose
latency and power follow a slowly varying load (a sum of sinusoids with periods of 10-30 s
and random phases), with per-frame noise on top."""

from __future__ import annotations

import numpy as np

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
