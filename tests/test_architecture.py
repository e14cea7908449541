"""The package's structure holds: layers, no cycles, DVC code deps that cover what stages run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml
from conftest import PROJECT_ROOT
from repository import build_repository, sh

SOURCE = PROJECT_ROOT / "src"
LONG_MODULE_LINES = 400
LONG_MODULE_REASON = "Over 400 lines:"  # what a longer module's docstring must say, and why


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """Every import between denoise modules, those inside functions included."""
    return grimp.build_graph("denoise", cache_dir=None)


def _module_file(module: str) -> Path:
    path = SOURCE / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _cli_imports(command: str) -> set[str]:
    """The denoise modules the cli package's modules import at their top and inside the
    command's function (the other commands' lazy imports do not run), the cli's own aside."""
    nodes: list[ast.stmt] = []
    for path in sorted((SOURCE / "denoise" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        nodes += [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == command:
                nodes += [
                    inner
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                ]
    modules = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("denoise"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                modules.add(candidate if _module_file(candidate).is_file() else node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.startswith("denoise")}
    return {module for module in modules if module.split(".")[:2] != ["denoise", "cli"]}


def _stage_command_modules(graph: grimp.ImportGraph, stage: str) -> set[str]:
    """The modules `denoise <stage>` runs: the cli package, what it and the command import,
    all they import in turn, and the packages that hold them (whose __init__ Python runs
    first)."""
    roots = _cli_imports(stage)
    modules = {module for module in graph.modules if module.startswith("denoise.cli")} | roots
    for root in roots:
        modules |= graph.find_upstream_modules(root)
    packages = set()
    for module in modules:
        parts = module.split(".")
        packages |= {".".join(parts[:end]) for end in range(1, len(parts))}
    return modules | packages


def test_the_layer_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycle_among_modules(graph: grimp.ImportGraph) -> None:
    """Tarjan's strongly connected components over module-to-module imports: all singletons."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def test_long_modules_say_why() -> None:
    for path in sorted((SOURCE / "denoise").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES:
            assert LONG_MODULE_REASON in text.split('"""')[1], f"{path}: {text.count(chr(10))}"


@pytest.mark.parametrize(
    "stage", list(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"])
)
def test_dvc_code_deps_cover_every_module_the_stage_runs(
    graph: grimp.ImportGraph, stage: str
) -> None:
    definition = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]
    definition = definition.get("do", definition)  # a foreach stage: what each item runs
    deps = [Path(dep) for dep in definition["deps"] if dep.startswith("src/")]
    uncovered = []
    for module in sorted(_stage_command_modules(graph, stage)):
        path = _module_file(module).relative_to(PROJECT_ROOT)
        if not any(path == dep or dep in path.parents for dep in deps):
            uncovered.append(str(path))
    assert uncovered == [], f"dvc.yaml stage {stage} runs code its deps do not name"


def test_editing_a_module_a_stage_imports_marks_only_that_stage_changed(tmp_path: Path) -> None:
    """In a real git + DVC repository: after extract ran, editing code that extract runs makes
    `dvc status` report it; editing training code, which extract does not run, does not."""
    root = build_repository(tmp_path / "project")
    sh("dvc", "repro", "extract", cwd=root)  # with preflight, which every stage depends on

    def changed() -> set[str]:
        result = sh("dvc", "status", "--json", "extract", cwd=root)
        return set(yaml.safe_load(result.stdout or "{}"))

    assert changed() == set()
    loop = root / "src" / "denoise" / "training" / "loop.py"
    loop.write_text(loop.read_text() + "\n# an edit\n")
    assert changed() == set()
    video = root / "src" / "denoise" / "data" / "video.py"
    video.write_text(video.read_text() + "\n# an edit\n")
    assert changed() == {"extract"}
