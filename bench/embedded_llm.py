"""Throughput of the embedded models on this CPU: prompt processing and decoding, in tokens/s.

    python bench/embedded_llm.py [--models qwen2.5-coder-0.5b qwen2.5-coder-1.5b] [--threads N]

Each model: load time, then prefill of a ~900-token prompt, then 128 decoded tokens
(temperature 0, no grammar), best of --repeats runs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

from lbi.agent.local import EMBEDDED, is_verified

PROMPT = ("SELECT name, count(*) FROM tracks GROUP BY genre ORDER BY 2 DESC; " * 60).strip()


def measure(name: str, repeats: int) -> dict[str, float]:
    from llama_cpp import Llama

    model = EMBEDDED[name]
    if not is_verified(model):
        raise SystemExit(f"{name} is not pulled: lbi models pull {name}")
    threads = int(os.environ.get("LBI_LLAMA_THREADS", "0")) or os.cpu_count() or 1
    t0 = time.perf_counter()
    llm = Llama(model_path=str(model.path), n_ctx=4096, n_threads=threads,
                n_threads_batch=threads, verbose=False, seed=0)
    load_s = time.perf_counter() - t0
    tokens = llm.tokenize(PROMPT.encode())
    best_prefill = best_decode = 0.0
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        best_prefill = max(best_prefill, len(tokens) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        out = llm.create_completion("Write a SQL query that lists every table:", max_tokens=128,
                                    temperature=0.0)
        n = out["usage"]["completion_tokens"]
        best_decode = max(best_decode, n / (time.perf_counter() - t0))
    llm.close()
    return {"load_s": load_s, "prompt_tokens": len(tokens), "prefill_tok_s": best_prefill,
            "decode_tok_s": best_decode, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b",
                                                         "qwen2.5-coder-1.5b"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("| model | threads | load s | prefill tok/s | decode tok/s |")
    print("|---|---|---|---|---|")
    for name in args.models:
        r = measure(name, args.repeats)
        print(f"| {name} | {r['threads']} | {r['load_s']:.1f} | {r['prefill_tok_s']:.0f} "
              f"(~{r['prompt_tokens']} tokens) | {r['decode_tok_s']:.1f} |")


if __name__ == "__main__":
    main()
