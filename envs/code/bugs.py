"""SWE-smith-style bug-fix tasks: inject a small bug into a function of a real package, keep it
when the package's own tests catch it, and describe the failure like an issue report.

A mutation is one of: a flipped comparison (``<`` → ``>=`` …), a swapped ``and``/``or``, ``+`` ↔
``-``, or an integer constant moved by one. Each edit is made on the source text (the rest of
the file is untouched) and checked: the edited file must parse to exactly the mutated syntax
tree. A candidate becomes a task when the test suite then fails on between 1 and
``MAX_FAILING`` tests (more means the package no longer imports or everything breaks: not a
realistic bug).

The tasks are built once, deterministically, and shipped in ``bug_tasks.json``; rebuild with
``python -m lbi.envs.code.bugs`` (about 20 test-suite runs per package).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from lbi.envs.code import sources
from lbi.envs.code.edits import format_edit
from lbi.envs.code.runner import TestRun, run_tests
from lbi.envs.sandbox import SandboxLimits

BUG_TASKS_FILE = Path(__file__).with_name("bug_tasks.json")
MAX_FAILING = 15
BUILD_LIMITS = SandboxLimits(command_timeout_s=45, max_output_chars=200_000)
"""A mutation that makes the suite hang is rejected after this long."""

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
         ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_SYMBOL = {ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.Eq: "==",
           ast.NotEq: "!=", ast.Add: "+", ast.Sub: "-", ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class BugTask:
    id: str
    package: str
    file: str
    function: str
    mutation: str
    line: int
    """The edited line (1-based): the checkout is the pristine package with this line changed."""
    original_line: str
    buggy_line: str
    fix: str
    """An ``edit`` action that undoes the bug (the reference solution)."""
    failing_tests: list[str]
    issue: str

    def buggy_source(self, pristine: str) -> str:
        """The buggy file, made from the pristine one."""
        lines = pristine.splitlines(keepends=True)
        if lines[self.line - 1].rstrip("\n") != self.original_line:
            raise ValueError(f"{self.file}:{self.line} is not the line {self.id} was built on")
        lines[self.line - 1] = self.buggy_line + "\n"
        return "".join(lines)


@dataclass(frozen=True)
class Mutation:
    function: str
    description: str
    source: str


def mutation_sites(tree: ast.Module) -> list[tuple[int, str]]:
    """(index of the node in ``ast.walk`` order, function name) of every mutable site."""
    nodes = list(ast.walk(tree))
    position = {id(n): k for k, n in enumerate(nodes)}
    sites = []
    for func in nodes:
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if _mutable(node):
                sites.append((position[id(node)], func.name))
    return sites


def _mutable(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        return len(node.ops) == 1 and type(node.ops[0]) in _FLIP
    if isinstance(node, ast.BoolOp):
        return len(node.values) == 2
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Add | ast.Sub)
    return isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 2


def mutate(source: str, index: int, function: str) -> Mutation | None:
    """The mutation of the node at ``index`` (``ast.walk`` order) as an edit of one line of
    ``source``, or None when it cannot be made that way."""
    tree = ast.parse(source)
    node = list(ast.walk(tree))[index]
    if node.lineno != node.end_lineno:
        return None
    span = _operator_span(node)
    old, new = _apply(node)  # mutates ``tree`` in place
    k = node.lineno - 1
    lines = source.splitlines(keepends=True)
    line = lines[k]
    segment = line[span[0]:span[1]]
    pattern = rf"(?<![\w=<>!]){re.escape(old)}(?![\w=<>])"
    if len(re.findall(pattern, segment)) != 1:
        return None
    lines[k] = line[:span[0]] + re.sub(pattern, new, segment) + line[span[1]:]
    edited = "".join(lines)
    if ast.dump(ast.parse(edited)) != ast.dump(tree):
        return None
    return Mutation(function, f"`{old}` → `{new}` in {function}()", edited)


def _operator_span(node: ast.AST) -> tuple[int, int]:
    """Columns where the operator of ``node`` is written (between its operands)."""
    if isinstance(node, ast.Compare):
        return node.left.end_col_offset, node.comparators[0].col_offset
    if isinstance(node, ast.BinOp):
        return node.left.end_col_offset, node.right.col_offset
    if isinstance(node, ast.BoolOp):
        return node.values[0].end_col_offset, node.values[1].col_offset
    return node.col_offset, node.end_col_offset


def _apply(node: ast.AST) -> tuple[str, str]:
    """Mutate ``node`` in place; returns (old text, new text)."""
    if isinstance(node, ast.Compare):
        old = type(node.ops[0])
        node.ops[0] = _FLIP[old]()
        return _SYMBOL[old], _SYMBOL[_FLIP[old]]
    if isinstance(node, ast.BoolOp | ast.BinOp):
        swap = {ast.And: ast.Or, ast.Or: ast.And, ast.Add: ast.Sub, ast.Sub: ast.Add}
        old = type(node.op)
        node.op = swap[old]()
        return _SYMBOL[old], _SYMBOL[swap[old]]
    old_value = node.value
    node.value = old_value + 1
    return str(old_value), str(old_value + 1)


def issue_text(package: sources.SourcePackage, run: TestRun) -> str:
    """An issue report written from the failing tests, without naming the change."""
    failing = run.failing_tests
    shown = "\n".join(f"- `{t}`" for t in failing[:5])
    more = f"\n- … and {len(failing) - 5} more" if len(failing) > 5 else ""
    errors = "\n".join(run.error_lines[:8]) or "(see the test output)"
    return (f"Tests of {package.name} {package.version} fail after a recent change.\n\n"
            f"Failing tests:\n{shown}{more}\n\nFirst error:\n```\n{errors}\n```\n\n"
            f"Find the bug in the {package.import_name} source (not in the tests) and fix it, so "
            f"that the whole suite passes again (`{package.test_command}`).")


def build_tasks(per_package: int, seed: int = 0) -> list[BugTask]:
    """Up to ``per_package`` bug tasks per source package, in a deterministic order."""
    tasks: list[BugTask] = []
    for package in sources.PACKAGES.values():
        root = sources.checkout(package)
        baseline = run_tests(package)
        if not baseline.passed:
            raise RuntimeError(f"the pristine {package.name} suite fails: "
                               f"{baseline.failing_tests}; deselect those tests first")
        texts = {module: (root / module).read_text() for module in package.modules}
        candidates = [(module, index, function) for module, text in texts.items()
                      for index, function in mutation_sites(ast.parse(text))]
        random.Random(seed).shuffle(candidates)
        found: list[BugTask] = []
        used_functions: set[str] = set()
        for module, index, function in candidates:
            if len(found) >= per_package:
                break
            if function in used_functions:
                continue
            mutation = mutate(texts[module], index, function)
            if mutation is None:
                continue
            run = run_tests(package, {module: mutation.source}, limits=BUILD_LIMITS)
            print(f"{package.name} {mutation.description}: {len(run.failing_tests)} failing",
                  flush=True)
            if not 1 <= len(run.failing_tests) <= MAX_FAILING or run.timed_out:
                continue
            used_functions.add(mutation.function)
            line, original, buggy = _changed_line(texts[module], mutation.source)
            found.append(BugTask(
                id=f"{package.name}-{mutation.function.strip('_').replace('_', '-')}",
                package=package.name, file=module, function=mutation.function,
                mutation=mutation.description, line=line, original_line=original,
                buggy_line=buggy, fix=format_edit(module, *_fix_blocks(texts[module],
                                                                        mutation.source)),
                failing_tests=run.failing_tests, issue=issue_text(package, run)))
        tasks += found
    return tasks


def _changed_line(original: str, buggy: str) -> tuple[int, str, str]:
    """(1-based line number, original line, buggy line) of a one-line mutation."""
    pairs = zip(original.splitlines(), buggy.splitlines(), strict=True)
    k, (old, new) = next((k, p) for k, p in enumerate(pairs) if p[0] != p[1])
    return k + 1, old, new


def _fix_blocks(original: str, buggy: str) -> tuple[str, str]:
    """(search, replace): the smallest run of whole lines around the change that is unique in
    the buggy file."""
    old_lines, new_lines = buggy.splitlines(keepends=True), original.splitlines(keepends=True)
    k = next(i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b)
    lo, hi = k, k + 1
    while buggy.count("".join(old_lines[lo:hi])) > 1:
        lo, hi = max(0, lo - 1), min(len(old_lines), hi + 1)
    return "".join(old_lines[lo:hi]), "".join(new_lines[lo:hi])


def load_bug_tasks() -> list[BugTask]:
    return [BugTask(**d) for d in json.loads(BUG_TASKS_FILE.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-package", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BUG_TASKS_FILE)
    args = parser.parse_args()
    tasks = build_tasks(args.per_package, args.seed)
    args.out.write_text(json.dumps([asdict(t) for t in tasks], indent=1) + "\n")
    print(f"{len(tasks)} tasks → {args.out}")


if __name__ == "__main__":
    main()
