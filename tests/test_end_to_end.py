"""The agent as a process, with --simulate, into a real OTLP/gRPC collector, scraped by a
real Prometheus; its Parquet and CapFrameX files are checked against the spans it sent."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest

from otel_benchlab.exporters.otel_metrics import LATENCY_BUCKETS_S

from .capframex_rules import check_csv, check_json
from .servers import OtlpCollector, Prometheus, free_port

pytestmark = pytest.mark.e2e
DURATION = 9
REPO = Path(__file__).resolve().parent.parent


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "otel_benchlab", *args]


def wait_started(proc: subprocess.Popen) -> dict[str, str]:
    """Read the agent's banner up to its last line (printed once the session exists and
    before the receivers start); returns the banner's "key: value" lines."""
    banner: dict[str, str] = {}
    for line in proc.stdout:
        key, _, value = line.strip().partition(": ")
        banner[key] = value
        if key == "power sources":
            return banner
    raise AssertionError(f"the agent did not start (rc {proc.wait()}): "
                         + (proc.stderr.read() if proc.stderr else ""))


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    collector = OtlpCollector().start()
    prom_port = free_port()
    prometheus = None
    if shutil.which("prometheus"):
        prometheus = Prometheus(tmp / "prom", f"127.0.0.1:{prom_port}").start()
    cfg = tmp / "agent.toml"
    # 3 % of marks lost (the simulation's default is 1 %): ~50 unpaired marks over the
    # run, spread over every pair and reason, so the unpaired rate the alert rule reads
    # rises between scrapes in any 8 s (at 1 %, ~16 lost marks, one CI run found no rise
    # in its last 8 s and the rule did not fire).
    cfg.write_text('[sim]\nmark_loss = 0.03\n[traces]\nsample_ratio = 0.5\n'
                   'latency_targets_s = { "encoded->inference_done" = 0.018 }\n')
    started = time.time()
    proc = subprocess.run(
        agent_cmd("--simulate", "--duration", str(DURATION), "--data-root", str(tmp / "data"),
                  "--session", "e2e", "--prom-bind", f"127.0.0.1:{prom_port}",
                  "--config", str(cfg)),
        env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                      OTEL_METRIC_EXPORT_INTERVAL="1000", OTEL_SERVICE_NAME="bench-e2e"),
        capture_output=True, text=True, timeout=120)
    yield {"proc": proc, "collector": collector, "prometheus": prometheus, "started": started,
           "session": tmp / "data" / "sessions" / "e2e"}
    collector.stop()
    if prometheus:
        prometheus.stop()


def test_agent_exits_cleanly_and_says_where_everything_goes(run):
    proc = run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "session directory:" in proc.stdout and "/metrics" in proc.stdout
    assert "traces: OTLP grpc 127.0.0.1:" in proc.stdout
    assert "metrics: OTLP grpc 127.0.0.1:" in proc.stdout
    assert "summary: " in proc.stdout  # the end-of-run summary
    live = [ln for ln in proc.stdout.splitlines() if " fps " in ln]
    # A line at 5 s and the last, partial window at 9 s; per pair, in pipeline order.
    assert len(live) == 4 and "ingress->encoded" in live[0] and "encoded->inf" in live[1]
    assert re.match(r"\d\d:\d\d:\d\d sim ", live[0])  # a time stamp
    fps = [float(re.search(r"([\d.]+) fps", ln).group(1)) for ln in live]
    assert all(50 < f < 70 for f in fps), fps  # the source runs at 60 fps, from the start
    summary = proc.stdout[proc.stdout.index("summary: "):]
    assert re.search(r"sim ingress->encoded: \d+ frames  p50 [\d.]+ p95 [\d.]+ p99 [\d.]+ ms"
                     r"  attributed [\d.]+ mJ/frame \(while running [\d.]+\) sys  unpaired \d+",
                     summary), summary
    assert re.search(r"sim energy per frame: [\d.]+ mJ sys \(the meter's energy / frames",
                     summary), summary
    assert re.search(r"energy sys: [\d.]+ J measured = [\d.]+ J attributed to spans \+ "
                     r"[\d.]+ J idle", summary), summary
    assert "CapFrameX files in" in summary and str(run["session"]) in summary
    assert "ingress->encoded:" in proc.stdout and "fps" in proc.stdout
    assert "session e2e closed" in proc.stderr  # INFO logging on by default
    manifest = json.loads((run["session"] / "session.json").read_text())
    assert manifest["ended_at"] and manifest["summary"]["spans"] > 500


