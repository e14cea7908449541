"""A results branch: where a worker commits each pipeline run's lineage, never on main.

A worker checks out the configured branch, runs the pipeline, and commits dvc.lock, the .dvc
files and the reports git tracks to a results branch (results/<branch>), built in a temporary
index so that the checked-out branch, the index and the working tree never move.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

GIT_REMOTE = "origin"  # fetched from and pushed to when the clone has it
PROTECTED_BRANCHES = ("main", "master")  # results are never committed to these


class GitFailed(RuntimeError):
    """A git command failed: a network error when it fetches or pushes, else a local problem."""


def git(arguments: list[str], root: Path, index: Path | None = None, check: bool = True) -> str:
    """Run git in root; return its stripped output. index: a temporary index file to use."""
    env = {**os.environ, **({"GIT_INDEX_FILE": str(index)} if index else {})}
    result = subprocess.run(
        ["git", *arguments], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise GitFailed(f"git {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def has_remote(root: Path) -> bool:
    return GIT_REMOTE in git(["remote"], root).split()


def check_results_branch(root: Path, branch: str | None, results_branch: str) -> None:
    """Refuse a results branch that is the source branch, the checked-out one, or main."""
    current = git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False)
    if results_branch in {branch, current, *PROTECTED_BRANCHES}:
        raise ValueError(
            f"results_branch {results_branch!r} is a source branch; results are committed to "
            f"their own branch, e.g. results/{branch or current or 'main'}"
        )


def _lineage_files(root: Path) -> list[str]:
    """dvc.lock, the .dvc files and the outputs DVC leaves to git (cache: false), that exist."""
    from dvc.repo import Repo

    names = {"dvc.lock"}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            names.add(os.path.relpath(stage.dvcfile.path, root))
            names.update(
                os.path.relpath(out.fs_path, root) for out in stage.outs if not out.use_cache
            )
    return sorted(name for name in names if (root / name).exists())


def transfer(command: str, root: Path, branch: str | None = None) -> None:
    """`git fetch` the remote's branches, or `git push` branch to it."""
    git([command, "--quiet", GIT_REMOTE, *([branch] if branch else [])], root)


def checkout(branch: str, root: Path) -> str:
    """Put the working tree on branch, fast-forwarded to the remote's when there is one.

    Git refuses (and so does this) when local changes would be lost. Returns the commit.
    """
    if git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False) != branch:
        git(["checkout", "--quiet", branch], root)
    if has_remote(root):
        git(["merge", "--ff-only", "--quiet", f"{GIT_REMOTE}/{branch}"], root)
    return git(["rev-parse", "HEAD"], root)


def commit_results(results_branch: str, root: Path) -> str | None:
    """Commit dvc.lock, the .dvc files and the git-tracked reports to results_branch.

    The commit is built in a temporary index (read-tree, add, write-tree, commit-tree,
    update-ref) instead of by checking the results branch out, so the checked-out branch, the
    index and the working tree stay exactly as they are. Its tree is the source commit's plus
    this run's lineage; its parents are the previous results commit and, when it is new, the
    source commit; a clone without the branch yet builds on the remote's copy of it. Returns
    the new commit, or None when the lineage did not change.
    """
    head = git(["rev-parse", "HEAD"], root)
    ref = f"refs/heads/{results_branch}"
    local = git(["rev-parse", "--verify", "--quiet", ref], root, check=False)
    remote = f"refs/remotes/{GIT_REMOTE}/{results_branch}"
    tip = local or git(["rev-parse", "--verify", "--quiet", remote], root, check=False)
    with tempfile.TemporaryDirectory() as folder:
        index = Path(folder) / "index"
        git(["read-tree", head], root, index)
        git(["add", "--", *_lineage_files(root)], root, index)
        tree = git(["write-tree"], root, index)
    if tip and git(["merge-base", head, tip], root) == head:
        if git(["rev-parse", f"{tip}^{{tree}}"], root) == tree:
            return None
        parents = [tip]
    else:
        parents = [tip, head] if tip else [head]
    parent_options = [option for parent in parents for option in ("-p", parent)]
    message = f"Pipeline results for {head[:12]}"
    commit = git(["commit-tree", tree, *parent_options, "-m", message], root)
    # Compare-and-swap: fails rather than overwrite a results commit made meanwhile.
    git(["update-ref", ref, commit, local or "0" * 40], root)
    return commit
