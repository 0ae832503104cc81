"""Replay throughput: marks per second over a generated session of N marks (default 10 M).

Generates an otel-benchlab session (raw/marks and raw/samples Parquet parts, session.json)
with 3 stages per frame at 60 fps, 1 % mark loss and 10 Hz power samples, then replays two
stage pairs through `replay_session` (reading, pairing, energy, ids, aligned Parquet) and
prints the figures. Usage: python benchmarks/replay_throughput.py [--marks N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from otel_benchlab.config import Config
from otel_benchlab.replay import replay_session
from otel_benchlab.schema import MARK_SCHEMA, SAMPLE_SCHEMA

STAGES = ["ingress", "encoded", "inference_done"]


def generate(root: Path, n_marks: int, part_rows: int = 2_000_000) -> Path:
    rng = np.random.default_rng(1)
    session = root / "sessions" / "bench"
    (session / "raw" / "marks").mkdir(parents=True)
    (session / "raw" / "samples").mkdir(parents=True)
    n_frames = n_marks // len(STAGES)
    t0 = 10**12
    frame = np.arange(n_frames, dtype=np.int64)
    base = t0 + frame * 16_666_667
    lat1 = (8e6 * rng.gamma(20, 1 / 20, n_frames)).astype(np.int64)
    lat2 = (12e6 * rng.gamma(20, 1 / 20, n_frames)).astype(np.int64)
    ts = np.stack([base, base + lat1, base + lat1 + lat2], axis=1).ravel()
    stage = np.tile(np.arange(3, dtype=np.int32), n_frames)
    frames = np.repeat(frame, 3)
    keep = rng.random(len(ts)) >= 0.01
    ts, stage, frames = ts[keep], stage[keep], frames[keep]
    order = np.argsort(ts, kind="stable")
    ts, stage, frames = ts[order], stage[order], frames[order]
    for i, lo in enumerate(range(0, len(ts), part_rows)):
        hi = lo + part_rows
        n = len(ts[lo:hi])
        table = pa.table({
            "ts_ns": ts[lo:hi], "ts_unix_ns": ts[lo:hi] + 1_700_000_000 * 10**9,
            "pipeline": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                       pa.array(["bench"])).cast(pa.string()),
            "stream": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                     pa.array(["cam0"])).cast(pa.string()),
            "stage": pa.DictionaryArray.from_arrays(pa.array(stage[lo:hi]),
                                                    pa.array(STAGES)).cast(pa.string()),
            "frame": frames[lo:hi]}, schema=MARK_SCHEMA)
        pq.write_table(table, session / "raw" / "marks" / f"part-{i + 1:06d}.parquet",
                       compression="zstd")
    st = np.arange(t0 - 10**9, ts[-1] + 10**9, 100_000_000, dtype=np.int64)
    watts = 150 + 100 * np.sin(st / 1e10) + rng.normal(0, 2, len(st))
    n = len(st)
    pq.write_table(pa.table({
        "ts_ns": st, "ts_unix_ns": st + 1_700_000_000 * 10**9,
        "source": pa.array(["bench"] * n), "sensor": pa.array(["SYS"] * n),
        "value": watts, "rtt_ns": np.zeros(n, np.int64)}, schema=SAMPLE_SCHEMA),
        session / "raw" / "samples" / "part-000001.parquet", compression="zstd")
    (session / "session.json").write_text(json.dumps({
        "session_id": "bench", "config": {"pairs": [["ingress", "encoded"],
                                                    ["encoded", "inference_done"]]},
        "sensors": [{"source": "bench", "name": "SYS", "power_source": "sys",
                     "kind": "power"}]}))
    return session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--marks", type=int, default=10_000_000)
    ap.add_argument("--capframex", action="store_true",
                    help="also write CapFrameX files (one capture of millions of frames)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-replay-"))
    t = time.perf_counter()
    session = generate(root, args.marks)
    print(f"generated {args.marks:,} marks in {time.perf_counter() - t:.1f} s at {session}")
    cfg = Config()
    cfg.capframex.enabled = args.capframex
    rates = []
    for i in range(args.runs):
        result = replay_session(session, cfg, out=root / f"replay-{i}")
        for line in result.report() if i == 0 else result.report()[:1]:
            print(line)
        rates.append(result.marks / result.seconds)
    rate = statistics.median(rates)
    print(f"replay throughput: median {rate / 1e6:.2f} million marks/s over {args.runs} runs "
          f"(target >= 2.0), {result.marks:,} marks each")
    return 0 if rate >= 2e6 else 1


if __name__ == "__main__":
    sys.exit(main())
