"""Long sessions: time and peak RSS of ``report``, ``compare``, ``replay`` and a one-hour
``--since`` report on sessions 1x, 8x and 64x a bench run, and of ``replay`` and ``report``
on the same marks as a seed project's JSONL session, each command a whole process as a
user runs it.

A bench run is ``report_speed.make_session``'s (two pairs, four streams at 240 frames/s,
SYS power at 10 Hz; --spans spans, 1.5 M by default: ~13 minutes). A session N x as long is
N copies of that run's parts, each shifted in time by a run's length, as an agent that
ran N times as long would have written them (a part per copy).

    python benchmarks/long_sessions.py [--spans 1500000] [--scales 1,8,64]
        [--compare-max 8]

``report`` digests a session past 4 M rows (its memory does not grow with the length);
``compare`` runs up to ``--compare-max`` and ``replay`` (which pairs the marks again and
writes the aligned Parquet and CapFrameX files, ~0.3 GB a million spans) up to
``--replay-max``. The ``--since 1h`` report reads only the parts that hold its hour.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report_speed import PAIRS, make_session  # noqa: E402
from otel_benchlab.session.schema import MARK_SCHEMA  # noqa: E402

MARK_PART_ROWS = 200_000  # the agent's part_rows


def _hwm_kb(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM: its address space's, which starts afresh
    at exec; ru_maxrss would carry the parent's peak over the fork)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(args: list[str]) -> tuple[float, float, int]:
    """(wall s, peak RSS MB, exit status) of one whole process."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "otel_benchlab", *args],
                                stdout=subprocess.DEVNULL, stderr=log)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _hwm_kb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - t
        log.seek(0)
        err = log.read().decode(errors="replace")
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return wall, peak / 1024, proc.returncode


def shift(table: pa.Table, ns: int, columns: list[str]) -> pa.Table:
    for c in columns:
        if c in table.column_names:
            i = table.schema.get_field_index(c)
            table = table.set_column(i, c, pc.add(table[c], ns))
    return table


def marks_of(aligned: pa.Table) -> pa.Table:
    """The stage marks the run's spans were paired from: each frame's decode and infer
    (the first pair's start and end) and its encode (the second pair's end)."""
    out = []
    for (a, b), ends_only in ((PAIRS[0], False), (PAIRS[1], True)):
        rows = aligned.filter(pc.equal(aligned["stage_from"], a))
        for stage, col in ((a, "start"), (b, "end")):
            if ends_only and col == "start":
                continue
            n = rows.num_rows
            out.append(pa.table({
                "ts_ns": rows[f"{col}_ns"], "ts_unix_ns": rows[f"{col}_unix_ns"],
                "pipeline": rows["pipeline"], "stream": rows["stream"],
                "stage": pa.array([stage]).take(np.zeros(n, np.int64)),
                "frame": rows["frame"]}, schema=MARK_SCHEMA))
    marks = pa.concat_tables(out)
    return marks.take(pc.sort_indices(marks["ts_ns"]))


def scaled(run: Path, dest: Path, copies: int) -> Path:
    """``run``'s parts ``copies`` times, each a run's length later; its marks in parts of
    ``MARK_PART_ROWS``, as the agent writes them."""
    aligned = pq.read_table(run / "aligned")
    samples = pq.read_table(run / "raw" / "samples")
    marks = marks_of(aligned)
    length = int(pc.max(aligned["end_ns"]).as_py()) - int(pc.min(aligned["start_ns"]).as_py())
    for kind in ("aligned", "raw/samples", "raw/marks"):
        (dest / kind).mkdir(parents=True)
    part = 0
    for k in range(copies):
        pq.write_table(shift(aligned, k * length, ["start_ns", "end_ns", "start_unix_ns",
                                                   "end_unix_ns"]),
                       dest / "aligned" / f"part-{k + 1:06d}.parquet")
        pq.write_table(shift(samples, k * length, ["ts_ns", "ts_unix_ns"]),
                       dest / "raw" / "samples" / f"part-{k + 1:06d}.parquet")
        for i in range(0, marks.num_rows, MARK_PART_ROWS):
            part += 1
            pq.write_table(shift(marks.slice(i, MARK_PART_ROWS), k * length,
                                 ["ts_ns", "ts_unix_ns"]),
                           dest / "raw" / "marks" / f"part-{part:06d}.parquet")
    manifest = json.loads((run / "session.json").read_text())
    manifest["session_id"] = dest.name
    (dest / "session.json").write_text(json.dumps(manifest))
    return dest


def as_seed(session: Path, dest: Path) -> Path:
    """The session's marks and power as the seed project's raw/*.jsonl."""
    raw = dest / "raw"
    raw.mkdir(parents=True)
    with open(raw / "pipeline.jsonl", "wb") as fh:
        for f in sorted((session / "raw" / "marks").glob("part-*.parquet")):
            t = pq.read_table(f)
            text = pc.binary_join_element_wise(
                '{"ts_ns": ', pc.cast(t["ts_ns"], pa.string()), ', "source": "',
                pc.cast(t["stream"], pa.string()), '", "kv": {"stage": "',
                pc.cast(t["stage"], pa.string()), '", "frame": ',
                pc.cast(t["frame"], pa.string()), "}}\n", "")
            fh.write("".join(text.to_pylist()).encode())
    with open(raw / "benchlab.jsonl", "w") as fh:
        for f in sorted((session / "raw" / "samples").glob("part-*.parquet")):
            t = pq.read_table(f)
            for ts, v in zip(t["ts_ns"].to_pylist(), t["value"].to_pylist(), strict=True):
                fh.write(f'{{"ts_ns": {ts}, "source": "benchlab", "kv": {{"p_sys": {v}}}}}\n')
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_500_000)
    ap.add_argument("--scales", default="1,8,64")
    ap.add_argument("--compare-max", type=int, default=8)
    ap.add_argument("--replay-max", type=int, default=8,
                    help="replay up to this scale (its output is ~0.3 GB a million spans)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = make_session(root / "run", args.spans, 1)
        print(f"{'session':>22} {'command':>22} {'wall s':>8} {'peak RSS':>9}  rc")
        for n in (int(x) for x in args.scales.split(",")):
            s = scaled(run, root / f"x{n}", n)
            spans = args.spans * n
            label = f"{n}x ({spans / 1e6:.1f} M spans)"
            jobs = [("report", ["report", str(s), "-o", str(root / "r.html")]),
                    ("report --since 1h", ["report", str(s), "--since", "1h", "-o",
                                           str(root / "w.html")])]
            if n <= args.compare_max:
                jobs.insert(1, ("compare (1x against it)", ["compare", str(run), str(s),
                                                            "--json", str(root / "c.json")]))
            seed = None
            if n <= args.replay_max:
                seed = as_seed(s, root / f"seed{n}")
                jobs += [("replay", ["replay", str(s), "--out", str(root / f"rp{n}")]),
                         ("replay (seed JSONL)", ["replay", str(seed), "--pair", "decode",
                                                  "infer", "--pair", "infer", "encode",
                                                  "--out", str(root / f"rs{n}")]),
                         ("report (seed JSONL)", ["report", str(seed), "--pair", "decode",
                                                  "infer", "--pair", "infer", "encode", "-o",
                                                  str(root / "s.html")])]
            for name, cmd in jobs:
                wall, peak, rc = timed(cmd)
                print(f"{label:>22} {name:>22} {wall:8.1f} {peak:6.0f} MB  {rc}", flush=True)
            for d in (root / f"rp{n}", root / f"rs{n}", seed, s):
                if d is not None:
                    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
