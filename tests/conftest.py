"""Fixtures more than one test module takes."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs",
                                            str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


# The soak (tests/test_soak.py) runs for three minutes of wall time in which it mostly
# waits: it is started in the background as soon as the tests are collected, and its
# tests, which come late in the run, read its result. The rest of the suite runs beside it
# (its agent takes about a fifth of a core at 4x the default load).
_SOAK: dict[str, object] = {}


def pytest_collection_modifyitems(session, config, items):
    if any(item.nodeid.startswith("tests/test_soak.py") for item in items) and \
            not _SOAK and not config.option.collectonly:
        import tempfile
        import threading

        from .test_soak import start_soak

        workdir = tempfile.mkdtemp(prefix="soak-")
        thread = threading.Thread(target=lambda: _SOAK.__setitem__("result",
                                                                   start_soak(workdir)),
                                  name="soak", daemon=True)
        _SOAK["thread"] = thread
        thread.start()


@pytest.fixture(scope="session")
def soak_result():
    thread = _SOAK.get("thread")
    if thread is None:  # run on its own with -p no:... or a filter: in the foreground
        import tempfile

        from .test_soak import start_soak

        return start_soak(tempfile.mkdtemp(prefix="soak-"))
    thread.join()
    return _SOAK["result"]
