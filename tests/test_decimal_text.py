"""Decimal text for whole arrays is, value for value, what Python itself writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from otel_benchlab.exporters.decimal_text import (
    fixed,
    joined_text,
    json_array,
    lines,
    rounded_repr,
)


def awkward_values() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.concatenate([
        rng.normal(0, 1, 50_000), rng.normal(0, 1e-5, 20_000), rng.uniform(0, 1e6, 20_000),
        rng.gamma(20, 1 / 20, 20_000) * 8,
        np.arange(-2000, 2000) / 128, np.arange(-2000, 2000) / 1024,  # exact ties
        np.arange(0, 20_000) / 1e4, np.arange(0, 20_000) / 1e6,
        np.round(rng.uniform(0, 100, 20_000), 7),  # near ties at six digits
        rng.integers(0, 10**9, 20_000) / 1e6,  # latencies from whole ns: near ties at 4
        rng.integers(0, 10**13, 20_000) / 1e9,  # seconds from whole ns: near ties at 6
        [0.0, -0.0, np.nan, np.inf, -np.inf, 1e20, -1e20, 5e-7, -5e-7, 0.5, 1.5, 2.5,
         1e-5, 1e-6, 9.99995e-5, 0.00015, 123456789.1234565, 2.0 ** 60],
    ])


@pytest.mark.parametrize("digits", [3, 4, 6])
def test_fixed_matches_python_format_for_every_value(digits):
    values = awkward_values()
    got = fixed(values, digits).to_pylist()
    assert got == [None if v != v else f"{v:.{digits}f}" for v in values.tolist()]


@pytest.mark.parametrize("digits", [3, 4, 6])
def test_rounded_repr_matches_json_of_python_round_for_every_value(digits):
    values = awkward_values()
    got = rounded_repr(values, digits).to_pylist()
    assert got == [json.dumps(round(v, digits)) for v in values.tolist()]


def test_ties_round_half_to_even_as_python_does():
    assert fixed(np.array([1 / 128, 3 / 128]), 6).to_pylist() == ["0.007812", "0.023438"]


def test_json_array_is_what_json_dumps_writes_for_the_list():
    values = np.array([1.0, 2.25, -0.0, 1e-06, np.nan])
    expected = json.dumps([round(v, 6) for v in values])
    assert joined_text(json_array(rounded_repr(values, 6))) == expected
    assert joined_text(json_array(rounded_repr(np.zeros(0), 6))) == "[]"


def test_lines_repeats_a_plain_text_on_every_row_and_ends_each_row():
    cells = fixed(np.array([1.0, np.nan]), 2).fill_null("")
    assert joined_text(lines(["app", cells, "z"])) == "app,1.00,z\napp,,z\n"


def test_lines_writes_a_plain_text_between_columns_on_every_row():
    a = fixed(np.array([1.0, 2.0, 3.0]), 1)
    text = joined_text(lines(["x", "y", a, "0.0", a, a, "z"], sep=";"))
    assert text == "".join(f"x;y;{v};0.0;{v};{v};z\n" for v in ("1.0", "2.0", "3.0"))
    assert joined_text(lines([a.slice(0, 0), "z"])) == ""
