"""The live page at the agent's Prometheus address, in Debian's Chromium: it draws the
running session, switches windows, pauses, keeps dark mode across a reload, downloads the
window as CSV, and fetches nothing from anywhere but the agent."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .browser import DRAWN_CANVASES, browser, chromium_or_skip, serious_violations, visit
from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    chromium_or_skip()
    port = free_port()
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp_path_factory.mktemp("live")),
                  "--session", "live", "--prom-bind", f"127.0.0.1:{port}"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = wait_started(proc)
    yield f"http://127.0.0.1:{port}", banner
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def chromium():
    chromium_or_skip()
    with browser() as b:
        yield b


def _ready(v) -> None:
    v.page.wait_for_function("document.body.dataset.drawn === 'yes' && "
                             "document.querySelectorAll('canvas').length >= 6",
                             timeout=20_000)


def test_the_banner_prints_the_page_and_metrics_stay_where_they_were(agent):
    url, banner = agent
    assert banner["live page"] == url + "/"
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert b"# HELP" in r.read()


def test_the_page_has_no_serious_accessibility_violation(agent, chromium):
    """Deque's axe-core in Chromium, once the page has drawn: nothing serious or
    critical."""
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        assert serious_violations(v.page) == []


def test_the_page_draws_every_chart_from_the_agent_alone(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        v.page.wait_for_timeout(1500)  # a few polls
        drawn = dict(v.page.evaluate(DRAWN_CANVASES))
        sources = v.page.eval_on_selector_all(
            "[data-source]", "els => els.map(e => [e.dataset.source, e.textContent])")
        assert v.errors == [] and v.outside == []
    assert len(drawn) == 6 and all(n > 300 for n in drawn.values()), drawn
    assert dict((name, text.endswith("up")) for name, text in sources)["sys"]


def test_the_cards_show_the_numbers_the_endpoint_sent(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        with v.page.expect_response(lambda r: "/api/live?" in r.url) as answer:
            pass
        sent = answer.value.json()
        v.page.wait_for_timeout(300)  # drawn from that answer
        frames = v.page.eval_on_selector_all(
            "[data-card=frames] .v", "els => els.map(e => e.textContent)")
    assert frames == [f"{p['cards']['frames']:g}" for p in sent["pairs"]]


def test_switching_the_window_asks_for_it(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        with v.page.expect_response(lambda r: "window=300" in r.url):
            v.page.select_option("#window", "300")
        v.page.wait_for_function("document.body.dataset.window === '300'", timeout=5000)
        assert v.page.get_attribute("#csv", "href") == "/api/live.csv?window=300"


def test_pause_stops_the_updates_and_resume_restarts_them(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        v.page.click("#pause")
        v.page.wait_for_timeout(300)
        before = v.page.text_content("#updated")
        v.page.wait_for_timeout(2500)
        assert v.page.text_content("#updated") == before
        v.page.click("#pause")
        v.page.wait_for_function(f"document.getElementById('updated').textContent !== "
                                 f"{json.dumps(before)}", timeout=5000)


def test_dark_mode_is_kept_across_a_reload(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url) as v:
        _ready(v)
        v.page.click("#theme")
        v.page.reload()
        _ready(v)
        assert v.page.evaluate("document.documentElement.dataset.theme") == "dark"
        bg = v.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(17, 21, 28)"


def test_the_csv_download_holds_the_windows_frames(agent, chromium):
    url, _ = agent
    with visit(chromium, url + "/", url, accept_downloads=True) as v:
        _ready(v)
        with v.page.expect_download() as dl:
            v.page.click("#csv")
        text = Path(dl.value.path()).read_text().splitlines()
    assert text[0] == ("end_unix_s,pipeline,stream,stage_from,stage_to,latency_ms,"
                       "power_sys_w,energy_sys_mj")
    rows = [line.split(",") for line in text[1:]]
    assert len(rows) > 50 and {r[3] for r in rows} == {"ingress", "encoded"}
    assert all(float(r[5]) > 0 for r in rows)
