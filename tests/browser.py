"""Debian's Chromium, headless, driven by Playwright (its own browser download cannot work
here): a page is opened with every request outside the page's origin recorded and refused,
and its console errors collected."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container: no sandbox, and /tmp instead of a possibly small /dev/shm; no
# background connections (this machine's closed network refuses them, many at a time).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@dataclass
class Visit:
    page: object
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def chromium_or_skip() -> None:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")


@contextmanager
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def visit(b, url: str, allowed_prefix: str, **context) -> Iterator[Visit]:
    """Open ``url``; any request not starting with ``allowed_prefix`` (or data:) is
    recorded in ``outside`` and aborted."""
    ctx = b.new_context(**context)
    page = ctx.new_page()
    v = Visit(page)
    page.on("console", lambda m: v.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: v.errors.append(str(e)))

    def route(r) -> None:
        if r.request.url.startswith((allowed_prefix, "data:", "blob:")):
            r.continue_()
        else:
            v.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    try:
        yield v
    finally:
        ctx.close()


DRAWN_CANVASES = """() => Array.from(document.querySelectorAll('canvas')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return [c.closest('.chart') ? c.closest('.chart').id : '', n];
})"""


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def serious_violations(page) -> list[dict]:
    """Deque's axe-core run in the page: the violations of serious or critical impact,
    each with its rule, impact and the first elements it names."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, "
                          "{resultTypes: ['violations']})).violations")
    return [{"rule": v["id"], "impact": v["impact"], "help": v["help"],
             "where": [n["target"] for n in v["nodes"][:3]]}
            for v in found if v["impact"] in ("serious", "critical")]
