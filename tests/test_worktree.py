"""Run worktrees on a real repository: the start commit, and what counts as a change."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import workspace
from daemon.runs import RunStatus
from daemon.store import NewRun
from daemon.testing import Project, running_daemon, wait_for
from daemon.workspace import refs

from .helpers import git, make_repo, wait_event, wait_status


async def test_a_worktree_starts_at_the_base_and_an_untouched_one_leaves_nothing(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    tree = await workspace.create(repo, tmp_path / "trees", "check", 1, None)
    assert tree.base == git(repo, "rev-parse", "HEAD").strip()
    assert git(tree.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "nightshift/check/1"
    outcome = await workspace.finish(tree, 1)
    assert outcome == workspace.Outcome("", "", None)
    await workspace.remove(tree, outcome)
    assert not tree.path.exists()
    assert "nightshift/check/1" not in git(repo, "branch", "--list")


async def test_an_untracked_file_is_a_change(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tree = await workspace.create(repo, tmp_path / "trees", "fix", 2, None)
    (tree.path / "notes.txt").write_text("new\n")
    outcome = await workspace.finish(tree, 2)
    assert "notes.txt" in outcome.stat
    assert outcome.commit == git(tree.path, "rev-parse", "HEAD").strip()


async def test_a_commit_the_agent_made_itself_is_kept_as_the_runs_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tree = await workspace.create(repo, tmp_path / "trees", "fix", 3, None)
    (tree.path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(tree.path, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qam", "agent's own")
    outcome = await workspace.finish(tree, 3)  # the tree is clean, but HEAD moved on
    assert "calc.py" in outcome.stat
    assert "+    return a + b" in outcome.diff


async def test_a_base_branch_is_resolved_when_the_worktree_is_made(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "release")
    first = git(repo, "rev-parse", "release").strip()
    git(repo, "commit", "-q", "--allow-empty", "-m", "x")  # the base moves on
    tree = await workspace.create(repo, tmp_path / "trees", "fix", 4, "release")
    assert tree.base == first != git(repo, "rev-parse", "HEAD").strip()


async def test_a_run_that_cannot_start_leaves_no_worktree_behind(
    project: Project, tmp_path: Path
) -> None:
    # The worktree of a local repository is started before the run's inputs are checked.
    repo = make_repo(tmp_path / "repo")
    project.skill("fix", "print()", inputs={"issue": {"type": "integer", "required": True}})
    project.automation(
        "fix",
        skill="fix",
        inputs={"issue": "{{ event.payload.issue }}"},
        workspace={"repository": str(repo), "isolate": True},
    )
    async with running_daemon(project.config()) as d:
        run = await d.store.call(d.store.create_run, NewRun("fix", "schedule:0", {}))
        d.executor.enqueue(run)
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.FAILED)
        assert done.summary.startswith("cannot start: issue")
        trees = d.config.state_dir / "worktrees"
        tree = trees / str(run.id)
        text = f"working on branch nightshift/fix/{run.id} in {tree}"
        await wait_event(d, run.id, "message", text=text)  # it was made, then:
        await wait_for(lambda: not tree.exists())
    assert "nightshift/fix" not in git(repo, "branch", "--list")


def worktrees(repo: Path) -> list[str]:
    """The worktree paths git itself records for `repo`, prunable ones marked."""
    listed = git(repo, "worktree", "list", "--porcelain").split("\n\n")
    return [
        block.splitlines()[0].removeprefix("worktree ")
        + (" (prunable)" if "\nprunable" in block else "")
        for block in listed
        if block.strip()
    ]


async def test_the_next_run_takes_the_spare_worktree_at_the_base_as_it_is_then(
    tmp_path: Path,
) -> None:
    repo, spares, trees = make_repo(tmp_path / "repo"), tmp_path / "spares", tmp_path / "trees"
    await workspace.prepare_spare(repo, spares, None)
    await workspace.prepare_spare(repo, spares, None)  # one spare per repository
    (spare,) = spares.iterdir()
    git(repo, "commit", "-q", "--allow-empty", "-m", "on")  # the base moves on
    tree = await workspace.create(repo, trees, "fix", 7, None, spares)
    assert not spare.exists() and not list(spares.iterdir())  # taken, moved into place
    assert tree.base == git(repo, "rev-parse", "HEAD").strip()  # the base as it is now
    assert git(tree.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "nightshift/fix/7"
    assert git(tree.path, "rev-parse", "--show-toplevel").strip() == str(tree.path)
    assert worktrees(repo) == [str(repo), str(tree.path)]  # git knows where it went
    (tree.path / "notes.txt").write_text("new\n")
    outcome = await workspace.finish(tree, 7)
    assert "notes.txt" in outcome.stat
    await workspace.remove(tree, outcome)
    assert worktrees(repo) == [str(repo)] and not tree.path.exists()
    again = await workspace.create(repo, trees, "fix", 8, None, spares)  # no spare: made anew
    assert again.base == tree.base and worktrees(repo) == [str(repo), str(again.path)]


def index_of(spares: Path) -> int:
    """The inode of the one spare's index: `git checkout` writes a new index file, the
    ref writer leaves it as it is."""
    (spare,) = spares.iterdir()
    return (refs.admin_of(spare) / "index").stat().st_ino


def same_index(tree: Path, inode: int) -> bool:
    return (refs.admin_of(tree) / "index").stat().st_ino == inode


@pytest.mark.parametrize("packed", [False, True], ids=["loose refs", "packed refs"])
async def test_a_spare_still_at_the_base_is_put_on_its_branch_as_git_would(
    tmp_path: Path, packed: bool
) -> None:
    repo, spares, trees = make_repo(tmp_path / "repo"), tmp_path / "spares", tmp_path / "trees"
    git(repo, "branch", "release")
    await workspace.prepare_spare(repo, spares, "release")
    inode = index_of(spares)
    git(repo, "commit", "-q", "--allow-empty", "-m", "on")  # HEAD moves on; release does not
    if packed:
        git(repo, "pack-refs", "--all")
    tree = await workspace.create(repo, trees, "fix", 9, "release", spares)
    release = git(repo, "rev-parse", "release").strip()
    assert tree.base == release != git(repo, "rev-parse", "HEAD").strip()
    # No git process put it there (git's checkout would have written a new index), and the
    # branch's reflog says what git's would …
    assert same_index(tree.path, inode)
    assert git(repo, "reflog", "show", "nightshift/fix/9").splitlines() == [
        f"{release[:7]} nightshift/fix/9@{{0}}: branch: Created from release^{{commit}}"
    ]
    # … and git sees exactly what `git checkout -B` would have left.
    assert git(tree.path, "symbolic-ref", "HEAD").strip() == "refs/heads/nightshift/fix/9"
    assert git(repo, "rev-parse", "nightshift/fix/9").strip() == release
    assert git(tree.path, "status", "--porcelain").strip() == ""
    (tree.path / "notes.txt").write_text("new\n")
    outcome = await workspace.finish(tree, 9)
    assert "notes.txt" in outcome.stat
    assert git(repo, "rev-parse", "nightshift/fix/9").strip() == outcome.commit
    assert git(repo, "rev-parse", "nightshift/fix/9~1").strip() == release
    assert git(repo, "fsck", "--no-progress").strip() == ""


async def test_a_spare_takes_the_base_in_gits_own_order_of_names(tmp_path: Path) -> None:
    # A tag and a branch both named `release`: git takes the tag (refs/tags/ before
    # refs/heads/); so must a spare put on its branch without git.
    repo, spares, trees = make_repo(tmp_path / "repo"), tmp_path / "spares", tmp_path / "trees"
    git(repo, "tag", "release")
    tagged = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "commit", "-q", "--allow-empty", "-m", "on")
    git(repo, "branch", "release")
    await workspace.prepare_spare(repo, spares, "release")
    inode = index_of(spares)
    tree = await workspace.create(repo, trees, "fix", 10, "release", spares)
    assert tree.base == tagged
    assert git(repo, "rev-parse", "nightshift/fix/10").strip() == tagged
    assert same_index(tree.path, inode)  # put there without git
    # A spare made while the name meant the tag, taken once it means the branch: git's
    # checkout, at the branch.
    await workspace.prepare_spare(repo, spares, "release")
    git(repo, "tag", "-d", "release")
    again = await workspace.create(repo, trees, "fix", 11, "release", spares)
    assert again.base == git(repo, "rev-parse", "release").strip() != tagged
    assert git(repo, "rev-parse", "nightshift/fix/11").strip() == again.base


async def test_spares_are_discarded_on_start_and_runs_leave_one_for_the_next(
    project: Project, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    project.skill("check", "print('ok')")
    project.automation("check", skill="check", workspace={"repository": str(repo), "isolate": True})
    spares = project.root / ".nightshift" / "spares"
    for _ in range(2):  # the second daemon discards the first one's spare on start
        async with running_daemon(project.config()) as d:
            assert d.config.state_dir / "spares" == spares
            assert not spares.exists() or not list(spares.iterdir())
            for _ in range(2):
                run = await d.dispatcher.manual("check", {}, "test")
                assert run.id is not None
                await wait_status(d, run.id, RunStatus.SUCCEEDED)
                await d.executor.settle()
                assert len(list(spares.iterdir())) == 1
                assert len(worktrees(repo)) == 2  # the checkout and the spare
    assert "nightshift/check" not in git(repo, "branch", "--list")


async def test_leftovers_of_a_crash_are_committed_and_forgotten_by_git_bare_mirror_too(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    bare = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    trees, spares = tmp_path / "trees", tmp_path / "spares"
    for number, source in enumerate((repo, bare), start=1):
        tree = await workspace.create(source, trees, "fix", number, None)
        (tree.path / "half.txt").write_text("work in progress\n")
        await workspace.prepare_spare(source, spares, None)
    # Runs that changed nothing before the crash: their branches hold nothing to review.
    for number, source in enumerate((repo, bare), start=3):
        await workspace.create(source, trees, "idle", number, None)
    assert len(await workspace.salvage_all(trees)) == 4
    assert await workspace.discard_spares(spares) == 2
    for number, source in enumerate((repo, bare), start=1):
        assert worktrees(source) == [str(source)]  # no prunable leftovers
        log = git(source, "log", "--format=%s", f"nightshift/fix/{number}", "-1")
        assert log.strip() == f"nightshift: run {number} (interrupted)"
        assert "nightshift/idle" not in git(source, "branch", "--list")
        assert git(source, "branch", "--list", "nightshift/fix/*").strip()


def test_a_repository_and_its_git_directory_share_one_lock(tmp_path: Path) -> None:
    from daemon.workspace.worktree import repository_lock

    repo = make_repo(tmp_path / "repo")
    assert repository_lock(repo) is repository_lock(repo / ".git")  # how salvage finds it
    assert repository_lock(repo) is not repository_lock(make_repo(tmp_path / "other"))
