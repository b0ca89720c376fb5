from lbi.types import Example, LLMCall, Step, Task, Trajectory, Vote, content_id


def _trajectory(n: int = 3) -> Trajectory:
    task = Task(id="t1", env="sql", instruction="count rows", origin="user", env_args={"db": "x"})
    steps = [Step(observation=f"o{k}", action=f"a{k + 1}", llm=LLMCall(model="m", input_tokens=3))
             for k in range(n)]
    return Trajectory(id="tr", task=task, steps=steps, final_observation=f"o{n}",
                      termination="stop", reward=1.0)


def test_json_round_trip_of_every_model():
    traj = _trajectory()
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj
    steps, last = traj.span(0, 2)
    example = Example(id="e", instruction="do it", kind="summary", env="sql", trajectory_id=traj.id,
                      span=(0, 2), steps=steps, final_observation=last,
                      votes=[Vote(model="m", accept=True, criteria={"aligned": True})])
    assert Example.model_validate_json(example.model_dump_json()) == example


def test_span_keeps_the_final_observation():
    traj = _trajectory(3)  # o0 a1 o1 a2 o2 a3 o3
    steps, last = traj.span(1, 3)
    assert [s.observation for s in steps] == ["o1", "o2"]
    assert [s.action for s in steps] == ["a2", "a3"]
    assert last == "o3"  # the paper's T[i:j] would lose this
    assert traj.span(0, 1) == (traj.steps[:1], "o1")


def test_span_rejects_empty_and_out_of_range():
    traj = _trajectory(2)
    for i, j in [(1, 1), (2, 1), (0, 3), (-1, 1)]:
        try:
            traj.span(i, j)
        except ValueError:
            continue
        raise AssertionError(f"span({i}, {j}) should fail")


def test_content_id_is_stable_and_order_sensitive():
    assert content_id("a", {"x": 1, "y": 2}) == content_id("a", {"y": 2, "x": 1})
    assert content_id("a", "b") != content_id("b", "a")
    assert len(content_id("a")) == 16
