"""The BENCHLAB reader against the byte-exact emulator over a real pseudo-terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.benchlab import BenchlabReceiver
from otel_benchlab.receivers.benchlab_emulator import BenchlabEmulator
from otel_benchlab.receivers.benchlab_port import discover, permission_hint


class Collector:
    def __init__(self) -> None:
        self.samples = []
        self.lock = threading.Lock()

    def __call__(self, rec) -> bool:
        with self.lock:
            self.samples.append(rec)
        return True

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.samples) >= n:
                    return
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.samples)} of {n} samples came")


@pytest.fixture
def emulator(request):
    product, fw = getattr(request, "param", (0x10, 6))
    emu = BenchlabEmulator(product, fw, load=lambda t: 0.5).start()
    yield emu
    emu.stop()


def start(emu, hz=50.0, **kw):
    counters = AgentCounters()
    rx = BenchlabReceiver(f"uid:{emu.uid.hex().upper()}", hz, counters, ports=emu.ports, **kw)
    out = Collector()
    rx.start(out)
    return rx, counters, out


@pytest.mark.parametrize("emulator", [(0x10, 6), (0x10, 2), (0x11, 4), (0x11, 5)],
                         indirect=True)
def test_reads_both_products_over_a_pty_with_time_and_round_trip(emulator):
    rx, counters, out = start(emulator)
    try:
        out.wait_for(20)
    finally:
        rx.stop()
    s = out.samples
    assert {x.source for x in s} == {emulator.uid.hex().upper()}
    assert all(b.ts_ns > a.ts_ns for a, b in zip(s, s[1:], strict=False))
    # Every sample has its round trip; a loaded machine (a parallel test run) may stretch a
    # few, not the typical one.
    assert all(0 < x.rtt_ns < 1_000_000_000 for x in s)
    assert sorted(x.rtt_ns for x in s)[len(s) // 2] < 50_000_000
    assert rx.identities()[0]["product"] == ("BENCHLAB 2" if emulator.product_id == 0x11
                                             else "BENCHLAB ORIGINAL")
    assert s[-1].values["SYS"] == pytest.approx(30 + 35 + 22 + (70 + 230 + 6) * 0.5, abs=0.01)
    infos = {i.name: i for i in rx.sensors()}
    assert infos["SYS"].metric == "hw.host.power" and infos["SYS"].power_source == "sys"
    assert infos["CPU"].attributes["hw.id"].endswith(":CPU")
    assert set(s[-1].values) <= set(infos)


def test_polls_on_absolute_deadlines_at_the_configured_rate(emulator):
    rx, counters, out = start(emulator, hz=40.0)
    try:
        time.sleep(2.0)
    finally:
        rx.stop()
    ts = [x.ts_ns for x in out.samples]
    span_s = (ts[-1] - ts[0]) / 1e9
    # Deadlines do not drift: samples plus slots skipped on a busy machine fill the rate
    slots = len(ts) - 1 + counters.get("read.overruns")
    assert 38.0 < slots / span_s < 42.0


def test_short_replies_are_counted_and_reading_goes_on(emulator):
    rx, counters, out = start(emulator)
    try:
        out.wait_for(5)
        emulator.faults.short_replies = 2
        n = len(out.samples)
        out.wait_for(n + 10)
    finally:
        rx.stop()
    uid = emulator.uid.hex().upper()
    assert counters.get("read.errors", source=uid, reason="short_read") == 2
    assert all(x.values["Vdd"] == 3.3 for x in out.samples)


def test_junk_before_a_reply_drops_that_sample_not_the_stream(emulator):
    rx, counters, out = start(emulator)
    try:
        out.wait_for(5)
        emulator.faults.junk_replies = 1
        out.wait_for(len(out.samples) + 10)
    finally:
        rx.stop()
    assert counters.get("read.errors", source=emulator.uid.hex().upper(), reason="junk") >= 1
    assert all(x.values["Vdd"] == 3.3 for x in out.samples)  # no garbled sample got through


def test_silence_is_counted_and_the_device_is_identified_again(emulator):
    rx, counters, out = start(emulator, timeout_s=0.05)
    try:
        out.wait_for(5)
        emulator.faults.silent_replies = 4
        out.wait_for(len(out.samples) + 10)
    finally:
        rx.stop()
    assert counters.get("read.errors", source=emulator.uid.hex().upper(), reason="timeout") >= 3


def test_slow_replies_flag_samples_as_uncertain(emulator):
    rx, counters, out = start(emulator, max_rtt_ms=10.0)
    try:
        out.wait_for(3)
        emulator.faults.delay_s = 0.03
        out.wait_for(len(out.samples) + 5)
    finally:
        rx.stop()
    slow = [x for x in out.samples if x.rtt_ns > 25_000_000]
    assert slow and all(x.uncertain for x in slow)
    assert counters.get("sample.uncertain") >= len(slow)


def test_unplug_and_replug_on_another_path_is_followed_by_uid(emulator):
    rx, counters, out = start(emulator)
    uid = emulator.uid.hex().upper()
    try:
        out.wait_for(5)
        first_path = emulator.path
        emulator.unplug()
        deadline = time.monotonic() + 10
        while counters.get("device.disconnects", source=uid) < 1:  # the reader lets go
            assert time.monotonic() < deadline, "the reader did not notice the unplug"
            time.sleep(0.02)
        # Hold ptys until the freed one is held, so the device returns elsewhere (other
        # processes' ptys, such as the background soak's, make "the next one" unsure).
        holders = []
        while len(holders) < 64:
            holders.append(os.openpty())
            if os.ttyname(holders[-1][1]) == first_path:
                break
        time.sleep(1.0)
        emulator.replug()
        assert emulator.path != first_path
        n = len(out.samples)
        out.wait_for(n + 10, timeout=20)
    finally:
        rx.stop()
        for pair in locals().get("holders", ()):
            for fd in pair:
                os.close(fd)
    assert counters.get("device.disconnects", source=uid) == 1
    assert counters.get("device.reconnects", source=uid) == 1
    gaps = [b.ts_ns - a.ts_ns for a, b in zip(out.samples, out.samples[1:], strict=False)]
    assert max(gaps) > 0.9e9  # the gap is visible in the data, not papered over


def test_unknown_firmware_is_refused_with_a_message_that_says_what_to_do(emulator):
    emulator.faults.unknown_firmware = True
    found, errors = discover(f"uid:{emulator.uid.hex().upper()}", emulator.ports)
    assert not found
    assert [e.reason for e in errors] == ["unknown_firmware"]
    assert "benchlab-pycore" in str(errors[0]) or "contract" in str(errors[0])


def test_a_port_that_is_not_a_benchlab_is_not_taken_for_one():
    master, slave = os.openpty()
    try:
        found, errors = discover(os.ttyname(slave), timeout_s=0.1)
    finally:
        os.close(master)
        os.close(slave)
    assert not found and errors[0].reason == "not_benchlab"


def test_no_device_is_one_clear_log_line_and_no_crash(caplog):
    rx = BenchlabReceiver("auto", 10, AgentCounters(), ports=lambda: [])
    assert rx.sensors() == [] and "no BENCHLAB found" in caplog.text
    rx.start(lambda r: True)
    rx.stop()


def test_permission_hint_names_the_group_and_a_udev_rule(tmp_path):
    p = tmp_path / "ttyACM0"
    p.write_text("")
    hint = permission_hint(str(p))
    assert "usermod -aG" in hint and 'ATTRS{idVendor}=="0483"' in hint


def test_devices_command_lists_and_reads_an_emulated_device():
    proc = subprocess.run([sys.executable, "-m", "otel_benchlab", "devices", "--simulate"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "0123456789ABCDEF01234567" in proc.stdout and "BENCHLAB ORIGINAL" in proc.stdout
    assert "EPS1" in proc.stdout and "Tchip" in proc.stdout


def test_devices_command_says_clearly_when_none_is_found(tmp_path):
    cfg = tmp_path / "agent.toml"  # no GPU library and an empty sysfs: nothing at all
    cfg.write_text(f'[host]\nnvml = false\nsysfs_root = "{tmp_path}"\n')
    proc = subprocess.run([sys.executable, "-m", "otel_benchlab", "devices", "--config",
                           str(cfg), "--benchlab-device", "/dev/does-not-exist"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "No BENCHLAB found" in proc.stderr
    assert "no RAPL" in proc.stdout and "NVIDIA GPUs (NVML): off" in proc.stdout


def test_several_devices_are_each_their_own_source_with_their_own_power_labels():
    a = BenchlabEmulator(0x10, 6, uid=bytes.fromhex("aa" * 12), load=lambda t: 0.2).start()
    b = BenchlabEmulator(0x11, 5, uid=bytes.fromhex("bb" * 12), load=lambda t: 0.8).start()
    try:
        counters = AgentCounters()
        rx = BenchlabReceiver("auto", 20, counters, ports=lambda: a.ports() + b.ports())
        out = Collector()
        rx.start(out)
        out.wait_for(10)
        rx.stop()
    finally:
        a.stop()
        b.stop()
    assert {s.source for s in out.samples} == {"AA" * 12, "BB" * 12}
    labels = {i.power_source for i in rx.sensors() if i.power_source}
    assert labels == {"sys_aaaaaa", "cpu_aaaaaa", "gpu_aaaaaa",
                      "sys_bbbbbb", "cpu_bbbbbb", "gpu_bbbbbb"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_port_without_permission_names_the_group_and_udev_rule(emulator):
    os.chmod(emulator.path, 0o660)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody (the code is already loaded), then try the port
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            _, errors = discover(emulator.path)
            os.write(write_end, f"{errors[0].reason}\n{errors[0]}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as fh:
        reason, message = fh.read().split("\n", 1)
    assert reason == "permission"
    assert "usermod -aG" in message and "udev" in message and emulator.path in message


def test_a_port_in_use_is_skipped_not_talked_into(emulator):
    rx, counters, out = start(emulator)
    try:
        out.wait_for(3)
        found, errors = discover(emulator.path)  # a second agent, or a lost device's search
        n = len(out.samples)
        out.wait_for(n + 10)
    finally:
        rx.stop()
    assert not found and [e.reason for e in errors] == ["busy"]
    assert counters.get("read.errors") == 0  # the device in use never saw a stray request
