"""Sessions too long to hold are compared from digests and a second pass of per-block
aggregates: on sessions that fit, the verdicts are the in-memory comparison's (a 5 %
slower stage found, sessions of one process judged the same) and the intervals within a
tenth of a percentage point of its."""

from __future__ import annotations

import pytest

from benchmarks.report_speed import make_session
from otel_benchlab.views.compare import compare_sessions
from otel_benchlab.views.sessions import load_session


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    return (make_session(tmp / "a", 200_000, 2), make_session(tmp / "b", 200_000, 3,
                                                              slower=1.05),
            make_session(tmp / "c", 200_000, 4))


def both_ways(x, y) -> list[tuple[dict, dict]]:
    exact = compare_sessions(load_session(x), load_session(y), 2.0, 0.95)
    digested = compare_sessions(load_session(x, digest_over=0),
                                load_session(y, digest_over=0), 2.0, 0.95)
    assert [(p["stream"], p["from"]) for p in exact["pairs"]] == \
        [(p["stream"], p["from"]) for p in digested["pairs"]]
    return [(m, n) for p, q in zip(exact["pairs"], digested["pairs"], strict=True)
            for m, n in zip(p["metrics"], q["metrics"], strict=True)]


def test_a_5_percent_slower_stage_is_found_as_in_memory(sessions):
    a, b, _ = sessions
    pairs = both_ways(a, b)
    assert [m["verdict"] for m, _ in pairs] == [n["verdict"] for _, n in pairs]
    assert any(m["metric"] == "latency_p50_ms" and n["verdict"] == "worse" for m, n in pairs)


def test_sessions_of_one_process_are_judged_the_same_as_in_memory(sessions):
    a, _, c = sessions
    pairs = both_ways(a, c)
    assert [m["verdict"] for m, _ in pairs] == [n["verdict"] for _, n in pairs]


def test_the_intervals_are_the_in_memory_ones_within_a_tenth_of_a_point(sessions):
    a, b, _ = sessions
    for m, n in both_ways(a, b):
        if m["ci_pct"] is not None:
            assert abs(m["ci_pct"][0] - n["ci_pct"][0]) < 0.1, m["metric"]
            assert abs(m["ci_pct"][1] - n["ci_pct"][1]) < 0.1, m["metric"]
