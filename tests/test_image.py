"""What can be checked of the container image without a container engine: the wheel the
Dockerfile installs holds the whole agent and its entry point, and the Dockerfile runs that
entry point as a non-root user."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built as the Dockerfile builds it: an isolated build with the pinned backend.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                    str(out), str(REPO)], check=True, timeout=300)
    (whl,) = out.glob("otel_benchlab-*.whl")
    return whl


def test_the_wheel_holds_every_package_the_agent_imports(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("otel_benchlab/cli.py", "otel_benchlab/receivers/nvml.py",
                   "otel_benchlab/receivers/otlp_intake.py", "otel_benchlab/exporters/otlp.py",
                   "otel_benchlab/processors/pairing.py", "otel_benchlab/probes/gstreamer.py",
                   "otel_benchlab/k8s/_gen/api_pb2.py"):
        assert module in names, module
    assert not any(n.startswith(("receivers/", "exporters/", "tests/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "otel-benchlab = otel_benchlab.cli:main" in text


def test_the_installed_wheel_runs_its_entry_point(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    py = env_dir / "bin" / "python"
    # The test environment has the dependencies; install just this wheel over them.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(tmp_path / "site"), str(wheel)], check=True, timeout=300)
    out = subprocess.run([str(py), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "from otel_benchlab.cli import main; sys.exit(main(['--version']))",
                          str(tmp_path / "site")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("otel-benchlab "), out.stderr


def test_the_dockerfile_installs_the_wheel_and_runs_the_entry_point_as_non_root():
    assert re.search(r"^FROM .* AS build$", DOCKERFILE, re.M), "multi-stage"
    assert "pip wheel" in DOCKERFILE and re.search(r"pip install .*\.whl", DOCKERFILE)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user == ["10001"]
    assert re.search(r'^ENTRYPOINT \["otel-benchlab"\]$', DOCKERFILE, re.M)
    assert "gstreamer1.0-tools" in DOCKERFILE
    # Everything the wheel is built from is copied into the build stage.
    for folder in ("otel_benchlab", "receivers", "processors", "exporters"):
        assert f"COPY {folder} ./{folder}" in DOCKERFILE
