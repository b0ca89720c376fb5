"""A tiny environment for learn-by-interact: arithmetic over a shop's price list.

The agent sees the prices, evaluates arithmetic expressions over them and answers with
``answer <number>``. It is the complete example of docs/environments.md ("Add an
environment"): every protocol member, an entry point, and a ``lbi envs check`` that passes.
"""

from __future__ import annotations

import ast
import operator

from lbi.envs import EnvInfo
from lbi.envs.base import TaskContext
from lbi.types import Document, Step, Task

SHOPS = {
    "groceries": {"apple": 0.5, "bread": 2.25, "milk": 1.2, "cheese": 4.0},
    "hardware": {"nail": 0.05, "hammer": 12.0, "saw": 18.5, "glue": 3.75},
}
ACTION_SPACE = (
    "Each ACTION is either one arithmetic expression over the item names (+ - * / and "
    "parentheses, e.g. `apple * 3 + milk`), which is evaluated and shown, or `answer <number>`, "
    "which gives the final answer and ends the episode."
)
GUIDE = (
    "Shop calculator guide. Prices are per item. To find what a basket costs, multiply each "
    "item's price by its quantity and add them up. To compare two items, subtract their prices. "
    "To split a bill between people, divide the total by their number. Give the final amount "
    "with `answer`."
)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.USub: operator.neg}


def evaluate_expression(text: str, prices: dict[str, float]) -> float:
    """The value of an arithmetic expression over item names (ValueError if it is not one)."""
    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in prices:
            return prices[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        raise ValueError(f"not allowed: {ast.dump(node)[:60]}")
    try:
        return walk(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ZeroDivisionError) as exc:
        raise ValueError(str(exc)) from None


class CalcEnv:
    """The environment protocol (lbi.envs.base.Environment) over one shop."""

    name = "calc"
    action_space = ACTION_SPACE

    def __init__(self, shop: str = "groceries") -> None:
        self.shop = shop
        self.task: Task | None = None
        self.prices: dict[str, float] = {}
        self.answer: float | None = None

    def reset(self, task: Task) -> str:
        self.task, self.answer = task, None
        self.prices = SHOPS[task.env_args.get("shop", self.shop)]
        return "Prices: " + ", ".join(f"{k}={v:g}" for k, v in self.prices.items())

    def step(self, action: str) -> tuple[str, bool]:
        action = action.strip()
        try:
            if action.lower().startswith("answer"):
                self.answer = evaluate_expression(action[6:], self.prices)
                return f"Answered {self.answer:g}.", True
            return f"{evaluate_expression(action, self.prices):g}", False
        except ValueError as exc:
            return f"Error: {exc}", False

    def evaluate(self) -> float | None:
        if self.task is None or not self.task.gold:
            return None
        gold = evaluate_expression(self.task.gold[6:], self.prices)
        return float(self.answer is not None and abs(self.answer - gold) < 1e-6)

    def docs(self) -> list[Document]:
        return [Document(id="calc-guide", source="calc:guide", title="Shop calculator guide",
                         text=GUIDE)]

    def benchmark_tasks(self) -> list[Task]:
        questions = [
            ("groceries", "What do three apples and a bread cost?", "answer apple * 3 + bread"),
            ("groceries", "How much more is cheese than milk?", "answer cheese - milk"),
            ("hardware", "What do a hammer and 100 nails cost?", "answer hammer + nail * 100"),
            ("hardware", "Two friends split a saw. What does each pay?", "answer saw / 2"),
        ]
        return [Task(id=f"calc-{k}", env="calc", instruction=q, origin="benchmark",
                     env_args={"shop": shop}, gold=gold)
                for k, (shop, q, gold) in enumerate(questions)]

    def task_contexts(self) -> list[TaskContext]:
        return [TaskContext({"shop": shop}, f"Shop {shop}: " + ", ".join(prices))
                for shop, prices in SHOPS.items()]

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """A span is good when it ends on a computed value or an answer, not an error."""
        return not final_observation.startswith("Error")

    def close(self) -> None:
        self.task = None


def make_env(shop: str = "groceries") -> CalcEnv:
    return CalcEnv(shop)


ENV = EnvInfo("calc", "arithmetic over a shop's price list (the walkthrough example)",
              "lbi_calc:make_env", licence="Written for this example (CC0).")
