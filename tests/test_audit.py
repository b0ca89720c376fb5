"""The audit of a synthesis run: sample, replay in the real environment, committee vs reader."""

from __future__ import annotations

import yaml

from lbi.agent.loop import Agent
from lbi.agent.scripted import ScriptedLLM
from lbi.envs import make_env
from lbi.synth import audit
from lbi.synth.filter import Judgement
from lbi.synth.store import JsonlStore
from lbi.types import Example, Task, Trajectory, Vote


def test_audit_replays_samples_and_measures_the_committee_against_the_labels(tmp_path):
    env = make_env("sql")
    task = Task(id="t", env="sql", instruction="How many singers are there?", origin="doc",
                env_args={"db": "concert_singer"})
    agent = ScriptedLLM(["REASON: look\nACTION: SELECT count(*) FROM singer",
                         "REASON: names\nACTION: SELECT name FROM singer ORDER BY name",
                         "REASON: done\nACTION: stop"])
    good = Agent(agent, env).run(task)
    # The same episode with a doctored observation: the replay must notice.
    doctored = good.model_copy(update={"id": "doctored", "final_observation": "name\nNobody"})
    trajectories = JsonlStore(tmp_path / "trajectories.jsonl", Trajectory)
    examples = JsonlStore(tmp_path / "examples.jsonl", Example)
    judgements = JsonlStore(tmp_path / "judgements.jsonl", Judgement)
    for k, (traj, accepted) in enumerate([(good, True), (doctored, True), (good, False)]):
        trajectories.append(traj)
        steps, final = traj.span(0, 3)
        example = Example(id=f"e{k}", instruction=f"instruction {k}", kind="abstraction",
                          env="sql", trajectory_id=traj.id, span=(0, 3), steps=steps,
                          final_observation=final, env_args=task.env_args)
        examples.append(example)
        judgements.append(Judgement(id=example.id, accepted=accepted,
                                    rejected_by=None if accepted else "committee",
                                    votes=[Vote(model="judge", accept=accepted, reason="r")]))

    items = audit.sample(tmp_path, accepted=5, rejected=5)
    assert sorted(e.id for e, _ in items) == ["e0", "e1", "e2"]
    folder = audit.write_sheet(tmp_path, env, items)
    env.close()
    sheet = (folder / "sheet.md").read_text()
    assert "instruction 1" in sheet and "SELECT count(*) FROM singer" in sheet
    labels = yaml.safe_load((folder / "labels.yaml").read_text())
    assert set(labels) == {"e0", "e1", "e2"}
    labels["e0"]["verdict"], labels["e1"]["verdict"], labels["e2"]["verdict"] = "yes", "no", "yes"
    (folder / "labels.yaml").write_text(yaml.safe_dump(labels))

    result = audit.report(tmp_path, items)
    assert result["accepted"]["verdicts"] == {"yes": 1, "partly": 0, "no": 1}
    assert result["accepted"]["share_matching"] == 0.5
    assert result["accepted"]["replay_reproduced"] == 1  # the doctored one is caught
    assert result["rejected"]["share_matching"] == 1.0
    again = make_env("sql")  # a second sheet keeps the reader's verdicts
    audit.write_sheet(tmp_path, again, items)
    again.close()
    assert yaml.safe_load((folder / "labels.yaml").read_text())["e1"]["verdict"] == "no"