def test_each_sampled_frame_is_one_trace_with_a_root_and_one_child_per_pair(run):
    spans = run["collector"].spans()
    assert spans
    resource = spans[0][0]
    attrs = {a.key: a.value.string_value for a in resource.attributes}
    assert attrs["service.name"] == "bench-e2e" and attrs["host.name"]
    traces: dict[bytes, list] = {}
    for _, sp in spans:
        traces.setdefault(sp.trace_id, []).append(sp)
    complete = 0
    for members in traces.values():
        roots = [s for s in members if s.name == "frame"]
        assert len(roots) == 1 and not roots[0].parent_span_id
        children = [s for s in members if s.name != "frame"]
        assert all(c.parent_span_id == roots[0].span_id for c in children)
        assert all(roots[0].start_time_unix_nano <= c.start_time_unix_nano
                   and c.end_time_unix_nano <= roots[0].end_time_unix_nano for c in children)
        if {c.name for c in children} == {"ingress->encoded", "encoded->inference_done"}:
            complete += 1
    assert complete > 100
    children = [{x.key: x.value for x in s.attributes} for _, s in spans
                if s.name == "ingress->encoded"]
    # A span that ends before the meter's first sample has no power to share; the rest do.
    with_energy = [a for a in children if "benchlab.energy.sys" in a]
    assert len(with_energy) >= 0.9 * len(children)
    a = with_energy[0]
    assert a["benchlab.pipeline"].string_value == "sim"
    assert a["benchlab.stage.from"].string_value == "ingress"
    assert a["benchlab.frame"].int_value >= 0
    assert a["benchlab.energy.sys"].double_value > 0
    assert a["benchlab.power.mean.gpu"].double_value > 0


def test_sampling_keeps_about_the_ratio_and_every_frame_over_target(run):
    manifest = json.loads((run["session"] / "session.json").read_text())
    t = manifest["summary"]["traces"]
    total = t["sampled"] + t["kept_over_target"] + t["unsampled"]
    assert 0.35 < t["sampled"] / total < 0.65
    assert t["kept_over_target"] > 0
    table = ds.dataset(run["session"] / "aligned").to_table().to_pandas()
    over = table[(table.stage_to == "inference_done") & (table.latency_ms > 18.0)]
    sent = {sp.trace_id.hex() for _, sp in run["collector"].spans()}
    assert len(over) > 0 and set(over.trace_id) <= sent


def test_metrics_have_convention_names_units_and_explicit_latency_buckets(run):
    m = run["collector"].metrics()
    lat = m["benchlab.pipeline.latency"][-1]
    assert lat.unit == "s"
    point = lat.histogram.data_points[0]
    assert tuple(point.explicit_bounds) == LATENCY_BUCKETS_S
    assert m["benchlab.pipeline.energy"][-1].unit == "J"
    assert m["benchlab.pipeline.energy.attributed"][-1].unit == "J"
    assert m["hw.power"][-1].unit == "W" and m["hw.host.power"][-1].unit == "W"
    assert m["hw.host.energy"][-1].sum.is_monotonic
    assert m["hw.energy"][-1].unit == "J"
    assert "benchlab.agent.queue.depth" in m
    assert any(n.startswith("system.") for n in m)
    hw_ids = {a.value.string_value for p in m["hw.power"][-1].gauge.data_points
              for a in p.attributes if a.key == "hw.id"}
    assert "0123456789ABCDEF01234567:CPU" in hw_ids


def test_benchlab_sensors_arrive_with_convention_names_and_units(run):
    m = run["collector"].metrics()
    assert m["hw.temperature"][-1].unit == "Cel" and m["hw.voltage"][-1].unit == "V"
    assert m["hw.fan.speed"][-1].unit == "rpm" and m["benchlab.humidity"][-1].unit == "1"
    locations = {a.value.string_value for p in m["hw.temperature"][-1].gauge.data_points
                 for a in p.attributes if a.key == "hw.sensor_location"}
    assert {"chip", "ambient", "ts_1"} <= locations
    temps = [p.as_double for p in m["hw.temperature"][-1].gauge.data_points]
    assert all(0 < t < 150 for t in temps)  # no sentinel ever shows up as 3276.7 degC
    rtt = m["benchlab.agent.sample.rtt"][-1]
    # A point per polled source, in the order each first answered (the host's CPU reader
    # may be first): the meter's, by its uid.
    counts = {a.value.string_value: p.count for p in rtt.histogram.data_points
              for a in p.attributes if a.key == "source"}
    assert rtt.unit == "s" and counts["0123456789ABCDEF01234567"] > 50, counts
    manifest = json.loads((run["session"] / "session.json").read_text())
    bench = next(s for s in manifest["sources"] if s["name"] == "benchlab")
    assert bench["devices"][0]["product"] == "BENCHLAB ORIGINAL"


