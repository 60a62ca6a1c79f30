"""The house rules of docs/ARCHITECTURE.md, checked on the source: imports go down only, at the top."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_probe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sibling_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported mnist_probe module, at top level?) for every import of the package in a file."""
    tree = ast.parse(path.read_text())
    top = set(tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_probe"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(n, node in top) for n in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node in top) for a in node.names if a.name.startswith("mnist_probe")]
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {m: {n for n, _ in sibling_imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}


def test_no_function_level_imports_of_sibling_modules():
    inside = [(m, n) for m, p in MODULES.items() for n, at_top in sibling_imports(p) if not at_top]
    assert inside == []


def test_library_never_imports_a_stage_or_the_entry_point():
    library = [
        m
        for m in MODULES
        if not m.startswith(
            ("mnist_probe.stages", "mnist_probe.pages", "mnist_probe.run", "mnist_probe.bench")
        )
    ]
    assert "mnist_probe.translation" in library and "mnist_probe.stages.shift" not in library
    edges = graph()
    bad = {
        m: sorted(n for n in edges[m] if n.startswith(("mnist_probe.stages", "mnist_probe.run")))
        for m in library
    }
    assert {m: v for m, v in bad.items() if v} == {}


def test_no_import_cycle():
    edges = graph()
    assert edges["mnist_probe.stages.shift"]  # the parser sees imports
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in edges[m]:
            assert state.get(n) != 1, " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [])


def test_the_code_is_laid_out_as_ruff_format_lays_it_out():
    """make lint's second half: one layout, the formatter's (README's Python blocks too, which ruff
    formats from 0.16), and markers that hold it off only where a table of data reads better aligned."""
    root = PACKAGE.parent
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "mnist_probe", "tests", "conf", "README.md"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = [p for folder in ("mnist_probe", "tests", "conf") for p in (root / folder).rglob("*.py")]
    markers = sum(p.read_text().count("fmt: skip") for p in files)
    assert markers <= 20


def test_every_module_is_under_400_lines():
    """docs/ARCHITECTURE.md: one concept to a module; split it when it passes about 400 lines."""
    lengths = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert lengths["mnist_probe.model"] > 100  # the files are read
    assert {m: n for m, n in lengths.items() if n >= 400} == {}


def test_every_package_of_the_source_is_shipped():
    """pyproject.toml lists the packages by name: a new subpackage must be listed, or an installed copy
    (not an editable one) lacks it."""
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    declared = project["tool"]["setuptools"]["packages"]
    found = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert "mnist_probe.stages" in found and found - set(declared) == set()


PAGES = {m: p for m, p in MODULES.items() if m.startswith("mnist_probe.pages")}
# What a page may not read while it renders: a config, a clock, the machine, event files, a model
NOT_IN_PAGES = ("omegaconf", "hydra", "datetime", "time", "tensorboard", "torch")
NOT_IN_PAGES_OF_OURS = ("mnist_probe.config", "mnist_probe.schema", "mnist_probe.machine")


def direct_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    return found | {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


def test_pages_render_from_results_alone():
    """pages/ reads typed results and writes markdown: no config, clock, machine or event file, no
    stage but the typed results (stages/results.py), and importing every page loads no torch."""
    assert "mnist_probe.pages.render" in PAGES
    bad = {
        m: sorted(
            n
            for n in direct_imports(p)
            if n.split(".")[0] in NOT_IN_PAGES
            or n.startswith(NOT_IN_PAGES_OF_OURS)
            or (n.startswith("mnist_probe.stages") and n != "mnist_probe.stages.results")
        )
        for m, p in PAGES.items()
    }
    assert {m: v for m, v in bad.items() if v} == {}
    code = f"import sys; import {', '.join(PAGES)}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'torch'" not in loaded and "'tensorboard'" not in loaded and "'hydra'" not in loaded
