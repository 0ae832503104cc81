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


# Long runs that mostly wait are started in the background as soon as the tests are
# collected, and their tests, which come later in the run, read their results: the soak
# (tests/test_soak.py, three minutes at 4x the default load) and the 60 s session with
# uploads (tests/test_upload_session.py). The rest of the suite runs beside them.
_BACKGROUND: dict[str, dict[str, object]] = {}


def _starter(module: str):  # noqa: ANN202 - the module's start function
    if module == "test_soak":
        from .test_soak import start_soak
        return start_soak
    from .test_upload_session import start_upload_session
    return start_upload_session


def _start_background(module: str) -> None:
    import tempfile
    import threading

    state: dict[str, object] = {}
    workdir = tempfile.mkdtemp(prefix=f"{module}-")
    start = _starter(module)
    def run() -> None:
        try:
            state["result"] = start(workdir)
        except BaseException as exc:  # raised again in the tests that read the result
            state["error"] = exc

    thread = threading.Thread(target=run, name=module, daemon=True)
    state["thread"] = thread
    _BACKGROUND[module] = state
    thread.start()


def pytest_collection_modifyitems(session, config, items):
    if config.option.collectonly:
        return
    for module in ("test_soak", "test_upload_session"):
        if module not in _BACKGROUND and \
                any(item.nodeid.startswith(f"tests/{module}.py") for item in items):
            _start_background(module)


def _background_result(module: str):  # noqa: ANN202
    state = _BACKGROUND.get(module)
    if state is None:  # run on its own with -p no:... or a filter: in the foreground
        import tempfile

        return _starter(module)(tempfile.mkdtemp(prefix=f"{module}-"))
    state["thread"].join()  # type: ignore[attr-defined]
    if "error" in state:
        raise state["error"]  # type: ignore[misc]
    return state["result"]


@pytest.fixture(scope="session")
def soak_result():
    return _background_result("test_soak")


@pytest.fixture(scope="session")
def upload_session_result():
    return _background_result("test_upload_session")
