"""Replay a round at a time is replay of the whole session: the same spans, the same
unpaired marks, the same energies, however small the rounds (and so whatever the
session's length, in the memory of a round)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from otel_benchlab.config import Config
from otel_benchlab.session.replay import replay_session

PAIRS = [("ingress", "encoded"), ("encoded", "done"), ("ingress", "done")]


def seed_session(root: Path, frames: int = 3000) -> Path:
    """Two cameras with frame ids and one without, three stages (``ingress->done``
    holds the other two pairs: nested), 2 % of marks lost, a few written twice, lines
    up to 0.3 s out of time order, and 10 Hz power with a 2 s gap."""
    rng = np.random.default_rng(7)
    lines = []
    for cam in ("cam0", "cam1", "cam2"):
        for f in range(frames):
            t = 1_000_000_000_000 + f * 16_666_667 + int(rng.integers(0, 2_000_000))
            stamps = (t, t + int(rng.integers(2, 9)) * 1_000_000,
                      t + int(rng.integers(10, 14)) * 1_000_000)
            for stage, ts in zip(("ingress", "encoded", "done"), stamps, strict=True):
                if rng.random() < 0.02:
                    continue
                kv = {"stage": stage} if cam == "cam2" else {"stage": stage, "frame": f}
                line = {"ts_ns": ts, "source": cam, "kv": kv}
                copies = 2 if rng.random() < 0.003 else 1
                jitter = int(rng.integers(0, 300_000_000)) if rng.random() < 0.01 else 0
                lines += [(ts - jitter, json.dumps(line))] * copies
    lines.sort(key=lambda x: x[0])
    raw = root / "seed" / "raw"
    raw.mkdir(parents=True)
    (raw / "pipeline.jsonl").write_text("".join(text + "\n" for _, text in lines))
    power = []
    for i in range(int(frames / 6) + 40):
        ts = 999_000_000_000 + i * 100_000_000
        if 20_000_000_000 < ts - 1_000_000_000_000 < 22_000_000_000:
            continue  # no samples for 2 s: no power known there
        power.append(json.dumps({"ts_ns": ts, "source": "benchlab",
                                 "kv": {"p_sys": 80.0 + 20 * np.sin(i / 7)}}))
    (raw / "benchlab.jsonl").write_text("\n".join(power) + "\n")
    return root / "seed"


def replayed(session: Path, out: Path, round_marks: int):
    cfg = Config()
    cfg.capframex.enabled = False
    result = replay_session(session, cfg, pairs=PAIRS, out=out, round_marks=round_marks)
    rows = pq.read_table(out / "aligned").to_pandas()
    return result, rows.sort_values(["stage_from", "stage_to", "trace_id"]).reset_index(
        drop=True)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("rounds")
    session = seed_session(root)
    return replayed(session, root / "whole", 10**9), replayed(session, root / "rounds", 700)


def test_small_rounds_find_the_same_spans(both):
    (_, whole), (_, rounds) = both
    assert len(whole) > 20_000
    cols = ["pipeline", "stream", "frame", "stage_from", "stage_to", "start_ns", "end_ns",
            "trace_id", "span_id"]
    assert whole[cols].equals(rounds[cols])


def test_small_rounds_count_the_same_unpaired_marks(both):
    (whole, _), (rounds, _) = both
    assert whole.unpaired == rounds.unpaired
    assert sum(v["duplicate"] for v in whole.unpaired.values()) > 0
    assert whole.spans == rounds.spans


def test_small_rounds_give_each_span_the_same_energy(both):
    (_, whole), (_, rounds) = both
    for col in ("energy_j", "energy_attr_j", "power_mean_w"):
        np.testing.assert_allclose(rounds[col].to_numpy(), whole[col].to_numpy(),
                                   rtol=1e-9, atol=1e-12, equal_nan=True)
    assert whole["energy_attr_j"].isna().sum() > 0  # the gap: no share invented there


def test_small_rounds_add_up_to_the_meter(both):
    (whole, _), (rounds, rows) = both
    for got in (whole.energy_j["sys"], rounds.energy_j["sys"]):
        assert got["attributed"] + got["idle"] == pytest.approx(got["total"], rel=1e-9)
    assert rounds.energy_j["sys"]["total"] == pytest.approx(whole.energy_j["sys"]["total"],
                                                            rel=1e-9)
    assert rows["energy_attr_j"].sum() == pytest.approx(rounds.energy_j["sys"]["attributed"],
                                                        rel=1e-9)


def test_a_seed_session_too_long_to_hold_is_reported_from_digests_with_its_losses(tmp_path):
    from otel_benchlab.views.sessions import load_session
    from otel_benchlab.views.summary import session_summary

    session = seed_session(tmp_path, frames=1500)
    exact = session_summary(load_session(session, pairs=PAIRS))
    digested = session_summary(load_session(session, pairs=PAIRS, digest_over=2000))
    assert exact["statistics"] == {"percentiles": "exact"}
    assert digested["statistics"]["percentiles"] == "sketch"
    assert digested["measured_from_marks"] and exact["measured_from_marks"]
    assert digested["losses"]["unpaired"] == exact["losses"]["unpaired"]
    assert sum(digested["losses"]["unpaired"].values()) > 0
    frames = {(p["stream"], p["from"], p["to"]): p["frames"] for p in exact["pairs"]}
    assert {(p["stream"], p["from"], p["to"]): p["frames"]
            for p in digested["pairs"]} == frames
