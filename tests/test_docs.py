"""The repository speaks of the project: no chapters of its making, no machine-local paths, and
generated documents that are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT

# A numbered chapter of how the project was built, or a goal told as history.
# (Spelled with classes so that this line does not match itself.)
HISTORY = re.compile(r"\b(s[e]ssions? \d|ch[a]pters? \d|the go[a]l was)", re.IGNORECASE)
# Absolute paths of the machine a text was written on: home and work folders.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(work|home|root|Users)/[\w.-]")
BENCHMARKS_MAX_LINES = 300
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ".json", ""}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    paths = [PROJECT_ROOT / name for name in listed if name]
    return [path for path in paths if path.is_file() and path.suffix in TEXT_SUFFIXES]


def machine_paths(line: str, checkout: Path, home: Path) -> bool:
    """Whether a line names a folder of the machine it was written on: a home or work folder,
    this checkout's own absolute path, or the user's home. The folder above the checkout is
    not one: a clone under /tmp must not flag /tmp/... paths that name a container's file or
    DVC's own .dvc/tmp."""
    folders = [f"{checkout}/"] + ([f"{home}/"] if len(home.parts) > 1 else [])
    return bool(MACHINE_PATH.search(line)) or any(folder in line for folder in folders)


def test_a_clone_under_tmp_flags_its_own_path_but_not_other_tmp_paths() -> None:
    checkout, home = Path("/tmp/pytest-7/clone"), Path("/home/someone")
    assert not machine_paths("      - /tmp/mlflow-auth.ini:/config/auth.ini:ro", checkout, home)
    assert not machine_paths('EXPERIMENTS = Path(".dvc/tmp/exps")', checkout, home)
    assert machine_paths("see /tmp/pytest-7/clone/data/raw", checkout, home)
    assert machine_paths("cached in /home/someone/.cache", checkout, Path("/nonstandard"))
    assert machine_paths("cached in /opt/me/.cache", checkout, Path("/opt/me"))


def test_tracked_text_tells_no_history_and_names_no_machine_path() -> None:
    offences = []
    for path in _tracked_text_files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if HISTORY.search(line) or machine_paths(line, PROJECT_ROOT, Path.home()):
                offences.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert offences == []


def test_the_benchmarks_are_a_short_leaderboard() -> None:
    lines = (PROJECT_ROOT / "docs" / "benchmarks.md").read_text().count("\n")
    assert lines <= BENCHMARKS_MAX_LINES


def test_the_lineage_document_holds_dvcs_current_graphs() -> None:
    """docs/lineage.md holds `dvc dag --md` and `dvc dag --outs --md` as they are now
    (`make lineage` redraws them)."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    document = (PROJECT_ROOT / "docs" / "lineage.md").read_text()
    for extra in ([], ["--outs"]):
        graph = subprocess.run(
            [dvc, "dag", "--md", *extra],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        assert graph.strip() in document, f"docs/lineage.md is stale: run `make lineage` ({extra})"


DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# A dotted name in backticks: code (denoise.serving.api.Denoiser), or a tag or event name the
# code writes as a string (denoise.reason, denoise.champion.moved).
DOTTED_NAME = re.compile(r"`(denoise(?:\.\w+)+)(?:\(\))?`")
# A command line in a fenced block: `denoise <command> ...`, after an optional prompt.
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?denoise ([a-z][a-z-]*)\b", re.MULTILINE)
FENCED = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)


def _resolves(name: str) -> bool:
    """Whether a dotted name is an importable module, or an attribute of one."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return False
        return True
    return False


def _written_names() -> set[str]:
    """The tag, metric and event names the code and flows write as "denoise.<name>..." strings."""
    written = set()
    sources = [
        *(PROJECT_ROOT / "src" / "denoise").rglob("*.py"),
        *(PROJECT_ROOT / "flows").glob("*.py"),
    ]
    for path in sources:
        written |= set(re.findall(r"[\"']denoise\.([\w.{}]+)", path.read_text()))
    return {name.split(".")[0] for name in written}


def test_every_name_of_the_code_the_docs_mention_exists() -> None:
    """Each `denoise.…` name is importable (a module, or a name in one), unless it is a tag or
    event name the code writes."""
    tags = _written_names()
    named = {
        (path.relative_to(PROJECT_ROOT), name)
        for path in DOCUMENTS
        for name in DOTTED_NAME.findall(path.read_text())
    }
    missing = [
        f"{path}: {name}"
        for path, name in sorted(named)
        if not _resolves(name) and name.split(".")[1] not in tags
    ]
    assert len(named) > 5 and missing == []


def test_every_denoise_command_the_docs_show_has_its_help() -> None:
    from typer.testing import CliRunner

    from denoise.cli import app

    commands = {
        (path.relative_to(PROJECT_ROOT), command)
        for path in DOCUMENTS
        for block in FENCED.findall(path.read_text())
        for command in COMMAND_LINE.findall(block)
    }
    assert commands, "the docs show denoise commands"
    runner = CliRunner()
    failed = []
    for path, command in sorted(commands):
        result = runner.invoke(app, [command, "--help"])
        if result.exit_code != 0 or "Usage" not in result.output:
            failed.append(f"{path}: denoise {command}: {result.output.strip()[-200:]}")
    assert failed == []


README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_short_and_every_link_of_the_docs_resolves() -> None:
    assert (PROJECT_ROOT / "README.md").read_text().count("\n") <= README_MAX_LINES
    broken = [
        f"{path.relative_to(PROJECT_ROOT)}: {target}"
        for path in DOCUMENTS
        for target in LINK.findall(path.read_text())
        if "://" not in target and not (path.parent / target).exists()
    ]
    assert broken == []
