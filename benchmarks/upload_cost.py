"""What uploads cost and how fast they go.

1. The agent's CPU at the default load (``--simulate``: one stream at 60 fps, sensors at
   10 Hz, Parquet and CapFrameX at their defaults) with uploads off and on, the two run side
   by side for the same seconds (the machine is shared: read the difference, and the
   uploader thread's own CPU, read from ``/proc/PID/task/*/stat`` by its thread name,
   which is the precise figure).
2. Upload throughput: a backlog of real parts (a simulated session's, copied) drained by
   the uploader into moto's S3 server on loopback and into a plain path. moto is a Python
   server: its figure is a floor for a real store.

    python benchmarks/upload_cost.py [--seconds 60] [--rounds 3] [--backlog-mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_benchlab.counters import AgentCounters  # noqa: E402
from otel_benchlab.exporters.upload import UploadConfig  # noqa: E402
from tests.s3 import CREDENTIALS, MotoS3  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _thread_cpu(pid: int, name: str) -> float:
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                total += _cpu(task / "stat")
        except OSError:
            pass
    return total


def agent_cpu(seconds: float, moto: MotoS3, work: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               BENCHLAB_PROBE_ADDR="off", **CREDENTIALS)
    procs = {}
    work.mkdir(parents=True, exist_ok=True)
    for mode in ("off", "on"):
        cfg = work / f"{mode}.toml"
        cfg.write_text("" if mode == "off" else
                       f'[upload]\nuri = "s3://bench/agents"\nendpoint = "{moto.endpoint}"\n')
        procs[mode] = subprocess.Popen(
            [sys.executable, "-m", "otel_benchlab", "--simulate", "--data-root",
             str(work / mode), "--prom-bind", "off", "--config", str(cfg)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)  # both started; start-up is counted below, as a user pays it
    time.sleep(seconds)
    out = {f"{m} cpu_s": _cpu(Path(f"/proc/{p.pid}/stat")) for m, p in procs.items()}
    out["uploader thread cpu_s"] = _thread_cpu(procs["on"].pid, "benchlab-upload")
    for m, p in procs.items():
        status = Path(f"/proc/{p.pid}/status").read_text()
        out[f"{m} peak MB"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    for p in procs.values():
        p.send_signal(signal.SIGINT)
    for p in procs.values():
        p.wait(timeout=60)
    out["seconds"] = seconds + 5
    return out


def make_backlog(work: Path, megabytes: float) -> Path:
    """A session folder whose outbox holds real parts adding up to ``megabytes``."""
    from otel_benchlab.fleet.outbox import Outbox

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
               BENCHLAB_PROBE_ADDR="off")
    cfg = work / "src.toml"
    cfg.write_text("[parquet]\npart_seconds = 2\n[sim]\nfps = 240\n")
    subprocess.run([sys.executable, "-m", "otel_benchlab", "--simulate", "--duration", "8",
                    "--data-root", str(work / "src"), "--session", "src", "--prom-bind", "off",
                    "--config", str(cfg)], env=env, check=True, capture_output=True)
    src = work / "src" / "sessions" / "src"
    parts = sorted(src.rglob("part-*.parquet"))
    session = work / "data" / "sessions" / "backlog"
    session.mkdir(parents=True)
    box = Outbox.create(session, {"store": "", "endpoint": "", "node": "bench",
                                  "date": "2026-12-03", "session": "backlog"})
    size = n = 0
    while size < megabytes * 2**20:
        for part in parts:
            target = session / part.parent.relative_to(src) / f"part-{n:06d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(part, target)
            box.add(target.relative_to(session).as_posix())
            size += target.stat().st_size
            n += 1
    return session


def drain(session: Path, uri: str, endpoint: str) -> dict[str, float]:
    from otel_benchlab.exporters.upload import Uploader
    from otel_benchlab.fleet.outbox import OUTBOX_NAME, Outbox

    text = (session / OUTBOX_NAME).read_text().splitlines()
    header = json.loads(text[0])
    header["store"] = uri
    box_text = "\n".join([json.dumps(header), *[x for x in text[1:] if '"done"' not in x]])
    (session / OUTBOX_NAME).write_text(box_text + "\n")
    size = sum(p.stat().st_size for p in session.rglob("part-*.parquet"))
    files = len(list(session.rglob("part-*.parquet")))
    uploader = Uploader(UploadConfig(uri=uri, endpoint=endpoint), str(session.parents[1]),
                        AgentCounters())
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    uploader.start()
    box = Outbox.open(session)
    while box.pending():
        time.sleep(0.02)
        box.refresh()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    uploader.shutdown(0)
    return {"files": files, "MiB": size / 2**20, "MiB/s": size / 2**20 / wall,
            "files/s": files / wall, "cpu s per MiB": cpu / (size / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backlog-mb", type=float, default=200)
    args = ap.parse_args()
    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        moto = MotoS3(work / "moto").start()
        try:
            moto.create_bucket("bench")
            session = make_backlog(work, args.backlog_mb)
            for name, uri, endpoint in (("moto S3 on loopback", "s3://bench/backlog",
                                         moto.endpoint),
                                        ("plain path", str(work / "shared"), "")):
                r = drain(session, uri, endpoint)
                print(f"throughput to {name}: {r['files']} parts, {r['MiB']:.0f} MiB in "
                      f"{r['MiB'] / r['MiB/s']:.1f} s: {r['MiB/s']:.1f} MiB/s, "
                      f"{r['files/s']:.0f} parts/s; uploader CPU {r['cpu s per MiB'] * 1e3:.0f}"
                      " ms per MiB")
            rounds = [agent_cpu(args.seconds, moto, work / f"round{i}")
                      for i in range(args.rounds)]
            secs = rounds[0]["seconds"]

            def pct(key: str) -> list[float]:
                return [100 * r[key] / secs for r in rounds]

            diff = [on - off for on, off in zip(pct("on cpu_s"), pct("off cpu_s"),
                                                strict=True)]
            print(f"agent CPU at the default load, {args.rounds} rounds of {secs:.0f} s "
                  "(uploads off and on side by side, start-up included), % of a core: off "
                  + " ".join(f"{x:.2f}" for x in pct("off cpu_s")) + "; on "
                  + " ".join(f"{x:.2f}" for x in pct("on cpu_s"))
                  + f"; difference median {statistics.median(diff):+.2f} ("
                  + " ".join(f"{x:+.2f}" for x in diff) + "); the uploader thread itself "
                  f"median {statistics.median(pct('uploader thread cpu_s')):.3f}")
            print("peak RSS: off " + " ".join(f"{r['off peak MB']:.1f}" for r in rounds)
                  + " MB; on " + " ".join(f"{r['on peak MB']:.1f}" for r in rounds) + " MB")
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
