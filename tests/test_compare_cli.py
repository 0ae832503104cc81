"""``otel-benchlab compare`` on sessions written as an agent writes them, one with a
stage 5 % slower: which stage got worse, by how much, with an interval, and the exit
status a CI job reads."""

from __future__ import annotations

import json
import subprocess

import pytest

from .browser import DRAWN_CANVASES, browser, chromium_or_skip, visit
from .synthetic_runs import run, write_session
from .test_end_to_end import agent_cmd, agent_env

ENV = agent_env()


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("compare", *args), capture_output=True, text=True,
                          env=ENV, timeout=120)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    base = write_session(root / "base", {("decode", "infer"): run(1),
                                         ("infer", "encode"): run(2)})
    slower = write_session(root / "slower", {("decode", "infer"): run(3),
                                             ("infer", "encode"): run(4, latency_factor=1.05)})
    again = write_session(root / "again", {("decode", "infer"): run(5),
                                           ("infer", "encode"): run(6)})
    fewer = write_session(root / "fewer", {("decode", "infer"): run(7)})
    return root, base, slower, again, fewer


def _metric(result: dict, to: str, metric: str) -> dict:
    pair = next(p for p in result["pairs"] if p["to"] == to)
    return next(m for m in pair["metrics"] if m["metric"] == metric)


def test_the_slower_stage_is_worse_and_the_gate_fails(sessions):
    root, base, slower, _, _ = sessions
    done = compare(str(base), str(slower), "--json", str(root / "r.json"),
                   "--markdown", str(root / "r.md"), "--fail-on-regression")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((root / "r.json").read_text())
    p50 = _metric(result, "encode", "latency_p50_ms")
    assert p50["verdict"] == "worse"
    assert p50["ci_pct"][0] < 5 < p50["ci_pct"][1] and 3 < p50["change_pct"] < 7
    assert _metric(result, "infer", "latency_p50_ms")["verdict"] == "same"
    assert "WORSE" in done.stdout and "bench infer->encode [cam0]" in done.stdout
    assert "**worse**" in (root / "r.md").read_text()


def test_two_runs_of_one_process_pass_the_gate(sessions):
    root, base, _, again, _ = sessions
    done = compare(str(base), str(again), "--fail-on-regression", "--json",
                   str(root / "same.json"))
    assert done.returncode == 0, done.stdout
    result = json.loads((root / "same.json").read_text())
    assert {m["verdict"] for p in result["pairs"] for m in p["metrics"]} == {"same"}


def test_without_the_gate_a_regression_exits_0(sessions):
    _, base, slower, _, _ = sessions
    assert compare(str(base), str(slower)).returncode == 0


def test_a_pair_in_one_run_only_is_named_missing(sessions):
    root, base, _, _, fewer = sessions
    done = compare(str(base), str(fewer), "--json", str(root / "m.json"))
    result = json.loads((root / "m.json").read_text())
    assert result["missing"] == [{"pipeline": "bench", "stream": "cam0", "from": "infer",
                                  "to": "encode", "only_in": "baseline"}]
    assert "missing: bench infer->encode [cam0] is only in the baseline" in done.stdout


def test_several_candidates_are_each_compared_with_the_baseline(sessions):
    root, base, slower, again, _ = sessions
    done = compare(str(base), str(slower), str(again), "--json", str(root / "several.json"))
    got = json.loads((root / "several.json").read_text())["comparisons"]
    assert [c["candidate"] for c in got] == [str(slower), str(again)]
    assert done.stdout.count("baseline:") == 2


def test_bad_usage_exits_2(sessions, tmp_path):
    _, base, _, _, _ = sessions
    assert compare(str(base), str(tmp_path / "none")).returncode == 2
    assert compare(str(base), str(base), "--confidence", "2").returncode == 2
    assert compare(str(base)).returncode == 2


def test_the_html_draws_the_cdfs_and_the_changes(sessions):
    chromium_or_skip()
    root, base, slower, _, _ = sessions
    assert compare(str(base), str(slower), "--html", str(root / "c.html")).returncode == 0
    page = root / "c.html"
    with browser() as b, visit(b, page.as_uri(), page.parent.as_uri()) as v:
        v.page.wait_for_function("document.body.dataset.drawn === 'yes'", timeout=10_000)
        drawn = dict(v.page.evaluate(DRAWN_CANVASES))
        verdict = v.page.text_content(
            "h2:has-text('infer->encode') + table tr[data-metric=latency_p50_ms] td.worse")
        assert v.errors == [] and v.outside == []
    assert len(drawn) == 4 and all(n > 300 for n in drawn.values()), drawn
    assert verdict == "worse"
