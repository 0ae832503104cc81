"""The Python probe: a real application process sends marks and stages over the probe
datagram socket to a real agent, whose Parquet holds them with power."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import textwrap
import time

import pyarrow.dataset as ds
import pytest

from otel_benchlab import probe
from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.probe import MAX_NAMES, ProbeReceiver, parse_datagram
from otel_benchlab.records import StageMark, StageSpan

from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

APP = textwrap.dedent("""
    import json, sys, time
    from otel_benchlab import probe
    sent = []
    p = probe.Probe(pipeline="app", stream="cam0")
    for n in range(200):
        p.mark("decoded", frame=n)
        time.sleep(0.002)
        p.mark("encoded", frame=n)
        t0 = time.monotonic_ns()
        time.sleep(0.001)
        t1 = time.monotonic_ns()
        p.span("infer", t0, t1, frame=n)
        sent.append([n, t0, t1])
    p.flush()
    json.dump({"spans": sent, "dropped": p.dropped}, sys.stdout)
""")


def test_a_datagram_holds_marks_and_spans():
    data = (b"bl1\nm\t100\tapp\tcam0\tdecoded\t7\nm\t150\tapp\tcam0\tencoded\t\n"
            b"s\t10\t20\tapp\tcam0\tinfer.start\tinfer.end\t7")
    records, rejected = parse_datagram(data)
    assert records == [StageMark(100, "app", "cam0", "decoded", 7),
                       StageMark(150, "app", "cam0", "encoded", None),
                       StageSpan("app", "cam0", 7, "infer.start", "infer.end", 10, 20)]
    assert rejected == []


def test_marks_of_every_datagram_share_one_string_object_per_name():
    names: dict[str, str] = {}
    first, _ = parse_datagram(b"bl1\nm\t1\tapp\tcam0\tdecoded\t7", names)
    second, _ = parse_datagram(b"bl1\nm\t2\tapp\tcam0\tdecoded\t8", names)
    assert first[0] == StageMark(1, "app", "cam0", "decoded", 7)
    assert first[0].pipeline is second[0].pipeline and first[0].stream is second[0].stream
    assert first[0].stage is second[0].stage


def test_a_sender_making_up_names_does_not_grow_the_shared_names_without_end():
    names: dict[str, str] = {}
    for i in range(MAX_NAMES):
        parse_datagram(f"bl1\nm\t1\tapp\tcam{i}\tdecoded\t7".encode(), names)
    records, _ = parse_datagram(b"bl1\nm\t1\tapp\tnew\tdecoded\t7", names)
    assert len(names) == MAX_NAMES and records[0].stream == "new"


@pytest.mark.parametrize("data,reason", [
    (b"\xff\xfe", "not_utf8"), (b"hello\nm\t1\ta\tb\tc\t", "not_probe"),
    (b"bl1\nm\tnot-a-time\tapp\tcam0\tdecoded\t7", "malformed"),
    (b"bl1\ns\t20\t10\tapp\tcam0\ta\tb\t", "malformed"),
    (b"bl1\nm\t1\tapp\tcam0", "malformed")])
def test_a_malformed_datagram_is_rejected_with_its_reason(data, reason):
    records, rejected = parse_datagram(data)
    assert records == [] and rejected == [reason]


LINES = ["m\t100\tapp\tcam0\tdecoded\t7", "m\t150\tapp\tcam0\tencoded\t",
         "m\t160\tapp\tcam0\t\t8", "m\t170\t\t\tdone\t9", "m\tx\tapp\tcam0\tdone\t9",
         "m\t180\tapp\tcam0\tdone\t9\textra", "x\t190\tapp\tcam0\tdone\t9",
         "s\t10\t20\tapp\tcam0\ta\tb\t7", "m\t200\tapp\tcam0\tdone\t-3",
         "m\t210\tapp\tm\tdone\t10", "m\t220\tapp\tcam0\tdone\t1.5", ""]


@pytest.mark.parametrize("good", [0, 1, 2, 30])
@pytest.mark.parametrize("odd", LINES[1:])
def test_a_datagram_reads_as_its_lines_would_one_by_one(good, odd):
    # Well-formed marks with ids, then one line of another kind, then more marks: the
    # datagram's records and rejections are those of each line read alone, in order.
    lines = [f"m\t{1000 + i}\tapp\tcam{i % 3}\tencoded\t{i}" for i in range(good)]
    lines += [odd] + [LINES[0]] * good
    whole = parse_datagram(("bl1\n" + "\n".join(lines) + "\n").encode())
    alone = ([], [])
    for line in lines:
        records, rejected = parse_datagram(f"bl1\n{line}\n".encode())
        alone[0].extend(records)
        alone[1].extend(rejected)
    assert whole == alone


def test_a_probe_with_no_agent_drops_and_counts_and_never_raises(tmp_path):
    p = probe.Probe(f"unix://{tmp_path}/nobody.sock")
    for n in range(300):
        assert p.mark("decoded", frame=n) in (True, False)
    p.mark("decoded", frame="not a number")
    with p.stage("encode", frame=1):
        pass
    p.flush()
    assert p.sent == 0 and p.dropped == 302
    p.close()


def test_a_probe_holds_a_bounded_number_of_marks(tmp_path):
    p = probe.Probe(f"unix://{tmp_path}/nobody.sock")
    p._flusher = object()  # no flusher thread: only a full batch sends
    p._pending.extend([(1, "a", "b", "c", None)] * probe.MAX_PENDING)
    assert p.mark("decoded") is False and p.dropped == 1
    assert len(p._pending) == probe.MAX_PENDING


def test_the_receiver_counts_rejected_datagrams_and_emits_the_rest(tmp_path):
    addr = f"unix://{tmp_path}/agent.sock"
    counters = AgentCounters()
    got: list = []
    rx = ProbeReceiver(addr, counters)
    rx.start(lambda batch: got.extend(batch) or True)  # a datagram's records, as a list
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.connect(f"{tmp_path}/agent.sock")
        s.send(b"garbage")
        p = probe.Probe(addr, pipeline="app")
        p.mark("decoded", frame=1)
        p.close()
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rx.stop()
    assert [m.stage for m in got] == ["decoded"]
    assert counters.get("input.rejected", source="probe", reason="not_probe") == 1


def test_datagrams_a_few_ms_apart_are_taken_together_and_none_is_lost(tmp_path):
    from otel_benchlab.receivers.probe import PACE_S

    addr = f"unix://{tmp_path}/agent.sock"
    got: list[tuple[float, StageMark]] = []
    rx = ProbeReceiver(addr, AgentCounters())
    rx.start(lambda batch: got.extend((time.monotonic(), r) for r in batch) or True)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.connect(f"{tmp_path}/agent.sock")
        for frame in range(10):  # a probe flushing every 5 ms
            s.send(f"bl1\nm\t{frame}\tapp\tcam\tdecoded\t{frame}".encode())
            time.sleep(0.005)
        last_sent = time.monotonic()
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        rx.stop()
    assert [r.frame for _, r in got] == list(range(10))
    # Taken in a few wake-ups (paced), none later than a pace after the last was sent.
    times = [t for t, _ in got]
    wakeups = 1 + sum(1 for a, b in zip(times, times[1:], strict=False) if b - a > 0.002)
    assert wakeups <= 4 and got[-1][0] - last_sent < PACE_S + 0.2


def test_a_second_receiver_on_a_taken_address_is_a_log_line(tmp_path, caplog):
    port = free_port()
    first, second = (ProbeReceiver(f"udp://127.0.0.1:{port}", AgentCounters())
                     for _ in range(2))
    first.start(lambda r: True)
    try:
        second.start(lambda r: True)
        second.stop()
    finally:
        first.stop()
    assert "cannot listen on" in caplog.text and "BENCHLAB_PROBE_ADDR" in caplog.text


@pytest.mark.e2e
def test_an_application_probe_reaches_the_agent_with_power(tmp_path):
    port = free_port()
    addr = f"udp://127.0.0.1:{port}"
    cfg = tmp_path / "agent.toml"
    cfg.write_text('pairs = [["decoded", "encoded"], ["infer.start", "infer.end"]]\n'
                   '[sim]\nsources = ["benchlab", "gpu"]\n')
    env = agent_env(BENCHLAB_PROBE_ADDR=addr, OTEL_TRACES_EXPORTER="none",
                    OTEL_METRICS_EXPORTER="none")
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
                  "--session", "probe", "--prom-bind", "off"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_started(agent)
        app = subprocess.run([sys.executable, "-c", APP], env=env, capture_output=True,
                             text=True, timeout=60)
        assert app.returncode == 0, app.stderr
        sent = json.loads(app.stdout)
        time.sleep(1.0)  # a power sample after the last span, so it has energy too
    finally:
        agent.send_signal(2)
        out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert sent["dropped"] == 0
    table = ds.dataset(tmp_path / "data/sessions/probe/aligned").to_table().to_pandas()
    aligned = table[table.power_source == "sys"]
    pairs = aligned.groupby(["stage_from", "stage_to"]).size().to_dict()
    assert pairs == {("decoded", "encoded"): 200, ("infer.start", "infer.end"): 200}
    infer = aligned[aligned.stage_from == "infer.start"].sort_values("frame")
    assert [[int(f), int(a), int(b)] for f, a, b in
            zip(infer.frame, infer.start_ns, infer.end_ns, strict=True)] == sent["spans"]
    enc = aligned[aligned.stage_from == "decoded"]
    assert (enc.latency_ms > 2.0).all()
    assert aligned["energy_j"].notna().all()


def test_the_receivers_queue_is_bounded_in_records_a_batch_counting_as_its_records():
    from otel_benchlab.agent.runtime import RecordQueue

    q = RecordQueue(maxsize=5)
    marks = [StageMark(i, "p", "s", "a", i) for i in range(4)]
    q.put_nowait(marks)
    assert q.qsize() == 4
    q.put_nowait(marks[0])
    with pytest.raises(queue.Full):
        q.put_nowait(marks[1])
    assert q.get_nowait() == marks and q.qsize() == 1
