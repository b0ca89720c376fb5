"""The code environment: real packages (toolz, boltons, tabulate) with injected bugs and
HumanEval, in a real bubblewrap sandbox with this machine's Python and pytest."""

from __future__ import annotations

import ast
import json

import pytest

from lbi.envs import make_env
from lbi.envs.code import bugs, sources
from lbi.envs.code.edits import EditError, apply_edit, format_edit
from lbi.types import Task


@pytest.fixture(scope="module")
def env():
    environment = make_env("code", limits={"command_timeout_s": 20})
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def tasks(env):
    return {t.id: t for t in env.benchmark_tasks()}


def test_benchmark_has_bug_tasks_from_three_packages_and_humaneval(tasks):
    bug_tasks = [t for t in tasks.values() if "bug" in t.env_args]
    assert {t.id.split("-")[0] for t in bug_tasks} == {"toolz", "boltons", "tabulate"}
    assert len(bug_tasks) == 12 and len(tasks) == 12 + 164
    for task in bug_tasks:  # the issue names failing tests, never the change itself
        assert "Failing tests:" in task.instruction and "→" not in task.instruction


def test_every_bug_fix_reaches_reward_1(env, tasks):
    for task in (t for t in tasks.values() if "bug" in t.env_args):
        env.reset(task)
        assert env.step(task.gold)[0].startswith("Edited ")
        env.step("submit")
        assert env.evaluate() == 1.0, task.id


def test_unfixed_bugs_and_edited_tests_score_0(env, tasks):
    for task_id in ["toolz-get", "boltons-getitem", "tabulate-align-column"]:
        env.reset(tasks[task_id])
        assert env.evaluate() == 0.0, task_id
    # Deleting the failing test does not help: the tests are restored before scoring.
    env.reset(tasks["toolz-get"])
    env.step("rm toolz/tests/test_itertoolz.py")
    assert env.evaluate() == 0.0


def test_the_bug_is_caught_by_the_recorded_tests():
    (bug,) = [b for b in bugs.load_bug_tasks() if b.id == "toolz-get"]
    package = sources.PACKAGES["toolz"]
    from lbi.envs.code.runner import run_tests

    buggy = bug.buggy_source((sources.checkout(package) / bug.file).read_text())
    assert run_tests(package, {bug.file: buggy}).failing_tests == bug.failing_tests


def test_every_humaneval_reference_passes_and_every_stub_fails():
    from lbi.envs.code.env import HUMANEVAL_STUB
    from lbi.envs.code.runner import run_humaneval

    problems = sources.humaneval_problems()
    assert len(problems) == 164
    for task_id, problem in problems.items():
        assert run_humaneval(problem, problem["prompt"] + problem["canonical_solution"]).passed, (
            task_id)
        assert not run_humaneval(problem, problem["prompt"] + HUMANEVAL_STUB).passed, task_id


def test_humaneval_episodes_score_the_edited_solution(env, tasks):
    for task_id in ["humaneval-0", "humaneval-81", "humaneval-163"]:
        observation = env.reset(tasks[task_id])
        assert "solution.py" in observation
        assert env.evaluate() == 0.0  # the stub raises NotImplementedError
        env.step(tasks[task_id].gold)
        assert env.evaluate() == 1.0, task_id


def test_shell_and_python_work_in_the_checkout(env):
    env.reset(Task(id="u", env="code", instruction="x", origin="user",
                   env_args={"package": "toolz"}))
    out = env.step("python -c 'import toolz, sys; print(toolz.__file__)'")[0]
    assert out == "/repo/toolz/__init__.py"  # the checkout, not an installed copy
    assert "passed" in env.step("python -m pytest -q -p no:cacheprovider "
                                "toolz/tests/test_recipes.py")[0]


def test_edit_errors_are_observations(env, tmp_path):
    env.reset(Task(id="u", env="code", instruction="x", origin="user",
                   env_args={"package": "toolz"}))
    missing = env.step(format_edit("toolz/recipes.py", "no such line", "x"))[0]
    assert missing.startswith("Error: the SEARCH text was not found")
    twice = env.step(format_edit("toolz/recipes.py", "import", "x"))[0]
    assert "occurs" in twice and "times" in twice
    assert env.step("edit toolz/recipes.py\nno blocks")[0].startswith("Error: no edit block")
    headless = format_edit("toolz/recipes.py", "a", "b").split("\n", 1)[1]
    assert env.step(headless)[0].startswith("Error: an edit starts with a line `edit <path>`")
    assert "nothing was changed" in missing
    # edits can only reach the episode's files
    secret = tmp_path / "secret.py"
    secret.write_text("x = 1\n")
    for path in ["../../../../etc/passwd", str(secret), f"../{secret}"]:
        observation = env.step(format_edit(path, "x = 1", "x = 2"))[0]
        assert observation.startswith("Error"), path
    env.step(f"ln -s {secret} /repo/link.py")  # a link made inside points at a host path
    assert "outside the files you can edit" in env.step(format_edit("link.py", "x = 1",
                                                                     "x = 2"))[0]
    assert secret.read_text() == "x = 1\n"


def test_apply_edit_replaces_exactly_one_block(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "m.py").write_text("a = 1\nb = 2\n")
    assert apply_edit(format_edit("m.py", "b = 2", "b = 3"), tmp_path) == "Edited m.py (1 block " \
        "replaced)."
    assert (tmp_path / "repo" / "m.py").read_text() == "a = 1\nb = 3\n"
    with pytest.raises(EditError):
        apply_edit("edit m.py\n", tmp_path)


def test_mutations_edit_one_line_and_match_the_mutated_tree():
    source = "def f(xs, n):\n    if n < 0 and xs:\n        return xs[n + 1]\n    return 0\n"
    tree = ast.parse(source)
    seen = set()
    for index, function in bugs.mutation_sites(tree):
        mutation = bugs.mutate(source, index, function)
        if mutation is None:
            continue
        changed = [a for a, b in zip(source.splitlines(), mutation.source.splitlines(),
                                     strict=True) if a != b]
        assert len(changed) == 1
        seen.add(mutation.description)
    assert {"`<` → `>=` in f()", "`and` → `or` in f()", "`+` → `-` in f()",
            "`0` → `1` in f()"} <= seen


def test_docs_are_readmes_and_docstrings(env):
    titles = {d.title for d in env.docs()}
    assert {"toolz README", "toolz.itertoolz API", "boltons.iterutils API"} <= titles
    contexts = env.task_contexts()
    assert [c.env_args["package"] for c in contexts] == ["toolz", "boltons", "tabulate"]
    assert "toolz/itertoolz.py" in contexts[0].description


def test_bug_tasks_file_is_consistent():
    data = json.loads(bugs.BUG_TASKS_FILE.read_text())
    assert len({d["id"] for d in data}) == len(data)
    for d in data:
        assert 1 <= len(d["failing_tests"]) <= bugs.MAX_FAILING
        assert d["package"] in sources.PACKAGES


def test_generated_tasks_target_the_package_their_document_is_about(env):
    from lbi.synth.taskgen import context_for

    contexts = env.task_contexts()
    for doc in env.docs():
        package = doc.title.split(" ")[0].split(".")[0]
        assert context_for(doc, contexts).env_args == {"package": package}, doc.title
