"""How long ``otel-benchlab report`` and ``compare`` take on big sessions, as a user runs
them (the whole process, every output it writes by default), and how long the report's
charts take to draw in headless Chromium.

    python benchmarks/report_speed.py [--spans 3000000] [--compare-spans 1000000]

Targets (issue 25): a 3 M-span report in under 10 s on 2 cores with peak RSS under 1.5 GB
and the HTML under 8 MB, its charts drawn within 3 s of opening; two 1 M-span sessions
compared in under 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_benchlab.session.schema import aligned_schema  # noqa: E402

PAIRS = [("decode", "infer"), ("infer", "encode")]


def make_session(folder: Path, spans: int, seed: int, slower: float = 1.0) -> Path:
    """An agent's session of ``spans`` stage spans (two pairs, 4 streams, 240 frames/s a
    stream) with a BENCHLAB's SYS power at 10 Hz, written as the agent writes it."""
    rng = np.random.default_rng(seed)
    (folder / "aligned").mkdir(parents=True)
    (folder / "raw" / "samples").mkdir(parents=True)
    per = spans // len(PAIRS)
    streams = 4
    frames = per // streams
    t0 = 1_000_000_000_000
    tables = []
    for k, (a, b) in enumerate(PAIRS):
        frame = np.tile(np.arange(frames), streams)
        stream = np.repeat(np.arange(streams), frames)
        start = t0 + frame * (1_000_000_000 // 240) + stream * 1_000_000 + k * 9_000_000
        z = np.sin(2 * np.pi * start / 20e9)
        lat = 8.0 * (slower if k else 1.0) * np.exp(0.1 * z + 0.12 * rng.standard_normal(
            len(start)))
        end = start + (lat * 1e6).astype(np.int64)
        power = 300 + 40 * z + rng.normal(0, 5, len(start))
        n = len(start)
        cols = {"pipeline": pa.array(["bench"] * 1).take(np.zeros(n, np.int64)),
                "stream": pa.DictionaryArray.from_arrays(
                    pa.array(stream.astype(np.int32)), [f"cam{i}" for i in range(streams)]
                ).cast(pa.string()),
                "frame": frame, "stage_from": pa.array([a]).take(np.zeros(n, np.int64)),
                "stage_to": pa.array([b]).take(np.zeros(n, np.int64)),
                "start_ns": start, "end_ns": end, "start_unix_ns": start + 1_796_000_000 * 10**9,
                "end_unix_ns": end + 1_796_000_000 * 10**9, "latency_ms": lat,
                "power_source": pa.array(["sys"]).take(np.zeros(n, np.int64)),
                "power_mean_w": power, "energy_j": power * lat / 1e3,
                "energy_attr_j": power * lat / 1e3 / 2,
                "trace_id": pa.array(["0" * 32]).take(np.zeros(n, np.int64)),
                "span_id": pa.array(["0" * 16]).take(np.zeros(n, np.int64))}
        schema = aligned_schema(["sys"])
        tables.append(pa.table([cols.get(f.name, pa.nulls(n, f.type)) for f in schema],
                               schema=schema))
    pq.write_table(pa.concat_tables(tables), folder / "aligned" / "part-000001.parquet")
    ts = np.arange(t0, int(tables[0]["end_ns"].to_numpy().max()), 100_000_000)
    z = np.sin(2 * np.pi * ts / 20e9)
    pq.write_table(pa.table({"ts_ns": ts, "source": ["BL"] * len(ts),
                             "sensor": ["SYS"] * len(ts), "value": 300 + 40 * z,
                             "rtt_ns": np.zeros(len(ts), np.int64)}),
                   folder / "raw" / "samples" / "part-000001.parquet")
    (folder / "session.json").write_text(json.dumps({
        "session_id": folder.name, "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T11:00:00+00:00", "end_reason": "stopped",
        "config": {"pairs": [list(p) for p in PAIRS]},
        "sensors": [{"source": "BL", "name": "SYS", "power_source": "sys",
                     "kind": "power"}]}))
    return folder


def timed(args: list[str]) -> tuple[float, float, int]:
    """(wall s, peak RSS MB, exit status) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "otel_benchlab", *args],
                        capture_output=True).returncode
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, rc


def draw_time(html: Path) -> float | None:
    try:
        from tests.browser import browser
    except ImportError:
        return None
    with browser() as b:
        page = b.new_page()
        t = time.perf_counter()
        page.goto(html.as_uri())
        page.wait_for_function("document.body.dataset.drawn === 'yes'", timeout=60_000)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=3_000_000)
    ap.add_argument("--compare-spans", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = make_session(root / "big", args.spans, 1)
        wall, rss, rc = timed(["report", str(big)])
        html = big / "report.html"
        print(f"report, {args.spans:,} spans: {wall:.1f} s whole process (target < 10), "
              f"peak RSS {rss:.0f} MB (< 1500), HTML {html.stat().st_size / 1e6:.2f} MB "
              f"(< 8), exit {rc}")
        drawn = draw_time(html)
        if drawn is not None:
            print(f"  charts drawn {drawn:.2f} s after opening in headless Chromium (< 3)")
        a = make_session(root / "a", args.compare_spans, 2)
        b = make_session(root / "b", args.compare_spans, 3, slower=1.05)
        wall, rss, rc = timed(["compare", str(a), str(b), "--json", str(root / "c.json")])
        verdicts = [(p["to"], m["verdict"]) for p in json.loads((root / "c.json").read_text())
                    ["pairs"] for m in p["metrics"] if m["metric"] == "latency_p50_ms"]
        print(f"compare, 2 x {args.compare_spans:,} spans: {wall:.1f} s whole process "
              f"(target < 15), peak RSS {rss:.0f} MB, exit {rc}; p50 verdicts {verdicts}")
        print(f"  ({os.cpu_count()} cores here)")


if __name__ == "__main__":
    main()
