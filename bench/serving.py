"""Embedded-model serving: today's in-process llama.cpp path against the managed llama-server.

    python bench/serving.py record                      # once: real SQL agent prompts → JSON
    python bench/serving.py [--model qwen2.5-coder-0.5b] [--slots 1 2 4 8] [--episodes 16]

``record`` runs the embedded agent on Spider gold tasks in the SQL environment (5 steps each,
through the managed server) and keeps every request of every episode — the system prompt, the
objective and the growing history — in ``bench/data/serving_workload.json``. The benchmark then
replays that fixed workload, each episode's requests in order and ``N`` episodes at once,
through (a) llama.cpp in this process (one lock: one request at a time, as before the server)
and (b) the managed llama-server with ``--parallel N`` for each N, in one run. It prints
episodes/hour, prefill and decode tokens/s (from the server's own timings), per-request
latency p50/p95, and the ratio (b)/(a). Run it on a quiet machine: the figures are ratios of
configurations measured back to back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from lbi.agent import local, server
from lbi.agent.prompts import STOP_SEQUENCES

WORKLOAD = Path(__file__).parent / "data" / "serving_workload.json"
MAX_TOKENS = 256


def record(model: str, episodes: int, steps: int) -> None:
    """Run the agent on ``episodes`` SQL gold tasks (4 at a time, through the managed server)
    and save every request it made."""
    from lbi.agent.llm import LLM, LLMConfig
    from lbi.agent.loop import Agent, AgentConfig
    from lbi.envs import make_env
    from lbi.types import Task

    requests: dict[str, list] = {}

    class Recorder(LLM):
        def complete(self, messages, **overrides):  # type: ignore[override]
            requests.setdefault(task_of[threading.get_ident()], []).append(messages)
            return super().complete(messages, **overrides)

    llm = Recorder(LLMConfig(model=f"local/{model}", max_tokens=MAX_TOKENS, cache=False))
    task_of: dict[int, str] = {}

    def run(task: Task) -> None:
        task_of[threading.get_ident()] = task.id
        env = make_env("sql")
        try:
            Agent(llm, env, AgentConfig(step_limit=steps)).run(task)
        finally:
            env.close()
        print(f"{task.id}: {len(requests[task.id])} requests", file=sys.stderr)

    probe = make_env("sql")
    tasks = probe.benchmark_tasks()[:episodes]
    probe.close()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, tasks))
    WORKLOAD.parent.mkdir(parents=True, exist_ok=True)
    WORKLOAD.write_text(json.dumps({"model": model, "steps": steps, "episodes": [
        {"task": t.id, "requests": requests[t.id]} for t in tasks]}, indent=1))
    print(f"wrote {WORKLOAD}")


class InProcess:
    """The path before the server: llama-cpp-python's bindings in this process, one request at
    a time behind a lock (as ``agent/local.py`` did). Needs ``pip install
    llama-cpp-python==0.3.36`` (no longer a dependency of the toolkit)."""

    def __init__(self, model: str, threads: int) -> None:
        from llama_cpp import Llama

        self.lock = threading.Lock()
        self.llama = Llama(model_path=str(local.resolve_gguf(f"local/{model}")), n_ctx=8192,
                           n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)

    def send(self, _slot: int, messages: list) -> dict:
        started = time.perf_counter()
        with self.lock:
            out = self.llama.create_chat_completion(messages=messages, temperature=0.0,
                                                    max_tokens=MAX_TOKENS, stop=STOP_SEQUENCES,
                                                    seed=0)
        usage = out["usage"]
        return {"latency": time.perf_counter() - started, "prompt": usage["prompt_tokens"],
                "output": usage["completion_tokens"], "timings": None}

    def close(self) -> None:
        self.llama.close()


def _server(client: httpx.Client, url: str, messages: list) -> dict:
    started = time.perf_counter()
    # No id_slot: the server picks the slot, as for lbi's own requests (agent/providers.py).
    response = client.post(f"{url}/v1/chat/completions", json={
        "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0.0, "seed": 0,
        "stop": STOP_SEQUENCES, "cache_prompt": True}, timeout=3600)
    response.raise_for_status()
    body = response.json()
    return {"latency": time.perf_counter() - started,
            "prompt": body["usage"]["prompt_tokens"],
            "output": body["usage"]["completion_tokens"], "timings": body.get("timings")}


def replay(episodes: list[dict], concurrency: int, send) -> dict:
    """Every episode's requests in order, ``concurrency`` episodes at once."""
    def run(index: int) -> list[dict]:
        return [send(index % concurrency, m) for m in episodes[index]["requests"]]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for rs in pool.map(run, range(len(episodes))) for r in rs]
    wall = time.perf_counter() - started
    latencies = sorted(r["latency"] for r in results)
    timed = [r["timings"] for r in results if r["timings"]]
    row = {"episodes_per_hour": len(episodes) * 3600 / wall, "wall_s": wall,
           "p50_s": statistics.median(latencies),
           "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
           "prompt_tokens": sum(r["prompt"] for r in results),
           "output_tokens": sum(r["output"] for r in results)}
    if timed:  # tokens actually computed (a prompt-cache hit skips the cached prefix)
        row["prefilled_tokens"] = sum(t["prompt_n"] for t in timed)
        row["prefill_tok_s"] = row["prefilled_tokens"] / (sum(t["prompt_ms"] for t in timed)
                                                          / 1000)
        row["decode_tok_s"] = sum(t["predicted_n"] for t in timed) / (
            sum(t["predicted_ms"] for t in timed) / 1000)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "record"])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--in-process-concurrency", type=int, default=4)
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    if args.command == "record":
        record(args.model, args.episodes, args.steps)
        return
    workload = json.loads(WORKLOAD.read_text())
    episodes = workload["episodes"][: args.episodes]
    n_requests = sum(len(e["requests"]) for e in episodes)
    threads = server.default_threads()
    print(f"{len(episodes)} episodes, {n_requests} requests, model {args.model}, "
          f"{threads} llama.cpp threads")
    rows: dict[str, dict] = {}
    if not args.skip_in_process:
        engine = InProcess(args.model, threads)  # load time is not part of the workload
        rows["(a) in-process"] = replay(episodes, args.in_process_concurrency, engine.send)
        engine.close()
    path = str(local.resolve_gguf(f"local/{args.model}"))
    for slots in args.slots:
        spec = server.ServerSpec(model=path, slots=slots, ctx_per_slot=8192, threads=threads)
        url = server.ensure_server(spec)
        with httpx.Client() as client:
            rows[f"(b) server, {slots} slots"] = replay(
                episodes, slots, lambda _slot, m, c=client, u=url: _server(c, u, m))
        server.stop_server(spec)
    base = rows.get("(a) in-process", {}).get("episodes_per_hour")
    print("| configuration | episodes/h | ratio to (a) | wall s | p50 s | p95 s | prefilled "
          "tokens | prefill tok/s | decode tok/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = f"{r['episodes_per_hour'] / base:.2f}×" if base else "—"
        print(f"| {name} | {r['episodes_per_hour']:.1f} | {ratio} | {r['wall_s']:.0f} | "
              f"{r['p50_s']:.1f} | {r['p95_s']:.1f} | {r.get('prefilled_tokens', '—')} | "
              f"{r.get('prefill_tok_s', 0):.0f} | {r.get('decode_tok_s', 0):.1f} |")


if __name__ == "__main__":
    main()
