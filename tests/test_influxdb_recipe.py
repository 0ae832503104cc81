"""docs/influxdb.md's recipe, run: Debian's Prometheus scrapes the agent and
``remote_write``s to Debian's InfluxDB 1.x (``/api/v1/prom/write?db=...``); InfluxQL then
returns the pipeline latency and power series with the agent's labels as tags."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from .servers import InfluxDB, Prometheus, free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not (shutil.which("influxd") and shutil.which("prometheus")):
        pytest.skip("Debian's influxdb and prometheus are not installed (scripts/test.sh "
                    "installs them)")
    tmp = tmp_path_factory.mktemp("influx")
    influx = InfluxDB(tmp / "influx").start()
    influx.query("CREATE DATABASE benchlab")
    port = free_port()
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp / "data"), "--prom-bind",
                  f"127.0.0.1:{port}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(agent)
    prom = Prometheus(tmp / "prom", f"127.0.0.1:{port}", remote_write=(
        f"http://127.0.0.1:{influx.port}/api/v1/prom/write?db=benchlab")).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if influx.query('SHOW MEASUREMENTS WITH MEASUREMENT =~ /^benchlab_pipeline/',
                            "benchlab"):
                break
            time.sleep(1)
        time.sleep(3)  # a few more scrapes written
        yield influx
    finally:
        prom.stop()
        agent.send_signal(signal.SIGINT)
        agent.communicate(timeout=60)
        influx.stop()


def test_the_pipeline_latency_arrives_with_the_agents_labels_as_tags(stack):
    series = stack.query(
        'SELECT last("value") FROM "benchlab_pipeline_latency_seconds_count" '
        'GROUP BY "benchlab_stage_from", "benchlab_stage_to"', "benchlab")
    pairs = {(s["tags"]["benchlab_stage_from"], s["tags"]["benchlab_stage_to"]): s["values"]
             for s in series}
    assert set(pairs) == {("ingress", "encoded"), ("encoded", "inference_done")}
    assert all(v[0][1] > 0 for v in pairs.values())


def test_the_power_series_arrive_per_rail(stack):
    series = stack.query('SELECT mean("value") FROM "hw_power_watts" WHERE time > now() - 1m '
                         'GROUP BY "hw_id"', "benchlab")
    rails = {s["tags"]["hw_id"]: s["values"][0][1] for s in series}
    assert any(r.endswith(":CPU") for r in rails) and all(w > 0 for w in rails.values())
    assert stack.query('SHOW TAG KEYS FROM "hw_power_watts"', "benchlab")
