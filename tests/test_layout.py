"""The house's rules, checked on the source: a few modules on the ground floor, none too
long to read in one sitting, and no two modules that import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where each installed package's source lies (pyproject's package-dir).
SOURCES = {"otel_benchlab": ROOT / "otel_benchlab",
           "otel_benchlab.receivers": ROOT / "receivers",
           "otel_benchlab.processors": ROOT / "processors",
           "otel_benchlab.exporters": ROOT / "exporters"}
MAX_LOOSE = 10
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            if "_gen" in path.parts:  # generated gRPC stubs
                continue
            rel = path.relative_to(folder).with_suffix("").parts
            if package == "otel_benchlab" and rel[0] in ("receivers", "processors",
                                                         "exporters"):
                continue
            name = ".".join((package, *rel))
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, at the top or inside a function."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.add(full if full in known else module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != name}


def test_at_most_ten_modules_are_loose_on_the_ground_floor():
    loose = sorted(p.name for p in (ROOT / "otel_benchlab").glob("*.py"))
    assert len(loose) <= MAX_LOOSE, loose


def test_no_module_is_longer_than_450_lines():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_no_two_modules_import_each_other():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    both = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                   if a in graph.get(b, set())})
    assert not both, both


def test_every_room_says_what_lives_there():
    for init in (ROOT / "otel_benchlab").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, f"{init.parent.name}/__init__.py: say what it may import"