def test_prometheus_scrapes_the_agent_and_histogram_quantile_matches_the_data(run):
    prom = run["prometheus"]
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    # The agent has exited, so Prometheus has marked its series stale: read the last real
    # samples with last_over_time.
    result = prom.query('histogram_quantile(0.5, sum by (le) (last_over_time(benchlab_pipeline_'
                        'latency_seconds_bucket{benchlab_stage_from="ingress",'
                        'benchlab_stage_to="encoded"}[5m])))')
    assert result, ("no latency histogram scraped", prom.query("up"), prom.targets())
    q50 = float(result[0]["value"][1])
    table = ds.dataset(run["session"] / "aligned").to_table().to_pandas()
    true = np.median(table[table.stage_to == "encoded"].latency_ms) / 1000
    assert abs(q50 - true) < 0.0025, (q50, true)  # within the 2.5 ms bucket width there
    assert prom.query("last_over_time(hw_host_power_watts[5m])")


def test_the_obvious_power_query_adds_up_to_the_machine(run):
    """sum(hw_power_watts) of the meter is the whole machine: its rails are a metric of
    their own, so they are not counted again."""
    prom = run["prometheus"]
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    uid = "0123456789ABCDEF01234567"
    total = prom.query(f'sum(last_over_time(hw_power_watts{{benchlab_device_uid="{uid}"}}[5m]))')
    host = prom.query(f'sum(last_over_time(hw_host_power_watts{{benchlab_device_uid="{uid}"}}'
                      '[5m]))')
    rails = prom.query(f'sum(last_over_time(benchlab_rail_power_watts{{benchlab_device_uid='
                       f'"{uid}", benchlab_rail_wire!="true"}}[5m]))')
    t, h = float(total[0]["value"][1]), float(host[0]["value"][1])
    assert h > 50 and abs(t - h) < 0.01 * h
    assert abs(float(rails[0]["value"][1]) - h) < 0.02 * h


def test_every_family_has_help_and_agent_counters_exist_from_the_first_scrape(run):
    prom = run["prometheus"]
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    meta = json.load(__import__("urllib.request").request.urlopen(
        f"http://127.0.0.1:{prom.port}/api/v1/metadata", timeout=5))["data"]
    ours = {name: m for name, m in meta.items() if not name.startswith(("prometheus_", "go_",
                                                                        "net_", "process_"))}
    assert ours and all(m[0]["help"].strip() for m in ours.values()), \
        [n for n, m in ours.items() if not m[0]["help"].strip()]
    # Zero-valued counters are there from the first scrape, so rate() and absence alerts
    # work before anything goes wrong.
    first = prom.query("min_over_time(timestamp(benchlab_agent_queue_dropped_total)[5m:1s])")
    up = prom.query("min_over_time(timestamp(up == 1)[5m:1s])")
    assert first and float(first[0]["value"][1]) - float(up[0]["value"][1]) < 1.5
    for name in ("benchlab_agent_read_errors_total", "benchlab_agent_device_disconnects_total",
                 "benchlab_agent_export_failures_total"):
        assert prom.query(f"last_over_time({name}[5m])"), name
    sources = prom.query("last_over_time(benchlab_source_up[5m])")
    # The emulated meter and the simulated GPU, and the host's CPU utilisation (its GPUs,
    # RAPL or hwmon where this machine has them).
    assert {r["metric"]["source"] for r in sources} >= {"0123456789ABCDEF01234567",
                                                        "sim-gpu0", "host-cpu"}
    assert all(float(r["value"][1]) == 1 for r in sources)


