"""Build the labelled probe that bench/retrieval.py scores embedders on (recall@k).

    python bench/make_retrieval_probe.py [--run results/synth/sql] [--n 150]
        [--model local/qwen2.5-coder-1.5b] [--out bench/data/retrieval_probe_sql.jsonl]

For up to --n synthesized instructions of a synthesis run (examples.jsonl, accepted or not), the
teacher writes a paraphrase: a query that means the same as the instruction in other words. A
good embedder finds the instruction from its paraphrase among every instruction of the run plus
every task the generator proposed (the distractors, also written to the file). The file records
the model and the prompt; rerunning reads the LLM cache.
"""

from __future__ import annotations

import argparse
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lbi.agent.llm import LLM, Budget, LLMConfig
from lbi.synth.store import JsonlStore
from lbi.synth.taskgen import TaskGenRecord
from lbi.types import Example

PROMPT = ("Rewrite the following request in different words, as another person would ask for "
          "the same thing. Keep its meaning: do not add or drop any detail. Answer with the "
          "rewritten request only.\n\nRequest: {instruction}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("results/synth/sql"))
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--out", type=Path, default=Path("bench/data/retrieval_probe_sql.jsonl"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    instructions = sorted({e.instruction for e in JsonlStore(args.run / "examples.jsonl",
                                                             Example)})
    proposed = sorted({t for r in JsonlStore(args.run / "taskgen.jsonl", TaskGenRecord)
                       for t in r.tasks} - set(instructions))
    chosen = random.Random(args.seed).sample(instructions, min(args.n, len(instructions)))
    llm = LLM(LLMConfig(model=args.model, temperature=0.0, max_tokens=80), Budget())

    def paraphrase(instruction: str) -> str:
        text = llm.complete([{"role": "user",
                              "content": PROMPT.format(instruction=instruction)}]).text
        return text.strip().strip('"').splitlines()[0].strip()

    with ThreadPoolExecutor(2) as pool:
        paraphrases = list(pool.map(paraphrase, chosen))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        out.write(json.dumps({"model": args.model, "prompt": PROMPT, "run": str(args.run),
                              "keys": instructions, "distractors": proposed}) + "\n")
        for instruction, query in zip(chosen, paraphrases, strict=True):
            if query and query.lower() != instruction.lower():
                out.write(json.dumps({"instruction": instruction, "paraphrase": query}) + "\n")
    print(f"{args.out}: {len(chosen)} paraphrases, {len(instructions)} keys, "
          f"{len(proposed)} distractors")


if __name__ == "__main__":
    main()
