"""Replay throughput: marks per second over a generated session of N marks (default 10 M).

Generates an otel-benchlab session (raw/marks and raw/samples Parquet parts, session.json)
with 3 stages per frame at 60 fps, 1 % mark loss and 10 Hz power samples, then replays its
two stage pairs as a user runs it: the whole `otel-benchlab replay` process with every
output it writes by default (aligned Parquet and CapFrameX CSV + JSON), timed from exec to
exit. With --in-process, `replay_session` alone (reading, pairing, energy, ids, aligned
Parquet).

With --seed the same marks and power are written in the seed project's JSONL format
(raw/pipeline.jsonl, raw/benchlab.jsonl) and replayed the same way.

The limit, measured in the same run beside each replay ("the file formats' own time"):
the interpreter starting with the libraries the formats need (numpy and pyarrow's compute,
JSON and Parquet modules; none of ours), Arrow reading the input (the session's marks, or
Arrow's JSON reader parsing pipeline.jsonl), and the kernel taking that replay's own
output bytes again (its files written afresh on the same filesystem, the
Parquet parts fsynced as replay does). That is what any replay of the session costs before
it pairs a mark or formats a number; the rate it allows is printed beside replay's, with
the ratio, and with reading and writing overlapped completely as well.

With --seed --bad-lines N, each run also replays a copy of the seed session with N torn
lines spread evenly through pipeline.jsonl and benchlab.jsonl's last line torn (as a crash
leaves it), alternating with the clean one, and prints what the bad lines cost.

Usage: python benchmarks/replay_throughput.py [--marks N] [--seed [--bad-lines N] |
       --in-process] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from otel_benchlab.config import Config
from otel_benchlab.session.replay import replay_session
from otel_benchlab.session.schema import MARK_SCHEMA, SAMPLE_SCHEMA

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
        "value": watts, "rtt_ns": np.zeros(n, np.int64),
        "uncertain": np.zeros(n, np.bool_)}, schema=SAMPLE_SCHEMA),
        session / "raw" / "samples" / "part-000001.parquet", compression="zstd")
    (session / "session.json").write_text(json.dumps({
        "session_id": "bench", "config": {"pairs": [["ingress", "encoded"],
                                                    ["encoded", "inference_done"]]},
        "sensors": [{"source": "bench", "name": "SYS", "power_source": "sys",
                     "kind": "power"}]}))
    return session


def write_seed(session: Path, root: Path) -> Path:
    """The generated session's marks and power as the seed project's JSONL."""
    import pyarrow.dataset as ds

    seed = root / "sessions" / "seed"
    (seed / "raw").mkdir(parents=True)
    marks = ds.dataset(session / "raw" / "marks").to_table().to_pydict()
    with open(seed / "raw" / "pipeline.jsonl", "w") as fh:
        for ts, stage, frame in zip(marks["ts_ns"], marks["stage"], marks["frame"],
                                    strict=True):
            fh.write(f'{{"ts_ns": {ts}, "source": "cam0", "kv": {{"stage": "{stage}", '
                     f'"frame": {frame}}}}}\n')
    samples = ds.dataset(session / "raw" / "samples").to_table().to_pydict()
    with open(seed / "raw" / "benchlab.jsonl", "w") as fh:
        for ts, v in zip(samples["ts_ns"], samples["value"], strict=True):
            fh.write(f'{{"ts_ns": {ts}, "source": "benchlab", "kv": {{"p_sys": {v:.3f}}}}}\n')
    return seed


def tear(seed: Path, root: Path, n_bad: int) -> Path:
    """A copy of the seed session with ``n_bad`` lines of pipeline.jsonl cut in half (their
    newline kept), spread evenly, and benchlab.jsonl's last line cut with no newline."""
    torn = root / "sessions" / "seed-torn"
    (torn / "raw").mkdir(parents=True)
    data = (seed / "raw" / "pipeline.jsonl").read_bytes()
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    pieces, at = [], 0
    for k in np.linspace(0, len(ends) - 1, n_bad + 2, dtype=np.int64)[1:-1]:
        cut = (int(starts[k]) + int(ends[k])) // 2
        pieces += [data[at:cut], b"\n"]
        at = int(ends[k]) + 1
    pieces.append(data[at:])
    (torn / "raw" / "pipeline.jsonl").write_bytes(b"".join(pieces))
    power = (seed / "raw" / "benchlab.jsonl").read_bytes()
    (torn / "raw" / "benchlab.jsonl").write_bytes(power[:-len(power.splitlines()[-1]) // 2])
    return torn


def bad_lines_cost(clean: Path, torn: Path, root: Path, runs: int, n_bad: int) -> None:
    """Clean and torn replays alternated; the median cost of the bad lines."""
    walls: dict[Path, list[float]] = {clean: [], torn: []}
    for i in range(runs):
        for source in (clean, torn):
            out = root / f"replay-bad-{i}-{source.name}"
            walls[source].append(replay_process(source, out)[0])
            shutil.rmtree(out, ignore_errors=True)
    a, b = statistics.median(walls[clean]), statistics.median(walls[torn])
    print(f"{n_bad} torn lines spread through pipeline.jsonl and a torn last line in "
          f"benchlab.jsonl: replay {b:.2f} s against {a:.2f} s clean (medians of {runs}, "
          f"alternated): {100 * (b / a - 1):+.1f} %")


def arrow_parse_seconds(path: Path) -> float:
    """Seconds Arrow's JSON reader takes to parse the file (both cores)."""
    import pyarrow.json as pj

    t = time.perf_counter()
    pj.read_json(path, read_options=pj.ReadOptions(block_size=1 << 24))
    return time.perf_counter() - t


def replay_process(session: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `otel-benchlab replay` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "otel_benchlab", "replay", str(session), "--out",
                    str(out)], check=True, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def start_seconds() -> float:
    """The interpreter starting with the libraries replay's formats need (not ours)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, pyarrow.compute, pyarrow.json, "
                    "pyarrow.parquet"], check=True)
    return time.perf_counter() - t


def write_seconds(out: Path, scratch: Path) -> tuple[float, int]:
    """Seconds the kernel takes to store a replay's output bytes again: each of its files
    (read into memory first, untimed) written afresh beside it on the same filesystem, the
    Parquet parts fsynced as replay does; then removed. Returns the seconds and bytes."""
    files = [p for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    contents = [(p, p.read_bytes()) for p in files]
    scratch.mkdir(exist_ok=True)
    t = time.perf_counter()
    for i, (p, data) in enumerate(contents):
        with open(scratch / f"{i}{p.suffix}", "wb") as fh:
            fh.write(data)
            if p.suffix == ".parquet":
                os.fsync(fh.fileno())
    seconds = time.perf_counter() - t
    for i, (p, _) in enumerate(contents):
        (scratch / f"{i}{p.suffix}").unlink()
    return seconds, sum(len(d) for _, d in contents)


@dataclass
class Run:
    replay: float  # wall seconds of the replay process
    cpu: float  # its CPU seconds (user + system)
    start: float
    read: float
    write: float
    out_bytes: int

    @property
    def bound(self) -> float:
        """The formats' own time, one after the other."""
        return self.start + self.read + self.write

    @property
    def overlapped(self) -> float:
        """The same with reading and writing overlapped completely."""
        return self.start + max(self.read, self.write)


def measure_run(source: Path, out: Path, scratch: Path, read: Callable[[], float]) -> Run:
    """One replay with the limit measured beside it: start, read, replay, its bytes again."""
    start, reading = start_seconds(), read()
    wall, cpu = replay_process(source, out)
    write, out_bytes = write_seconds(out, scratch)
    return Run(wall, cpu, start, reading, write, out_bytes)


def report(kind: str, reader: str, n: int, runs: list[Run]) -> None:
    def med(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    for i, r in enumerate(runs):
        print(f"run {i + 1}: replay {r.replay:.2f} s ({n / r.replay / 1e6:.2f} M marks/s, CPU "
              f"{r.cpu:.2f} s); limit {r.bound:.2f} s = start {r.start:.2f} + read "
              f"{r.read:.2f} + write {r.write:.2f} ({r.out_bytes / r.write / 1e9:.2f} GB/s of "
              f"{r.out_bytes / 1e6:.0f} MB); ratio {r.bound / r.replay:.2f}")
    replay, bound, overlapped = (med(r.replay for r in runs), med(r.bound for r in runs),
                                 med(r.overlapped for r in runs))
    print(f"{kind}, whole process, aligned Parquet + CapFrameX: median {n / replay / 1e6:.2f} "
          f"M marks/s over {len(runs)} runs of {n:,} marks (CPU {med(r.cpu for r in runs):.2f}"
          f" s); {reader} alone {n / med(r.read for r in runs) / 1e6:.2f} M marks/s")
    print(f"limit, the file formats' own time in the same runs (start + read + write of "
          f"{med(r.out_bytes for r in runs) / 1e6:.0f} MB): median {n / bound / 1e6:.2f} M "
          f"marks/s, {n / overlapped / 1e6:.2f} M with reading and writing overlapped; "
          f"replay at {med(r.bound / r.replay for r in runs):.2f} of it")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--marks", type=int, default=10_000_000)
    ap.add_argument("--in-process", action="store_true",
                    help="own session: time replay_session in this process, not the command")
    ap.add_argument("--capframex", action="store_true",
                    help="with --in-process: also write CapFrameX files")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    ap.add_argument("--seed", action="store_true",
                    help="replay the seed JSONL format as a whole process, every output on")
    ap.add_argument("--bad-lines", type=int, default=0, metavar="N",
                    help="with --seed: also replay a copy with N torn lines (and a torn "
                    "power file) and print what they cost")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        return run(args, root)
    finally:
        if not args.keep:  # a session and its replays: ~2 GB for 3 M marks
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> int:
    t = time.perf_counter()
    session = generate(root, args.marks)
    print(f"generated {args.marks:,} marks in {time.perf_counter() - t:.1f} s at {session}")
    if args.seed:
        source = write_seed(session, root)
        if args.bad_lines:
            bad_lines_cost(source, tear(source, root, args.bad_lines), root, args.runs,
                           args.bad_lines)
            return 0
        with open(source / "raw" / "pipeline.jsonl", "rb") as fh:
            n = sum(1 for _ in fh)
        kind, reader = "seed JSONL", "Arrow's JSON reader parsing pipeline.jsonl"

        def read() -> float:
            return arrow_parse_seconds(source / "raw" / "pipeline.jsonl")
    elif not args.in_process:
        source = session
        n = sum(pq.read_metadata(p).num_rows for p in (session / "raw" / "marks").glob("*.parquet"))
        kind, reader = "own session", "Arrow reading the marks"

        def read() -> float:
            return _read_marks(session)
    if args.seed or not args.in_process:
        runs = [measure_run(source, root / f"replay-{i}", root / "scratch", read)
                for i in range(args.runs)]
        report(kind, reader, n, runs)
        rate = n / statistics.median(r.replay for r in runs)
        if args.seed:
            reader_rate = n / statistics.median(r.read for r in runs)
            print(f"target >= 2.0 M marks/s and ~0.8 of the reader alone: "
                  f"{rate / 1e6:.2f} M marks/s, {rate / reader_rate:.2f} of the reader "
                  f"({reader_rate / 1e6:.2f} M lines/s)")
            return 0 if rate >= 2e6 else 1
        print(f"target >= 10 M marks/s: {rate / 1e6:.2f} M marks/s")
        return 0 if rate >= 10e6 else 1
    cfg = Config()
    cfg.capframex.enabled = args.capframex
    rates = []
    for i in range(args.runs):
        result = replay_session(session, cfg, out=root / f"replay-{i}")
        for line in result.report() if i == 0 else result.report()[:1]:
            print(line)
        rates.append(result.marks / result.seconds)
    rate = statistics.median(rates)
    print(f"replay throughput, in-process: median {rate / 1e6:.2f} million marks/s over "
          f"{args.runs} runs, {result.marks:,} marks each")
    return 0


def _read_marks(session: Path) -> float:
    """Seconds Arrow takes to read the session's marks (the columns replay reads)."""
    t = time.perf_counter()
    for p in sorted((session / "raw" / "marks").glob("*.parquet")):
        pq.read_table(p, read_dictionary=["pipeline", "stream", "stage"])
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