def test_parquet_rows_match_the_spans_sent_and_duckdb_reads_the_session(run):
    session = run["session"]
    sent = {}
    for _, sp in run["collector"].spans():
        if sp.name != "frame":
            a = {x.key: x.value for x in sp.attributes}
            sent[sp.span_id.hex()] = (sp, a)
    table = ds.dataset(session / "aligned").to_table().to_pandas()
    rows = table[table.span_id.isin(sent)]
    assert len(rows) > 100
    for r in rows.itertuples():
        sp, a = sent[r.span_id]
        assert sp.trace_id.hex() == r.trace_id
        assert sp.start_time_unix_nano == r.start_unix_ns and sp.end_time_unix_nano == r.end_unix_ns
        if "benchlab.energy.sys" in a:
            assert abs(a["benchlab.energy.sys"].double_value - r.energy_j) < 1e-9
        else:  # energy unknown (no power sample close enough): absent, not zero
            assert np.isnan(r.energy_j)
        if "benchlab.energy.attributed.sys" in a:  # the span's share, beside it
            assert abs(a["benchlab.energy.attributed.sys"].double_value
                       - r.energy_attr_j) < 1e-9
        else:
            assert np.isnan(r.energy_attr_j)
        assert r.latency_ms == pytest.approx((r.end_ns - r.start_ns) / 1e6)
    assert rows.energy_attr_j.notna().mean() > 0.9
    ids = duckdb.sql(f"select span_id, trace_id from read_parquet('{session}/aligned/*.parquet')"
                     " order by span_id, trace_id").fetchall()
    assert ids == sorted(zip(table.span_id, table.trace_id, strict=True))
    marks = ds.dataset(session / "raw" / "marks").to_table()
    assert marks.num_rows > 1000 and set(marks["stage"].to_pylist()) == {
        "ingress", "encoded", "inference_done"}


def test_capframex_files_load_and_hold_the_same_latencies(run):
    session = run["session"]
    rows = check_csv(session / "capframex" / "sim_ingress_to_encoded.csv")
    doc = check_json(session / "capframex" / "sim_ingress_to_encoded.json")
    table = ds.dataset(session / "aligned").to_table().to_pandas()
    lat = table[table.stage_to == "encoded"].sort_values("start_ns").latency_ms
    assert np.allclose([float(r["MsBetweenPresents"]) for r in rows], lat, atol=6e-5, rtol=0)
    run0 = doc["Runs"][0]
    assert {"PmdCpuPower", "PmdGpuPower", "PmdSystemPower"} <= set(run0)
    assert abs(len(run0["PmdSystemPower"]) - DURATION * 10) <= 12


def test_replay_of_the_session_gives_the_same_spans_ids_and_energy(run, tmp_path):
    out = tmp_path / "replay"
    proc = subprocess.run(agent_cmd("replay", str(run["session"]), "--out", str(out)),
                          env=agent_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    live = ds.dataset(run["session"] / "aligned").to_table().to_pandas().set_index("span_id")
    again = ds.dataset(out / "aligned").to_table().to_pandas().set_index("span_id")
    assert set(live.index) == set(again.index)
    joined = live.join(again.add_suffix("_replay"))
    assert (joined.trace_id == joined.trace_id_replay).all()
    both = joined.energy_j.notna() & joined.energy_j_replay.notna()
    assert both.mean() > 0.95
    assert np.allclose(joined.energy_j[both], joined.energy_j_replay[both], rtol=1e-9)


def test_an_otlp_endpoint_that_is_down_is_counted_and_sigterm_still_closes_cleanly(tmp_path):
    dead = free_port()
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp_path), "--session", "down",
                  "--prom-bind", "off"),
        env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}",
                      OTEL_METRIC_EXPORT_INTERVAL="500", OTEL_EXPORTER_OTLP_TIMEOUT="500"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert err.count("OTLP export to") == 2, err  # once for traces, once for metrics
    # the SDK's own per-attempt messages come through once each, not once per retry
    assert err.count("Transient error") <= 1 and err.count("Failed to export") <= 1, err
    summary = json.loads((tmp_path / "sessions" / "down" / "session.json").read_text())["summary"]
    assert summary["export_failures"] > 0 and summary["spans"] > 300
    assert ds.dataset(tmp_path / "sessions" / "down" / "aligned").to_table().num_rows == \
        summary["spans"]


