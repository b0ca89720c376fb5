"""Per-step retrieval latency over a large example index, and retrieval quality, per embedder.

    python bench/retrieval.py [--examples 100000] [--queries 300] [--unique-keys 5000]
        [--embedders wordllama-l2-128 wordllama-l2-256 all-MiniLM-L6-v2]
        [--dtypes f16 f32] [--probe bench/data/retrieval_probe_sql.jsonl]

Latency: builds a RetrievalIndex of --examples synthetic SQL examples (1–4 steps each, so BM25
holds ~2.5× as many observations) and times, per query: observation retrieval (BM25, m1=5),
dense retrieval (embedding a new query + usearch HNSW, m2=5) and the combined lookup of one agent
step as AgenticRetriever runs it (observation + model-based, duplicates skipped, reference block
filled to 2,000 tokens by the entries' token counts), excluding the LLM's query-writing call,
for each usearch vector precision (--dtypes), with the share of HNSW's top 5 that exact search
agrees with. The precisions are timed query by query in turn (after 50 warm-up queries), so
each meets the same load. Every query text is new, so no embedding cache helps. Only
--unique-keys instructions are embedded (MiniLM on 100k texts would take most of an hour on 2
cores); the other entries' vectors are those plus small Gaussian noise, which keeps the
clustered structure real instructions have. Target: combined p50 ≤ 2 ms with the static
embedder.

Quality: on the labelled probe (bench/make_retrieval_probe.py: the teacher's paraphrases of
synthesized instructions), recall@1 and recall@5 of finding the instruction from its paraphrase
among every instruction of the run and every task the generator proposed, with 95 % Wilson
intervals, and each embedder's paired difference from the first (the default) on the same probes
(bootstrap interval, exact McNemar test).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from lbi.agent.retrieval import (
    MINILM_EMBEDDER,
    STATIC_EMBEDDER,
    STATIC_EMBEDDERS,
    VECTOR_DTYPE,
    AgenticRetriever,
    Embedder,
    Entry,
    RetrievalIndex,
)
from lbi.agent.scripted import ScriptedLLM
from lbi.eval.report import success_text
from lbi.eval.stats import compare
from lbi.types import Task

TABLES = ["students", "pets", "orders", "tracks", "albums", "invoices", "employees", "courses",
          "teachers", "battles", "ships", "owners", "dogs", "treatments", "players", "matches"]
COLUMNS = ["name", "age", "id", "total", "date", "city", "country", "title", "price", "type",
           "major", "sex", "zip_code", "amount", "rank", "genre"]
VERBS = ["Find", "List", "Count", "Show", "Which", "Return", "Give", "What are"]


def instruction(rng: random.Random) -> str:
    t1, t2 = rng.sample(TABLES, 2)
    c1, c2 = rng.sample(COLUMNS, 2)
    return (f"{rng.choice(VERBS)} the {c1} of {t1} whose {c2} is {rng.randint(1, 999)}"
            f"{rng.choice(['', f' and that have {t2}', f' ordered by {c2}'])}")


def observation(rng: random.Random) -> str:
    cols = rng.sample(COLUMNS, rng.randint(1, 3))
    rows = [" | ".join(str(rng.randint(1, 5000)) if rng.random() < 0.5 else
                       rng.choice(TABLES) + str(rng.randint(1, 50)) for _ in cols)
            for _ in range(rng.randint(1, 6))]
    return " | ".join(cols) + "\n" + "\n".join(rows)


def synthetic_entries(n: int, rng: random.Random) -> list[Entry]:
    entries = []
    for k in range(n):
        steps = [(observation(rng), f"SELECT {rng.choice(COLUMNS)} FROM {rng.choice(TABLES)}")
                 for _ in range(rng.randint(1, 4))]
        key = instruction(rng)
        text = "\n".join([f"### Example: {key}"] + [f"OBSERVATION: {o}\nACTION: {a}"
                                                    for o, a in steps])
        entries.append(Entry(id=f"ex{k}", key=key, observations=[o for o, _ in steps], text=text))
    return entries


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def latency(embedder: Embedder, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Per vector dtype: seconds per lookup of each kind over the synthetic index, and the
    fraction of HNSW's top 5 that exact search also ranks in its top 5 ("agreement")."""
    from usearch.index import Index

    rng = random.Random(args.seed)
    entries = synthetic_entries(args.examples, rng)
    t0 = time.perf_counter()
    base = embedder.encode([e.key for e in entries[: args.unique_keys]], batch_size=128)
    embed_s = time.perf_counter() - t0
    noise = np.random.default_rng(args.seed).normal(0, 0.05, (len(entries), embedder.dim))
    vectors = base[np.arange(len(entries)) % len(base)] + noise.astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    t0 = time.perf_counter()
    index = RetrievalIndex.build(entries, embedder, vectors=vectors, dtype=args.dtypes[0])
    build_s = time.perf_counter() - t0
    print(f"{embedder.name}: {len(entries):,} examples, {len(index.owners):,} observations; "
          f"{len(base):,} keys embedded in {embed_s:.1f}s, index build {build_s:.1f}s")

    queries = [(observation(rng), f"{instruction(rng)} #{q}") for q in range(args.queries)]
    warm_up = [(observation(rng), f"{instruction(rng)} warm-up {q}") for q in range(50)]
    task = Task(id="bench", env="sql", instruction="bench", origin="user")
    pending_query = [""]  # what the scripted "LLM" answers when asked for a query
    indexes = {args.dtypes[0]: index}
    for dtype in args.dtypes[1:]:  # the same entries and BM25, vectors stored at another precision
        vector_index = Index(ndim=embedder.dim, metric="cos", dtype=dtype)
        vector_index.add(np.arange(len(entries)), vectors)
        indexes[dtype] = RetrievalIndex(index.entries, index.bm25, index.owners, vector_index,
                                        embedder)
    combined = {dtype: AgenticRetriever(ix, env="sql", sources=("observation", "model"),
                                        query_model=ScriptedLLM(lambda m: pending_query[0]))
                for dtype, ix in indexes.items()}
    for obs, query in warm_up:  # caches, page faults, tokenizers, tiktoken: not what is timed
        for dtype, retriever in combined.items():
            pending_query[0] = f"{query} {dtype}"
            retriever(task, [], obs)
    results: dict[str, dict[str, list[float]]] = {
        dtype: {"observation (BM25)": [], "dense (embed + HNSW)": [], "embed only": [],
                "combined step": [], "agreement": []} for dtype in indexes}
    # Interleaved, query by query: every precision meets the same load on a shared machine.
    for obs, query in queries:
        for dtype, ix in indexes.items():
            timings = results[dtype]
            t0 = time.perf_counter()
            ix.by_observation(obs, 5)
            timings["observation (BM25)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            found = ix.by_text(f"{query} {dtype}", 5)
            timings["dense (embed + HNSW)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            exact = embedder.encode([f"{query} {dtype}"])[0]
            timings["embed only"].append(time.perf_counter() - t0)
            top = set(np.argpartition(-(vectors @ exact), 5)[:5].tolist())
            timings["agreement"].append(len(top.intersection(found)) / 5)
            pending_query[0] = f"{query} {dtype} (combined)"  # a new text: no cached embedding
            t0 = time.perf_counter()
            combined[dtype](task, [], obs)
            timings["combined step"].append(time.perf_counter() - t0)
    return results


def recall(embedder: Embedder, probe: Path) -> dict[int, list[int]]:
    """{k: [1 if the probe's own instruction ranks in the top k of its paraphrase, else 0]}."""
    header, *items = (json.loads(line) for line in probe.read_text().splitlines())
    keys = header["keys"] + header["distractors"]
    position = {key: k for k, key in enumerate(keys)}
    vectors = embedder.encode(keys)
    scores = embedder.encode([item["paraphrase"] for item in items]) @ vectors.T
    ranks = [int((row > row[position[item["instruction"]]]).sum())
             for row, item in zip(scores, items, strict=True)]
    return {k: [int(r < k) for r in ranks] for k in (1, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--unique-keys", type=int, default=5000)
    # The static embedders first: once torch has run MiniLM in this process, the static lookups
    # measured 30-50 % slower than in a process of their own.
    parser.add_argument("--embedders", nargs="+",
                        default=[STATIC_EMBEDDER, *(e for e in STATIC_EMBEDDERS
                                                    if e != STATIC_EMBEDDER), MINILM_EMBEDDER])
    parser.add_argument("--dtypes", nargs="+", default=[VECTOR_DTYPE, "f32"],
                        help="usearch vector precisions to time (the first is the default)")
    parser.add_argument("--probe", type=Path,
                        default=Path(__file__).parent / "data" / "retrieval_probe_sql.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results = {}
    for name in args.embedders:
        t0 = time.perf_counter()
        embedder = Embedder(name)
        print(f"{name}: loaded in {time.perf_counter() - t0:.1f}s")
        results[name] = (latency(embedder, args),
                         recall(embedder, args.probe) if args.probe.exists() else None)

    first = next(iter(results.values()))[0]
    lookups = [k for k in next(iter(first.values())) if k != "agreement"]
    print("\n| embedder | vectors | " + " | ".join(f"{k} p50 / p95 ms" for k in lookups)
          + " | HNSW top-5 = exact | recall@1 [95% CI] | recall@5 [95% CI] |")
    print("|---|---|" + "---|" * (len(lookups) + 3))
    for name, (by_dtype, found) in results.items():
        for dtype, timings in by_dtype.items():
            cells = ["{:.2f} / {:.2f}".format(*percentiles(timings[k])) for k in lookups]
            cells.append(f"{100 * statistics.mean(timings['agreement']):.1f}%")
            cells += [success_text(sum(found[k]), len(found[k])) if found else "no probe"
                      for k in (1, 5)]
            print(f"| {name} | {dtype} | " + " | ".join(cells) + " |")
    step = {(name, dtype): percentiles(timings["combined step"])[0]
            for name, (by_dtype, _) in results.items() for dtype, timings in by_dtype.items()}
    baseline = next(iter(step))
    for key, p50 in step.items():  # ratios within one run: the load is the same
        if key != baseline:
            print(f"combined step p50, {' '.join(key)} / {' '.join(baseline)}: "
                  f"{p50 / step[baseline]:.2f}x")
    (first, (_, found_first)), *others = results.items()
    for name, (_, found) in others:  # the same probes: a paired comparison with the first
        if found_first and found:
            for k in (1, 5):
                c = compare(found[k], found_first[k])
                print(f"recall@{k}, {name} - {first}: {100 * c['difference']:+.1f} pts "
                      f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}], exact McNemar "
                      f"p = {c['p_value']:.3f} ({c['only_this_row']} probes only {name} found, "
                      f"{c['only_reference']} only {first})")


if __name__ == "__main__":
    main()
