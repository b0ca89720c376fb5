"""An environment from another package: installed with its entry point, it is listed, passes
``lbi envs check``, and runs a short ``lbi synth`` and ``lbi eval`` (stand-in models) — the
walkthrough of docs/environments.md, "Add an environment", as a user would follow it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from standin import StandIn, role

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lbi-calc"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The example package installed into a throwaway folder, put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def _lbi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["lbi", *args], env=env, capture_output=True, text=True, timeout=600)


def test_an_installed_environment_is_listed_and_passes_the_conformance_check(plugin_env):
    listed = _lbi(plugin_env, "envs")
    assert listed.returncode == 0 and "calc" in listed.stdout and "sql" in listed.stdout
    check = _lbi(plugin_env, "envs", "check", "calc")
    assert check.returncode == 0, check.stdout
    assert "every gold scores 1" in check.stdout and "FAILED" not in check.stdout


def test_the_conformance_check_fails_an_environment_that_breaks_a_promise(plugin_env,
                                                                          tmp_path):
    broken = tmp_path / "broken_calc.py"  # its golds are scored by the wrong shop
    broken.write_text("import lbi_calc\n"
                      "class Broken(lbi_calc.CalcEnv):\n"
                      "    def reset(self, task):\n"
                      "        return super().reset(task.model_copy(update={'env_args': {}}))\n"
                      "def make():\n    return Broken()\n")
    env = dict(plugin_env, PYTHONPATH=f"{tmp_path}{os.pathsep}{plugin_env['PYTHONPATH']}")
    check = _lbi(env, "envs", "check", "broken_calc:make")
    assert check.returncode == 1 and "FAILED" in check.stdout


def test_synthesis_and_evaluation_run_in_an_installed_environment(plugin_env, tmp_path):
    answers = {"agent": "REASON: three apples and a bread\nACTION: answer bread + apple * 3",
               "generator": "Work out what three apples and a bread cost."}
    with StandIn(answers=answers) as server:
        synth = {"env": "calc", "output_dir": str(tmp_path / "synth"),
                 "models": {"generator": role("generator", server.url),
                            "agent": role("agent", server.url),
                            "committee": [role("judge", server.url)]},
                 "docs": {"max_docs": 1}, "taskgen": {"tasks_per_doc": 2},
                 "rollout": {"step_limit": 2}, "filter": {"choices": 0}}
        (tmp_path / "synth.yaml").write_text(yaml.safe_dump(synth))
        made = _lbi(plugin_env, "synth", "--config", str(tmp_path / "synth.yaml"))
        assert made.returncode == 0, made.stdout[-3000:]
        dataset = tmp_path / "synth" / "dataset"
        card = (dataset / "README.md").read_text()
        assert "Written for this example (CC0)." in card  # the licence the environment declares

        evaluation = {"env": "lbi_calc:make_env", "output_dir": str(tmp_path / "eval"),
                      "dataset": str(dataset), "split": "all", "step_limit": 2,
                      "model": role("agent", server.url),
                      "agents": [{"name": "zero-shot"},
                                 {"name": "LbI-ICL", "retrieval": {
                                     "corpus": "examples", "sources": ["observation"]}}]}
        (tmp_path / "eval.yaml").write_text(yaml.safe_dump(evaluation))
        ran = _lbi(plugin_env, "eval", "--config", str(tmp_path / "eval.yaml"))
    assert ran.returncode == 0, ran.stdout[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    rows = {a["name"]: a for a in results["agents"]}
    assert rows["zero-shot"]["episodes"] == rows["LbI-ICL"]["episodes"] == 4
    assert rows["zero-shot"]["solved"] == 1  # the one question three apples and a bread answers