def test_unknown_config_key_stops_start_up_naming_it(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("sample_hzz = 3\n")
    proc = subprocess.run(agent_cmd("--simulate", "--config", str(bad)), env=agent_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "sample_hzz" in proc.stderr and str(bad) in proc.stderr


def test_replay_reads_a_seed_session_and_skips_torn_lines(tmp_path):
    raw = tmp_path / "seed" / "raw"
    raw.mkdir(parents=True)
    lines = []
    for f in range(100):
        t = 1_000_000_000 + f * 16_000_000
        lines.append({"ts_ns": t, "source": "cam0", "kv": {"stage": "A", "frame": f}})
        lines.append({"ts_ns": t + 5_000_000, "source": "cam0", "kv": {"stage": "B", "frame": f}})
    text = "\n".join(json.dumps(x) for x in lines)
    (raw / "pipeline.jsonl").write_text(text[:4000] + "\n{\"ts_ns\": 12, torn\n" + text[4000:]
                                        + '\n{"ts_ns": 5, "source"')
    power = [{"ts_ns": 900_000_000 + i * 100_000_000, "source": "benchlab",
              "kv": {"p_eps1": 40.0, "p_pcie1": 60.0}} for i in range(30)]
    (raw / "benchlab.jsonl").write_text("\n".join(json.dumps(x) for x in power) + "\n")
    proc = subprocess.run(agent_cmd("replay", str(tmp_path / "seed"), "--pair", "A", "B"),
                          env=agent_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 4 bad records" in proc.stdout  # 2 torn lines + 1 line cut in two
    t = ds.dataset(tmp_path / "seed" / "replay" / "aligned").to_table().to_pandas()
    assert len(t) >= 98  # the torn line cut one mark at most
    assert np.allclose(t.energy_j, 100.0 * 0.005) and (t.power_source == "sys").all()
    check_csv(tmp_path / "seed" / "replay" / "capframex" / "seed_A_to_B.csv")


def test_marks_without_frame_ids_are_paired_and_the_limit_is_said_once(tmp_path):
    cfg = tmp_path / "idless.toml"
    cfg.write_text("[sim]\nframe_ids = false\nstreams = ['a', 'b']\n")
    proc = subprocess.run(
        agent_cmd("--simulate", "--duration", "4", "--data-root", str(tmp_path), "--session",
                  "idless", "--prom-bind", "off", "--config", str(cfg), "--log-format", "json"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("without frame ids") == 2  # once per stream
    logs = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(logs[0])
    # RFC 3339 with the zone, as log pipelines parse it.
    when = dt.datetime.fromisoformat(logs[0]["time"])
    assert when.tzinfo is not None and "T" in logs[0]["time"]
    table = ds.dataset(tmp_path / "sessions" / "idless" / "aligned").to_table().to_pandas()
    assert len(table) > 200 and table.frame.isna().all()
    replay = subprocess.run(agent_cmd("replay", str(tmp_path / "sessions" / "idless")),
                            env=agent_env(), capture_output=True, text=True, timeout=60)
    assert "paired by order" in replay.stdout


def _last_agent_scrape(prom) -> float:
    """When Prometheus last scraped the running agent: queries are evaluated there, since
    on a loaded machine the agent may start seconds after the test started it."""
    (last,) = prom.query("max_over_time(timestamp(up == 1)[5m:1s])")
    return float(last["value"][1])


def _rendered_rules(**thresholds: float) -> list[dict]:
    import helm_python
    import yaml

    chart = helm_python.Chart.load(str(REPO / "helm" / "otel-benchlab"))
    out = chart.render({"prometheus": {"rules": {"enabled": True, **thresholds}}},
                       name="obl", namespace="monitoring")
    docs = [d for d in yaml.safe_load_all(out["otel-benchlab/templates/monitoring.yaml"]) if d]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"][0]["rules"]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(run):
    """A dashboard whose queries return nothing is a bug: each panel's PromQL, as Grafana
    would send it, against Prometheus scraping the simulated agent while it ran."""
    prom = run["prometheus"]
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    dashboard = json.loads((REPO / "helm/otel-benchlab/dashboards/otel-benchlab.json")
                           .read_text())
    at = _last_agent_scrape(prom)
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5s").replace(
                'instance=~"$instance"', 'instance=~".+"')
            if not prom.query(expr, at=at):
                empty.append((panel["title"], expr))
    assert not empty, empty


def test_every_alert_rule_is_valid_promql_and_fires_when_its_threshold_is_crossed(run):
    prom = run["prometheus"]
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    at = _last_agent_scrape(prom)
    rules = _rendered_rules(latencyP99TargetSeconds=0, powerBudgetWatts=0,
                            unpairedPerSecond=0)
    fired = {r["alert"] for r in rules if prom.query(r["expr"].replace("5m", "8s")
                                                       .replace("10m", "8s"), at=at)}
    # Nothing was lost or failing in this run: those two rules parse and stay quiet.
    assert fired == {"StageLatencyHigh", "PowerOverBudget", "UnpairedMarksHigh"}
