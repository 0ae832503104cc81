"""The reference pages in docs/reference/ are what scripts/gen_docs.py writes from the code
today: a config key, an instrument or a Parquet column added without them fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["configuration.md", "parquet.md", "log-messages.md"])
def test_the_committed_page_is_what_the_code_says(gen, page):
    committed = (ROOT / "docs" / "reference" / page).read_text()
    assert committed == gen.PAGES[page](), f"docs/reference/{page} is stale: run " \
        "scripts/gen_docs.py"


@pytest.mark.e2e
def test_the_metrics_page_is_what_an_agent_with_every_source_makes(gen):
    committed = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    assert committed == gen.metrics(), "docs/reference/metrics.md is stale: run " \
        "scripts/gen_docs.py"


def test_every_config_key_is_in_the_reference(gen):
    from otel_benchlab.config import RANGES

    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    assert all(f"`{key}`" in page for key in RANGES)
    assert "`intake.max_delay_s`" in page and "`BENCHLAB_PROM`" in page
    assert "`--prom-bind`" in page
