"""Real GStreamer pipelines under `otel-benchlab gst`: every element's buffers become stage
spans with power; a bad pipeline, a killed child and a pipeline sent to a running agent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pyarrow.dataset as ds
import pytest

from otel_benchlab.receivers.gst_tracer import CALIBRATE_RECORDS, TracerSpans, parse_record

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

needs_gst = pytest.mark.skipif(shutil.which("gst-launch-1.0") is None,
                               reason="gst-launch-1.0 is not installed (scripts/test.sh "
                               "installs it)")
ENC = ["videotestsrc", "num-buffers=300", "!", "video/x-raw,width=320,height=240", "!",
       "x264enc", "name=enc", "tune=zerolatency", "!", "fakesink"]
ELEMENT = ("0:00:00.113292893 32043 0x55930bf96060 TRACE GST_TRACER :0:: element-latency, "
           "element-id=(string)0x55930bf861c0, element=(string)enc, src=(string)src, "
           "time=(guint64){lat}, ts=(guint64){ts};")
PIPELINE = ("0:00:00.2 1 0x1 TRACE GST_TRACER :0:: latency, src-element-id=(string)0x1, "
            "src-element=(string)videotestsrc0, src=(string)src, sink-element-id=(string)0x2, "
            "sink-element=(string)fakesink0, sink=(string)sink, time=(guint64){lat}, "
            "ts=(guint64){ts};")
QUIET = dict(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
             BENCHLAB_PROBE_ADDR="off")


def test_a_tracer_line_is_parsed_into_its_fields():
    kind, f = parse_record(ELEMENT.format(lat=96155, ts=113278476))
    assert kind == "element-latency"
    assert (f["element"], f["time"], f["ts"]) == ("enc", "96155", "113278476")
    assert parse_record("0:00:00.1 1 0x1 DEBUG GST_TRACER gsttracer.c:169: new tracer") is None


def test_spans_end_at_the_stamp_mapped_by_the_smallest_arrival_delay():
    spans = TracerSpans("gst", "main")
    base = 5_000_000_000
    out = []
    for n in range(CALIBRATE_RECORDS):
        ts = 1_000_000 * (n + 1)
        delay = 300_000 if n else 900_000  # the first record arrived late
        out += spans.feed(ELEMENT.format(lat=8_000, ts=ts), base + ts + delay)
    assert len(out) == CALIBRATE_RECORDS  # held until calibrated, then all at once
    assert spans.offset_ns == base + 300_000
    assert out[0].end_ns == base + 1_000_000 + 300_000
    assert out[0].latency_ns == 8_000
    assert [s.frame for s in out] == list(range(CALIBRATE_RECORDS))
    assert (out[0].stage_from, out[0].stage_to) == ("enc.sink", "enc.src")


def test_source_to_sink_records_and_stage_selection():
    spans = TracerSpans("gst", "main", stages=["other"])
    assert spans.feed(ELEMENT.format(lat=1, ts=2), 10) == []
    assert spans.records == 0
    spans.feed(PIPELINE.format(lat=5, ts=20), 100)
    (s,) = spans.flush()
    assert (s.stage_from, s.stage_to, s.latency_ns) == ("videotestsrc0.src", "fakesink0.sink",
                                                        5)


def _aligned(session) -> object:
    t = ds.dataset(session / "aligned").to_table().to_pandas()
    return t[t.power_source == "sys"]


@needs_gst
@pytest.mark.e2e
def test_every_element_of_a_real_pipeline_gets_one_span_per_frame(tmp_path):
    proc = subprocess.run(
        agent_cmd("gst", "--simulate", "--data-root", str(tmp_path), "--session", "g",
                  "--prom-bind", "off", "--", *ENC[:5], "queue", "name=q", "!", *ENC[5:]),
        env=agent_env(**QUIET), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = _aligned(tmp_path / "sessions/g")
    counts = rows.groupby(["stage_from", "stage_to"]).size().to_dict()
    for pair in (("enc.sink", "enc.src"), ("q.sink", "q.src"),
                 ("videotestsrc0.src", "fakesink0.sink")):
        assert counts[pair] == 300, counts
    enc = rows[rows.stage_from == "enc.sink"].sort_values("frame")
    assert list(enc.frame) == list(range(300))
    assert (enc.latency_ms > 0.05).all() and enc.energy_j.notna().mean() > 0.9
    # One frame is one trace: the same trace id for a frame at every element.
    f7 = rows[rows.frame == 7]
    assert f7.trace_id.nunique() == 1 and len(f7) == len(counts)
    assert "300 frames" in proc.stdout


@needs_gst
@pytest.mark.e2e
def test_only_the_named_stages_are_measured(tmp_path):
    proc = subprocess.run(
        agent_cmd("gst", "--data-root", str(tmp_path), "--session", "g", "--prom-bind", "off",
                  "--stage", "enc", "--", *ENC),
        env=agent_env(**QUIET), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    t = ds.dataset(tmp_path / "sessions/g/aligned").to_table().to_pandas()
    assert set(zip(t.stage_from, t.stage_to, strict=True)) == {
        ("enc.sink", "enc.src"), ("videotestsrc0.src", "fakesink0.sink")}


@needs_gst
@pytest.mark.e2e
def test_a_bad_pipeline_says_so_and_exits_with_its_status(tmp_path):
    proc = subprocess.run(
        agent_cmd("gst", "--data-root", str(tmp_path), "--prom-bind", "off", "--",
                  "videotestsrc", "!", "no_such_element", "!", "fakesink"),
        env=agent_env(**QUIET), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "the pipeline did not run" in proc.stderr and "no_such_element" in proc.stderr
    assert "Traceback" not in proc.stderr


@needs_gst
@pytest.mark.e2e
def test_a_child_killed_mid_run_ends_the_session_with_what_it_measured(tmp_path):
    agent = subprocess.Popen(
        agent_cmd("gst", "--data-root", str(tmp_path), "--session", "k", "--prom-bind", "off",
                  "--", "videotestsrc", "is-live=true", "!", "x264enc", "name=enc",
                  "tune=zerolatency", "!", "fakesink"),
        env=agent_env(**QUIET), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(agent)
    time.sleep(3)
    child = subprocess.run(["pgrep", "-P", str(agent.pid), "gst-launch"], capture_output=True,
                           text=True).stdout.split()
    assert child, "no gst-launch-1.0 child"
    subprocess.run(["kill", "-KILL", child[0]])
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 128 + signal.SIGKILL
    assert "killed by SIGKILL" in err
    rows = ds.dataset(tmp_path / "sessions/k/aligned").to_table().to_pandas()
    assert (rows.stage_from == "enc.sink").sum() > 30  # live at 30 fps for about 3 s
    assert '"end_reason"' in (tmp_path / "sessions/k/session.json").read_text()


@needs_gst
@pytest.mark.e2e
def test_a_pipeline_sent_to_a_running_agent(tmp_path):
    addr = f"udp://127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        agent_cmd("--data-root", str(tmp_path), "--session", "a", "--prom-bind", "off"),
        env=agent_env(**{**QUIET, "BENCHLAB_PROBE_ADDR": addr}), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_started(agent)
        gst = subprocess.run(agent_cmd("gst", "--to-agent", addr, "--name", "cam", "--", *ENC),
                             env=agent_env(), capture_output=True, text=True, timeout=60)
        assert gst.returncode == 0, gst.stderr
        assert "0 dropped" in gst.stderr
        time.sleep(1.5)
    finally:
        agent.send_signal(signal.SIGINT)
        agent.communicate(timeout=30)
    t = ds.dataset(tmp_path / "sessions/a/aligned").to_table().to_pandas()
    enc = t[(t.stage_from == "enc.sink") & (t.pipeline == "cam")]
    assert len(enc) == 300


@needs_gst
@pytest.mark.e2e
def test_a_pipeline_that_moves_no_buffers_says_the_tracer_reported_nothing(tmp_path):
    proc = subprocess.run(
        agent_cmd("gst", "--data-root", str(tmp_path), "--prom-bind", "off", "--",
                  "fakesrc", "num-buffers=0", "!", "fakesink"),
        env=agent_env(**QUIET), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "latency tracer reported nothing" in proc.stderr
