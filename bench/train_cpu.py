"""LoRA training throughput of the embedded student on this CPU, in tokens/s.

    python bench/train_cpu.py [--model local/qwen2.5-coder-0.5b] [--tokens 550] [--repeats 3]
                              [--threads 1 2]

Loads the model as train/sft.py does (GGUF → transformers), puts LoRA r=16 on every linear
layer, and times one forward + backward over a sequence of --tokens tokens (the length of a
step row of the SQL dataset) in fp32 and under bf16 autocast, with one thread (what
`accelerate launch` leaves a CPU run with) and with every core. Best of --repeats after a
warm-up. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from peft import LoraConfig, get_peft_model

from lbi.train.models import load_model


def step_seconds(model: torch.nn.Module, ids: torch.Tensor, bf16: bool, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, labels=ids).loss
        loss.backward()
        best = min(best, time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--tokens", type=int, default=550)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*",
                        help="thread counts to time (default: 1 and every core)")
    args = parser.parse_args()

    model = get_peft_model(load_model(args.model, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.train()
    ids = torch.randint(0, 10_000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    cores = len(os.sched_getaffinity(0))
    print(f"{args.model}, LoRA r=16 all-linear, {args.tokens} tokens per forward+backward\n")
    print("| threads | precision | s / step | tokens/s |\n|---|---|---|---|")
    for threads in args.threads or sorted({1, cores}):
        torch.set_num_threads(threads)
        for bf16 in (False, True):
            seconds = step_seconds(model, ids, bf16, args.repeats)
            print(f"| {threads} | {'bf16 autocast' if bf16 else 'fp32'} | {seconds:.2f} | "
                  f"{args.tokens / seconds:.1f} |")


if __name__ == "__main__":
    main()
