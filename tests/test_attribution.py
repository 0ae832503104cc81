"""Attributed energy adds up: each source's energy is shared among the spans running at each
instant, and the spans' shares plus the idle energy are the source's energy over the
session. Known truth from independent computations, not round numbers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from otel_benchlab.processors.attribution import attribute, attribute_intervals, innermost_pieces
from otel_benchlab.processors.power_series import PowerSeries, energy_between

from .test_end_to_end import agent_cmd, agent_env

S = 1_000_000_000
GAP = S


def _streams(n_streams: int, seconds: float, rng,
             longest: float = 0.065) -> tuple[np.ndarray, np.ndarray]:
    """Spans of n streams at 30 fps, stages of 25-65 ms at random phases: they overlap."""
    starts, ends = [], []
    for _ in range(n_streams):
        t = int(rng.uniform(0, 0.033) * S)
        while t < seconds * S:
            d = int(rng.uniform(0.025, longest) * S)
            starts.append(t)
            ends.append(t + d)
            t += int(S / 30) + int(rng.integers(-1_000_000, 1_000_000))
    return np.array(starts, np.int64), np.array(ends, np.int64)


def _inverse_load_integral(starts, ends, i: int) -> float:
    """Seconds of span i weighted by 1/n(t), n = spans running: elementary stretches."""
    bounds = sorted(set(starts.tolist()) | set(ends.tolist()))
    total = 0.0
    for a, b in zip(bounds, bounds[1:], strict=False):
        if a >= starts[i] and b <= ends[i]:
            n = int(np.sum((starts <= a) & (ends >= b)))
            total += (b - a) / 1e9 / n
    return total


def test_at_constant_power_each_span_gets_power_times_the_integral_of_one_over_n():
    rng = np.random.default_rng(3)
    starts, ends = _streams(4, 1.0, rng)
    power = 250.0
    ts = np.arange(-S, 3 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), power))
    t0, t1 = 0, 2 * S
    got = attribute(series, starts, ends, t0, t1, GAP)
    for i in range(len(starts)):
        truth = power * _inverse_load_integral(starts, ends, i)
        assert got.attributed[i] == pytest.approx(truth, rel=1e-9)
    assert got.attributed.sum() + got.idle_j == pytest.approx(power * 2.0, rel=1e-12)
    assert got.total_j == pytest.approx(power * 2.0, rel=1e-12)


@pytest.mark.parametrize("streams", [1, 4, 16])
def test_with_a_varying_power_every_joule_is_attributed_once_or_idle(streams):
    rng = np.random.default_rng(streams)
    # One stream with stages shorter than its frame interval: nothing overlaps.
    starts, ends = _streams(streams, 20.0, rng, 0.030 if streams == 1 else 0.065)
    ts = np.arange(-S, 22 * S, 10_000_000)  # 100 Hz
    watts = 200.0 + 80.0 * np.sin(ts / 1.7e9) + 30.0 * np.sin(ts / 0.23e9)
    series = PowerSeries.from_power(ts, watts)
    t0, t1 = 0, 21 * S
    got = attribute(series, starts, ends, t0, t1, GAP)
    meter, _ = energy_between(series, np.array([t0]), np.array([t1]), GAP)
    assert abs(got.attributed.sum() + got.idle_j - meter[0]) <= 1e-3 * meter[0]
    assert got.total_j == pytest.approx(meter[0], rel=1e-9)
    # The analytic integral of the power (the meter's own truth) within 0.1 % as well.
    analytic = 200.0 * 21 + 80.0 * 1.7 * (1 - np.cos(21 / 1.7)) + 30.0 * 0.23 * (
        1 - np.cos(21 / 0.23))
    assert abs(got.attributed.sum() + got.idle_j - analytic) <= 1e-3 * analytic
    if streams == 1:  # nothing overlaps: attributed = while it ran
        alone, _ = energy_between(series, starts, ends, GAP)
        assert got.attributed == pytest.approx(alone, rel=1e-9)
    else:
        alone, _ = energy_between(series, starts, ends, GAP)
        assert alone.sum() > 1.2 * got.attributed.sum()  # the old figure counts twice


def test_weights_set_the_shares():
    ts = np.arange(0, 3 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), 90.0))
    got = attribute(series, np.array([0, 0]), np.array([S, S]), 0, S, GAP,
                    weights=np.array([1.0, 2.0]))
    assert got.attributed == pytest.approx([30.0, 60.0], rel=1e-12)


def test_a_span_in_a_gap_of_the_samples_gets_no_figure_and_the_rest_still_adds_up():
    # Spans: one in the known first second, one wholly in the gap, one after it.
    ts = np.concatenate([np.arange(0, S, 10_000_000), np.arange(3 * S, 5 * S, 10_000_000)])
    series = PowerSeries.from_power(ts, np.full(len(ts), 100.0))
    got = attribute(series, np.array([S // 4, 2 * S, 4 * S]),
                    np.array([S // 2, 2 * S + S // 2, 4 * S + S // 2]), 0, 5 * S - 10_000_000,
                    GAP // 2)
    assert got.attributed[0] == pytest.approx(25.0) and got.attributed[2] == pytest.approx(50.0)
    assert np.isnan(got.attributed[1])
    assert np.nansum(got.attributed) + got.idle_j == pytest.approx(got.total_j, rel=1e-12)


def test_a_parent_is_charged_only_while_none_of_its_children_runs():
    # Frame 1: a->c contains a->b and b->c; frame 2 runs beside it with one span.
    starts = np.array([0, 0, 4 * S // 10, 0])
    ends = np.array([S, 4 * S // 10, 8 * S // 10, S])
    groups = [("p", "s", 1), ("p", "s", 1), ("p", "s", 1), ("p", "s", 2)]
    ps, pe, owner = innermost_pieces(starts, ends, groups)
    ts = np.arange(0, 2 * S, 10_000_000)
    series = PowerSeries.from_power(ts, np.full(len(ts), 100.0))
    got = attribute(series, ps, pe, 0, S, GAP, owners=owner, n_spans=4)
    # At every instant two spans run: frame 1's innermost one, and frame 2's.
    assert got.attributed == pytest.approx([10.0, 20.0, 20.0, 50.0], rel=1e-12)
    assert got.idle_j == pytest.approx(0.0, abs=1e-9)


def test_spans_of_different_frames_are_never_nested():
    starts, ends = np.array([0, S // 4]), np.array([S, S // 2])
    ps, pe, owner = innermost_pieces(starts, ends, [1, 2])
    assert list(owner) == [0, 1] and list(ps) == [0, S // 4]


# -- the agent and replay, end to end ------------------------------------------------


def _run_simulated(tmp_path, seconds: int, streams: int) -> Path:
    cfg = tmp_path / "agent.toml"
    names = ", ".join(f'"cam{i}"' for i in range(streams))
    cfg.write_text(f"[sim]\nstreams = [{names}]\n")
    proc = subprocess.run(
        agent_cmd("--simulate", "--config", str(cfg), "--duration", str(seconds),
                  "--data-root", str(tmp_path / "data"), "--session", "a",
                  "--prom-bind", "off"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      BENCHLAB_PROBE_ADDR="off"),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp_path / "data/sessions/a", proc.stdout


def _meter_energy(session: Path, label: str, window: list[int]) -> float:
    """The source's energy over the window where it is known (between its first and last
    sample), from the session's raw samples."""
    manifest = json.loads((session / "session.json").read_text())
    sensor = next(s for s in manifest["sensors"] if s.get("power_source") == label)
    raw = ds.dataset(session / "raw/samples").to_table(
        filter=(pc.field("source") == sensor["source"]) & (pc.field("sensor") == sensor["name"]))
    ts, v = raw["ts_unix_ns"].to_numpy(), raw["value"].to_numpy()
    order = np.argsort(ts)
    ts, v = ts[order], v[order]
    got, _ = energy_between(PowerSeries.from_power(ts, v), np.array([max(window[0], ts[0])]),
                            np.array([min(window[1], ts[-1])]), S // 2)
    return float(got[0])


@pytest.mark.e2e
@pytest.mark.parametrize("streams", [1, 16])
def test_the_agents_attributed_energy_and_idle_add_up_to_the_meter(tmp_path, streams):
    session, out = _run_simulated(tmp_path, 8, streams)
    summary = json.loads((session / "session.json").read_text())["summary"]
    rows = ds.dataset(session / "aligned").to_table().to_pandas()
    assert summary["unattributed_spans"] == 0
    # A span partly outside the samples (the first, the last) has no while-it-ran figure
    # but its share of what was measured; one wholly after the last sample has neither.
    assert rows.energy_attr_j.notna().sum() > rows.energy_j.notna().sum()
    assert rows.energy_attr_j.notna().mean() > 0.95
    for label, column in (("sys", "energy_attr_j"), ("gpu", "energy_attr_j_gpu")):
        e = summary["energy_j"][label]
        assert rows[column].sum() == pytest.approx(e["attributed"], rel=1e-9)
        assert rows[column].sum() + e["idle"] == pytest.approx(e["total"], rel=1e-3)
        assert e["total"] == pytest.approx(
            _meter_energy(session, label, summary["energy_window_unix_ns"]), rel=1e-3)
    # The while-it-ran figure counts overlapping spans' joules again; never less.
    known = rows[rows.energy_j.notna()]
    assert (known.energy_j >= known.energy_attr_j - 1e-9).all()
    assert rows.energy_j.sum() > 1.2 * rows.energy_attr_j.sum()
    # The summary's per-frame figure: the meter's energy over the frames completed.
    frames = int((rows.stage_to == "inference_done").sum())
    line = next(ln for ln in out.splitlines() if "energy per frame" in ln and "summary" not in ln
                and ln.startswith("  "))
    per_frame = float(re.search(r"([\d.]+) mJ sys", line).group(1))
    assert per_frame == pytest.approx(1e3 * summary["energy_j"]["sys"]["total"] / frames,
                                      rel=2e-3)


@pytest.mark.e2e
def test_replay_gives_the_attributed_energy_the_live_agent_wrote(tmp_path):
    session, _ = _run_simulated(tmp_path, 6, 4)
    proc = subprocess.run(agent_cmd("replay", str(session), "--out", str(tmp_path / "re")),
                          env=agent_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    live = ds.dataset(session / "aligned").to_table().to_pandas()
    again = ds.dataset(tmp_path / "re/aligned").to_table().to_pandas()
    both = live.merge(again, on="span_id", suffixes=("", "_replay"))
    assert len(both) == len(live) == len(again)
    for column in ("energy_attr_j", "energy_attr_j_gpu", "energy_attr_j_cpu"):
        assert both[column].to_numpy() == pytest.approx(both[column + "_replay"].to_numpy(),
                                                        rel=1e-6, abs=1e-9, nan_ok=True)
    assert "attributed to spans" in proc.stdout


def test_with_a_stage_to_source_mapping_each_stage_gets_only_its_sources_shares():
    from otel_benchlab.processors.attribution import StageShares, attribute_spans
    from otel_benchlab.records import StageSpan

    ts = np.arange(0, 2 * S, 10_000_000)
    series = {"gpu": PowerSeries.from_power(ts, np.full(len(ts), 100.0)),
              "cpu": PowerSeries.from_power(ts, np.full(len(ts), 50.0))}
    spans = [StageSpan("p", "s", 1, "encode.start", "encode.end", 0, S),  # a GPU stage
             StageSpan("p", "s", 1, "pre.start", "pre.end", 0, S),  # a CPU stage, at once
             StageSpan("p", "s", 2, "post", "done", S // 2, S)]  # named nowhere
    shares = StageShares(["gpu", "cpu"], {"gpu": ["encode*"], "cpu": ["pre"]})
    starts = np.array([s.start_ns for s in spans])
    ends = np.array([s.end_ns for s in spans])
    got, idle, total = attribute_spans(spans, starts, ends, series, 0, S, GAP, shares)
    assert got[0] == pytest.approx([100.0, 0.0])  # all of the GPU, none of the CPU
    assert got[1] == pytest.approx([0.0, 50.0])
    assert got[2] == pytest.approx([0.0, 0.0])  # every source is someone's
    assert idle == pytest.approx([0.0, 0.0]) and total == pytest.approx([100.0, 50.0])


def test_a_stage_named_for_no_source_shares_the_sources_named_for_none():
    from otel_benchlab.processors.attribution import StageShares

    shares = StageShares(["sys", "gpu"], {"gpu": ["infer*"]}, {"infer*": 3.0})
    takes, weight = shares.decide("infer.start", "infer.end")
    assert list(takes) == [False, True] and weight == 3.0
    takes, weight = shares.decide("decode", "encode")
    assert list(takes) == [True, False] and weight == 1.0


# None: everything ready at once; 7: a burst released a slice of 7 spans at a time;
# packed: waiting spans packed into columns past 10 of them (pending_spans)
@pytest.mark.parametrize("max_spans,packed", [(None, False), (7, False), (None, True),
                                              (7, True)])
def test_live_attribution_in_intervals_equals_one_pass_over_the_session(max_spans, packed):
    from otel_benchlab.processors.energy import EnergyAnnotator
    from otel_benchlab.processors.live_attribution import LiveAttribution
    from otel_benchlab.records import StageSpan

    rng = np.random.default_rng(11)
    starts, ends = _streams(4, 6.0, rng)
    order = np.argsort(ends)
    spans = [StageSpan("p", f"s{i % 4}", i, "a", "b", int(starts[i]), int(ends[i]))
             for i in order]
    live = LiveAttribution(["sys"], GAP, 2 * S, 0)
    annotator = EnergyAnnotator({"sys": "power"}, GAP, keep_ns=60 * S, attribution=live)
    if packed:
        annotator._pending.pack_from, annotator._pending.pack_min = 10, 3
    watts = lambda t: 150.0 + 40.0 * np.sin(t / 0.9e9)  # noqa: E731
    got: dict[int, float] = {}
    k = cuts = 0
    for now in range(S // 4, 12 * S, S // 4):  # the agent's ticks; spans come as they end
        for t in range(now - S // 4, now, 10_000_000):
            annotator.add_power("sys", t, float(watts(t)))
        while k < len(spans) and spans[k].end_ns <= now:
            annotator.add_span(spans[k])
            k += 1
        while True:
            done = annotator.release(now, flush=now >= 12 * S - S // 4, max_spans=max_spans)
            assert max_spans is None or len(done) <= max_spans
            got.update({s.frame: a for s, a in zip(done.spans, done.attributed["sys"],
                                                   strict=True)})
            if not annotator.cut:
                break
            cuts += 1
    assert len(got) == len(spans) and live.unattributed == 0
    assert (cuts > 0) == (max_spans is not None)
    assert annotator._pending.packed_total > 0 if packed else not annotator._pending.packs
    ts = np.arange(0, 12 * S, 10_000_000)
    series = {"sys": PowerSeries.from_power(ts, watts(ts))}
    whole = attribute(series["sys"], starts, ends, 0, live.done_to, GAP)
    assert [got[i] for i in range(len(spans))] == pytest.approx(whole.attributed, rel=1e-9)
    assert live.total_j[0] == pytest.approx(whole.total_j, rel=1e-9)
    assert live.idle_j[0] == pytest.approx(whole.idle_j, rel=1e-6)


@pytest.mark.parametrize("per_frame", [3, 7])  # a few spans a frame, and many
def test_nesting_is_found_whatever_the_number_of_spans_in_a_frame(per_frame):
    from otel_benchlab.processors.attribution import nested_groups

    starts = np.array([10 * i for i in range(per_frame)] * 2, np.int64)
    ends = starts + 10
    group = np.array([1] * per_frame + [2] * per_frame, np.int64)
    grouped = np.ones(len(starts), bool)
    assert nested_groups(group, grouped, starts, ends) is None  # back to back: not nested
    ends[per_frame] = 10 * per_frame  # frame 2's first span now holds all the others
    found = nested_groups(group, grouped, starts, ends)
    assert found == [None] * per_frame + [2] * per_frame
    grouped[per_frame:] = False  # spans of their own (no frame id) are never nested
    assert nested_groups(group, grouped, starts, ends) is None


@pytest.mark.parametrize("nested", [False, True])
def test_a_session_shared_out_window_by_window_gives_what_one_window_gives(monkeypatch,
                                                                            nested):
    from otel_benchlab.processors import attribution

    rng = np.random.default_rng(5)
    starts, ends = _streams(8, 4.0, rng)
    starts, ends = np.append(starts, [S, 2 * S]), np.append(ends, [S, 2 * S])  # 0 long
    group = np.arange(len(starts), dtype=np.int64)
    if nested:  # a span holding the next one of its frame
        group[1] = group[0]
        ends[0] = max(ends[0], ends[1])
        starts[0] = min(starts[0], starts[1])
    ts = np.arange(-S, 6 * S, 10_000_000)
    watts = 120.0 + 60.0 * np.sin(ts / 0.7e9)
    gap_from = (ts > 2 * S) & (ts < 2 * S + 3 * S // 4)  # a gap in the samples
    series = {"sys": PowerSeries.from_power(ts[~gap_from], watts[~gap_from]),
              "gpu": PowerSeries.from_power(ts, watts / 2)}
    args = (series, starts, ends, group, np.ones(len(starts), bool), 0, 5 * S, S // 2)
    whole = attribution.attribute_intervals(*args)
    monkeypatch.setattr(attribution, "WINDOW_PIECES", 37)  # dozens of windows
    windows = attribution.attribute_intervals(*args)
    assert windows[0] == pytest.approx(whole[0], rel=1e-9, abs=1e-12, nan_ok=True)
    assert np.isnan(windows[0]).any()  # the spans in the gap: no figure
    assert windows[1] == pytest.approx(whole[1], rel=1e-9)
    assert windows[2] == pytest.approx(whole[2], rel=1e-9)


def test_a_parent_covered_by_its_children_and_one_in_two_pieces_are_told_apart():
    # Frame 1: A [0, 10] is all children (B, C): no piece of its own. Frame 2: D [20, 40]
    # with E [25, 30] inside: D in two pieces. As many pieces as spans, in other hands.
    starts = np.array([0, 0, 5, 20, 25]) * S // 10
    ends = np.array([10, 5, 10, 40, 30]) * S // 10
    group = np.array([1, 1, 1, 2, 2], np.int64)
    ts = np.arange(0, 5 * S, 10_000_000)
    series = {"sys": PowerSeries.from_power(ts, np.full(len(ts), 10.0))}
    got, idle, total = attribute_intervals(series, starts, ends, group,
                                           np.ones(5, bool), 0, 4 * S, GAP)
    assert got[:, 0] == pytest.approx([0.0, 5.0, 5.0, 15.0, 5.0])  # J at 10 W
    assert idle[0] == pytest.approx(10.0)  # 1-2 s and 3-4 s: nothing runs
    assert total[0] == pytest.approx(40.0)
