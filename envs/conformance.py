"""``lbi envs check NAME``: does an environment keep the protocol's promises?

What a plugin author runs before synthesizing in a new environment. Each check says what it
found; a failed one says what to fix. The checks build the environment once and use nothing
but the protocol (``envs/base.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lbi.envs import get_env_info
from lbi.protocols import Environment
from lbi.types import Step, Task

PROTOCOL = ("name", "action_space", "reset", "step", "evaluate", "docs", "benchmark_tasks",
            "task_contexts", "check_span", "close")
NONSENSE_ACTION = "definitely-not-a-valid-action ((("
"""An action no environment should run without an error."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_environment(name: str, env_args: dict | None = None, max_tasks: int | None = None,
                      progress: Callable[[str], None] = lambda _: None) -> list[Check]:
    """Every check on environment ``name``; ``max_tasks`` caps the benchmark golds replayed."""
    env = get_env_info(name).create(**(env_args or {}))
    checks: list[Check] = []
    try:
        for check in _checks(env, max_tasks, progress):
            checks.append(check)
    except Exception as exc:  # a check that crashed the environment fails, with the reason
        checks.append(Check(f"after '{checks[-1].name if checks else 'start'}'", False,
                            f"the environment raised {type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        env.close()
    return checks


def _checks(env: Environment, max_tasks: int | None,
            progress: Callable[[str], None]) -> Iterator[Check]:
    absent = [m for m in PROTOCOL if not hasattr(env, m)]
    yield Check("protocol members", not absent,
                f"missing: {', '.join(absent)}" if absent else "all present")
    if absent:
        return
    docs = list(env.docs())
    yield Check("docs", bool(docs) and all(d.text.strip() for d in docs),
                f"{len(docs)} documents" if docs else "no documents: task generation needs them")
    contexts = env.task_contexts()
    broken = []
    for context in contexts:
        try:
            env.reset(Task(id="check", env=env.name, instruction="check", origin="user",
                           env_args=context.env_args))
        except Exception as exc:
            broken.append(f"{context.env_args}: {type(exc).__name__}: {exc}")
    yield Check("task contexts reset", not broken,
                f"{len(contexts)} contexts" if not broken else "; ".join(broken[:3]))
    tasks = env.benchmark_tasks()
    first = tasks[0] if tasks else Task(id="check", env=env.name, instruction="check",
                                        origin="user",
                                        env_args=contexts[0].env_args if contexts else {})
    again = [env.reset(first), env.reset(first)]
    yield Check("reset is deterministic", again[0] == again[1],
                "the same first observation twice" if again[0] == again[1] else
                "two resets of one task gave different observations")
    observation = env.reset(first)
    after, _ = env.step(NONSENSE_ACTION)
    verdict = env.check_span([Step(observation=observation, action=NONSENSE_ACTION)], after)
    yield Check("check_span rejects a failing span", verdict is not True,
                f"check_span said {verdict} for {NONSENSE_ACTION!r} → {after[:120]!r}")
    yield from _golds(env, tasks[:max_tasks] if max_tasks else tasks, progress)


def _golds(env: Environment, tasks: list[Task],
           progress: Callable[[str], None]) -> Iterator[Check]:
    with_gold = [t for t in tasks if t.gold]
    if not with_gold:
        yield Check("benchmark golds", True,
                    f"{len(tasks)} benchmark tasks, none with a gold to replay (not checked)")
        return
    failed: list[str] = []
    wrong_scored: list[str] = []
    for k, task in enumerate(with_gold, 1):
        progress(f"gold {k}/{len(with_gold)}: {task.id}")
        for action, wanted, misses in ((task.gold, {1.0}, failed),
                                       (NONSENSE_ACTION, {0.0, None}, wrong_scored)):
            try:
                env.reset(task)
                env.step(action)
                if env.evaluate() not in wanted:
                    misses.append(task.id)
            except Exception as exc:  # the environment broke: that is the finding
                misses.append(f"{task.id} ({type(exc).__name__}: {str(exc)[:80]})")
    yield Check("every gold scores 1", not failed,
                f"{len(with_gold) - len(failed)}/{len(with_gold)}"
                + (f"; failing: {', '.join(failed[:10])}" if failed else ""))
    yield Check("a wrong answer scores 0", not wrong_scored,
                f"{len(with_gold) - len(wrong_scored)}/{len(with_gold)}"
                + (f"; scored above 0: {', '.join(wrong_scored[:10])}" if wrong_scored else ""))
