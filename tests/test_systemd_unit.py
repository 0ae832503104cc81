"""The bare-metal unit (deploy/systemd/) as systemd itself reads it: `systemd-analyze
verify` finds nothing, and `systemd-analyze security` scores its sandbox (the score is in
docs/bare-metal.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "systemd" / "otel-benchlab.service"


@pytest.fixture
def unit(tmp_path) -> Path:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (scripts/test.sh installs systemd)")
    # The installed command, where the unit's ExecStart would find it after the install.
    agent = Path(sys.executable).parent / "otel-benchlab"
    text = UNIT.read_text().replace("/opt/otel-benchlab/bin/otel-benchlab", str(agent))
    out = tmp_path / UNIT.name
    out.write_text(text)
    return out


def test_systemd_verifies_the_unit_without_a_word(unit):
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_the_sandbox_scores_ok_or_better(unit):
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
    assert score, done.stdout[-2000:] + done.stderr
    print(f"systemd-analyze security: {score.group(1)} {score.group(2)}")
    assert float(score.group(1)) <= 2.0  # docs/bare-metal.md gives it


def test_the_stop_timeout_outlasts_the_agents_bounded_exit():
    text = UNIT.read_text()
    assert "KillSignal=SIGTERM" in text
    assert int(re.search(r"TimeoutStopSec=(\d+)", text).group(1)) >= 10
