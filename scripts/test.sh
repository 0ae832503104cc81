#!/usr/bin/env bash
# Installs everything the tests need (Debian's prometheus and GStreamer, a venv with the package and its
# test extras) and runs the lint and the whole suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# Debian's prometheus (scraped by the end-to-end tests), GStreamer's tools with the plugins
# the pipeline tests use (x264enc is in -ugly), what PyGObject builds against (the
# in-process GStreamer probe's test), chromium (the report and live page tests drive it
# headless with Playwright's Python package), influxdb (the InfluxDB recipe's test) and
# systemd (systemd-analyze checks the bare-metal unit).
APT_PACKAGES="chromium influxdb systemd prometheus gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev pkg-config gcc"
if ! command -v prometheus >/dev/null 2>&1 || ! command -v gst-launch-1.0 >/dev/null 2>&1 \
        || ! gst-inspect-1.0 x264enc >/dev/null 2>&1 \
        || ! pkg-config --exists gobject-introspection-1.0 2>/dev/null \
        || ! command -v chromium >/dev/null 2>&1 || ! command -v influxd >/dev/null 2>&1 \
        || ! command -v systemd-analyze >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
fi
# The end-to-end tests start their own Prometheus and InfluxDB; Debian's services are not
# needed.
for service in prometheus influxdb; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        $SUDO systemctl stop "$service" || true
    fi
done

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# GStreamer's Python bindings for the in-process probe test; bookworm's GLib needs < 3.52.
.venv/bin/python -c "import gi" 2>/dev/null || .venv/bin/python -m pip install -q "PyGObject<3.52"

.venv/bin/ruff check .
# A module's tests stay on one worker (--dist loadfile): their shared agent runs once.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
