"""A flood of new names (a stream per request, through the probe socket and through the
OTLP intake from a real OpenTelemetry SDK client at its defaults) keeps the agent within
its bounds: the in-memory figures fold past ``[limits]`` into ``_other``, counted and said
once, while Parquet keeps every name."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from benchmarks.cardinality import OTLP_APP
from otel_benchlab.probe import Probe

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e

PROBE_STREAMS = 5000
INTAKE_STREAMS = 1500
MAX_STREAMS = 40

def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _get(url: str) -> tuple[float, bytes]:
    t0 = time.monotonic()
    body = urllib.request.urlopen(url, timeout=10).read()
    return time.monotonic() - t0, body


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flood")
    probe_port, intake_port, prom_port = free_port(), free_port(), free_port()
    cfg = tmp / "agent.toml"
    cfg.write_text(f'[limits]\nmax_streams = {MAX_STREAMS}\n[sim]\nsources = ["benchlab"]\n'
                   '[intake]\nspan_stages = ["infer"]\n'
                   f'otlp_grpc = "127.0.0.1:{intake_port}"\n')
    probe_addr = f"udp://127.0.0.1:{probe_port}"
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--config", str(cfg), "--data-root", str(tmp / "data"),
                  "--session", "flood", "--prom-bind", f"127.0.0.1:{prom_port}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      BENCHLAB_PROBE_ADDR=probe_addr),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict = {"tmp": tmp}
    try:
        wait_started(agent)
        time.sleep(1.0)
        out["rss_before"] = _rss_mb(agent.pid)
        sender = Probe(probe_addr, pipeline="cams")
        now = time.monotonic_ns()
        for n in range(PROBE_STREAMS):
            sender.stage_span(now + n * 1000, now + n * 1000 + 500_000, "cams", f"req-{n}",
                              "decode.start", "decode.end", n)
            if n % 500 == 499:
                sender.flush()
                time.sleep(0.01)
        sender.close()
        out["probe_dropped"] = sender.dropped
        # An application that makes a new stream name per request, as one that uses a
        # request id or a client address as the stream; the SDK at its defaults.
        app = subprocess.run([sys.executable, "-c", OTLP_APP, str(INTAKE_STREAMS)],
                             capture_output=True, text=True, timeout=60, env=agent_env(
                                 OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{intake_port}"))
        assert app.returncode == 0, app.stderr
        # Spans are shared out ~10 s after they end (the intake's attribution delay).
        deadline = time.monotonic() + 30
        answers = []
        while time.monotonic() < deadline:
            answers.append(_get(f"http://127.0.0.1:{prom_port}/api/live?window=900"))
            live = json.loads(answers[-1][1])
            if sum(p["cards"]["frames"] or 0 for p in live["pairs"]) >= \
                    PROBE_STREAMS + INTAKE_STREAMS:
                break
            time.sleep(0.5)
        out["live"] = live
        out["answer_s"] = max(a for a, _ in answers)
        out["metrics"] = _get(f"http://127.0.0.1:{prom_port}/metrics")[1].decode()
        out["rss_after"] = _rss_mb(agent.pid)
    finally:
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=60)
    out["rc"], out["err"] = agent.returncode, err
    return out


def test_the_live_page_keeps_max_streams_of_a_pipeline_and_folds_the_rest(flood):
    pairs = flood["live"]["pairs"]
    for pipeline in ("cams", "svc"):
        streams = {s["stream"] for p in pairs if p["pipeline"] == pipeline
                   for s in p["streams"]}
        assert len(streams) == MAX_STREAMS + 1 and "_other" in streams, (pipeline, streams)
    assert sum(p["cards"]["frames"] for p in pairs) == PROBE_STREAMS + INTAKE_STREAMS
    assert flood["answer_s"] < 1.0


def test_the_overflow_is_counted_and_said_once(flood):
    folded = PROBE_STREAMS + INTAKE_STREAMS - 2 * MAX_STREAMS
    line = next(x for x in flood["metrics"].splitlines()
                if x.startswith("benchlab_agent_overflow_total") and 'kind="stream"' in x)
    assert float(line.split()[-1]) == folded
    assert flood["err"].count("overflow [kind=stream]") == 1
    assert "stream 'req-40'" in flood["err"]  # the first name that overflowed


def test_parquet_keeps_every_name(flood):
    assert flood["rc"] == 0, flood["err"][-3000:]
    assert flood["probe_dropped"] == 0
    table = ds.dataset(flood["tmp"] / "data/sessions/flood/aligned").to_table(
        columns=["pipeline", "stream", "power_source"])
    table = table.filter(pc.equal(table["power_source"], "sys"))
    for pipeline, n in (("cams", PROBE_STREAMS), ("svc", INTAKE_STREAMS)):
        mine = table.filter(pc.equal(table["pipeline"], pipeline))
        assert mine.num_rows == n
        assert len(pc.unique(mine["stream"])) == n


def test_memory_stays_bounded_through_the_flood(flood):
    assert flood["rss_after"] - flood["rss_before"] < 100, flood
