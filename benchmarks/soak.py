"""Soak: the agent at several times the default load (the default is 1 stream x 60 fps x 3
stages with sensors at 10 Hz; every exporter on) for a long time, its RSS sampled, OTLP
going to a collector that accepts connections and never answers (or to a working one with
--collector ok), and Prometheus scraped. Prints RSS over time, its slope after the warm-up,
CPU, what the agent counted as dropped, and the session's files.

Usage: python benchmarks/soak.py [--minutes 60] [--collector hang|ok|down]
       python benchmarks/soak.py --hours-equivalent 5 [--speed 10]

--hours-equivalent N runs N hours of the default load in N * 60 / speed minutes: speed x
the streams and the sensor rate, parts closed and compacted speed x as often (60 s parts
and hourly compaction become 60/speed s and 3600/speed s), so the session's files and the
agent's growth read as N hours' worth; the slope is printed per hour of default load.
The suite runs the 4x soak for three minutes (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import BlackHole, OtlpCollector, free_port  # noqa: E402


def load_toml(streams: int, part_seconds: float, compact_every_s: float = 3600.0) -> str:
    names = ", ".join(f'"cam{i}"' for i in range(streams))
    return (f"[sim]\nstreams = [{names}]\nmark_loss = 0.0\n[parquet]\n"
            f"part_seconds = {part_seconds:g}\ncompact_every_s = {compact_every_s:g}\n")


LOAD_4X = load_toml(4, 2)


@dataclass
class SoakResult:
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    cpu_percent: float = 0.0
    rc: int | None = None
    stderr: str = ""
    session: Path | None = None
    burst_ms: list[float] = field(default_factory=list)  # concurrent scrape times
    burst_ok: int = 0

    def floor_slope_mb_per_min(self, warmup_s: float, window_s: float = 10.0,
                               until_s: float | None = None) -> float:
        """Slope of the RSS floor: the lowest sample of each window, fitted over time.
        RSS swings by several MB as batches and parts come and go; what a leak raises is
        the floor that remains after each part is written. ``until_s``: leave out the exit
        (writing the CapFrameX captures is a peak, not a trend)."""
        pts = np.array([p for p in self.rss_mb if p[0] >= warmup_s and
                        (until_s is None or p[0] <= until_s)])
        if len(pts) < 3:
            return float("nan")
        win = ((pts[:, 0] - warmup_s) // window_s).astype(int)
        floors = np.array([(pts[win == w, 0].mean(), pts[win == w, 1].min())
                           for w in np.unique(win)])
        if len(floors) < 3:
            return float("nan")
        return float(np.polyfit(floors[:, 0] / 60.0, floors[:, 1], 1)[0])

    def summary(self) -> dict:
        return json.loads((self.session / "session.json").read_text())["summary"]


def scrape(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t0) * 1e3


def scrape_burst(port: int, n: int) -> list[float]:
    """``n`` scrapes at once, each its own connection (asyncio: a client of 200 threads in
    one Python process measures its own GIL, not the server). Milliseconds of each one
    that got a 200 answer with a body."""
    async def one() -> float | None:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
        ok = data.startswith(b"HTTP/1.") and b" 200 " in data[:20] and b"# HELP" in data
        return (time.perf_counter() - t0) * 1e3 if ok else None

    async def all_at_once() -> list:
        return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)

    return [r for r in asyncio.run(all_at_once()) if isinstance(r, float)]


def soak(seconds: float, collector: str = "hang", python: str = sys.executable,
         rss_every_s: float = 5.0, burst_at_s: float | None = None, burst: int = 200,
         scrape_s: float = 15.0, workdir: str | None = None, load: str = LOAD_4X,
         sample_hz: float = 40.0) -> SoakResult:
    server = {"hang": BlackHole, "ok": OtlpCollector}.get(collector)
    srv = server().start() if server else None
    port = srv.port if srv else free_port()
    data = Path(workdir or tempfile.mkdtemp(prefix="soak-"))
    (data / "soak.toml").write_text(load)
    prom = free_port()
    url = f"http://127.0.0.1:{prom}/metrics"
    proc = subprocess.Popen(
        [python, "-m", "otel_benchlab", "--simulate", "--sample-hz", f"{sample_hz:g}",
         "--duration",
         str(seconds), "--data-root", str(data / "data"), "--session", "soak",
         "--prom-bind", f"127.0.0.1:{prom}", "--config", str(data / "soak.toml")],
        env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
             "OTEL_METRIC_EXPORT_INTERVAL": "5000", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
             **({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
                if collector == "none" else {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=data)
    res = SoakResult(session=data / "data" / "sessions" / "soak")
    p = psutil.Process(proc.pid)
    t0 = time.monotonic()
    cpu0 = None
    next_rss = next_scrape = 0.0
    burst_done = burst_at_s is None
    while proc.poll() is None:
        now = time.monotonic() - t0
        try:
            if now >= next_rss:
                res.rss_mb.append((now, p.memory_info().rss / 2**20))
                next_rss += rss_every_s
                if cpu0 is None and now >= 10:
                    cpu0 = (now, sum(p.cpu_times()[:2]))
            if now >= next_scrape and now > 5:
                scrape(url)
                next_scrape = now + scrape_s
            if not burst_done and now >= burst_at_s:
                burst_done = True
                res.burst_ms = scrape_burst(prom, burst)
                res.burst_ok = len(res.burst_ms)
            if cpu0 is not None:
                cpu1 = (now, sum(p.cpu_times()[:2]))
                if cpu1[0] > cpu0[0]:
                    res.cpu_percent = 100 * (cpu1[1] - cpu0[1]) / (cpu1[0] - cpu0[0])
        except (psutil.Error, OSError):
            pass
        time.sleep(0.5)
    res.rc = proc.returncode
    res.stderr = proc.stderr.read()
    if srv:
        srv.stop()
    return res


def session_files(session: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) by folder: the Parquet kinds, the captures, the rest."""
    out: dict[str, list[int]] = {}
    for p in session.rglob("*"):
        if p.is_file():
            rel = p.relative_to(session).parent.as_posix()
            key = rel if rel in ("aligned", "raw/marks", "raw/samples", "capframex") else "other"
            n = out.setdefault(key, [0, 0])
            n[0] += 1
            n[1] += p.stat().st_size
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="a 4x soak this long")
    ap.add_argument("--hours-equivalent", type=float, default=0.0,
                    help="instead: this many hours of the default load, at --speed")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--collector", choices=["hang", "ok", "down", "none"], default="hang",
                    help="where OTLP goes: a collector that never answers, a working one, "
                    "a port nobody listens on, or OTLP off")
    ap.add_argument("--agent-python", default=sys.executable)
    ap.add_argument("--rss-out", help="also write the RSS samples here (seconds,MB lines)")
    args = ap.parse_args()
    if args.hours_equivalent:
        speed = args.speed
        seconds = args.hours_equivalent * 3600 / speed
        load = load_toml(round(speed), 60 / speed, 3600 / speed)
        what = (f"{args.hours_equivalent:g} h of the default load at {speed:g}x "
                f"({seconds / 60:.0f} min)")
        res = soak(seconds, args.collector, args.agent_python, rss_every_s=10.0,
                   burst_at_s=seconds / 2, load=load, sample_hz=10 * speed)
    else:
        speed = 4.0
        seconds = args.minutes * 60
        what = f"{args.minutes:g} min at 4x load"
        res = soak(seconds, args.collector, args.agent_python, rss_every_s=10.0,
                   burst_at_s=seconds / 2)
    warm = min(120.0, seconds / 4)
    after = [m for t, m in res.rss_mb if t >= warm]
    s = res.summary()
    slope = res.floor_slope_mb_per_min(warm, 60.0, until_s=seconds)
    print(f"soak {what}, collector {args.collector}: rc {res.rc}")
    print(f"  RSS after {warm:.0f} s warm-up: first {after[0]:.1f} MB, max {max(after):.1f} MB, "
          f"last {after[-1]:.1f} MB, floor slope {slope:+.3f} MB/min "
          f"= {slope * 60 / speed:+.2f} MB per hour of default load")
    # A leak raises the floor all along; a heap growing to its working size, early on:
    # the agent has its working size once each of its periodic jobs (parts, captures, the
    # hourly compaction) has run, i.e. after one hour of the default load.
    hour = 3600 / speed
    if args.hours_equivalent and seconds > 2 * hour:
        settled = res.floor_slope_mb_per_min(hour, 60.0, until_s=seconds)
        print(f"  floor slope after the first hour of default load ({hour / 60:.0f} min) "
              f"{settled:+.3f} MB/min = {settled * 60 / speed:+.2f} MB per hour of default load")
    late = res.floor_slope_mb_per_min(seconds / 2, 60.0, until_s=seconds)
    print(f"  floor slope over the second half {late:+.3f} MB/min = "
          f"{late * 60 / speed:+.2f} MB per hour of default load")
    if args.rss_out:
        Path(args.rss_out).write_text("".join(f"{t:.1f},{mb:.2f}\n" for t, mb in res.rss_mb))
    print(f"  CPU {res.cpu_percent:.1f} % of one core")
    step = max(60.0, seconds / 12)
    marks = np.arange(0, seconds + 1, step)
    series = [min(res.rss_mb, key=lambda p, m=m: abs(p[0] - m)) for m in marks]
    print("  RSS over time: " + ", ".join(f"{t / 60:.0f} min {mb:.0f} MB" for t, mb in series))
    print(f"  {res.burst_ok}/200 concurrent scrapes ok, median {np.median(res.burst_ms):.0f} ms, "
          f"max {max(res.burst_ms):.0f} ms")
    print(f"  marks {s['marks']}, spans {s['spans']}, unpaired {s['unpaired']}, queue dropped "
          f"{s['queue_dropped']}, export failures {s['export_failures']}, spans dropped "
          f"{s['export_dropped']}, undelivered at exit {s.get('undelivered', {})}")
    files = session_files(res.session)
    print(f"  session files: {sum(n for n, _ in files.values())}, "
          f"{sum(b for _, b in files.values()) / 2**20:.0f} MiB: " + ", ".join(
              f"{k} {n} ({b / 2**20:.1f} MiB)" for k, (n, b) in files.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
