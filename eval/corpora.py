"""The retrieval corpora of the ICL baselines, indexed once and cached on disk.

``examples`` and ``distill`` come from a dataset written by ``lbi synth``; their index is saved
beside it (``<dataset>/index/<corpus>-<embedder>``). ``docs`` is the environment's documentation
(RAG baseline), indexed under the evaluation's output folder. Examples that overlap the held-out
tasks are dropped before indexing (decontamination), and the count is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from lbi.agent.retrieval import Embedder, Entry, RetrievalIndex, document_entry, example_entry
from lbi.errors import ConfigError
from lbi.eval.config import slug
from lbi.protocols import Environment
from lbi.synth.decontam import Decontaminator
from lbi.synth.export import example_from_row, load_dataset_dir
from lbi.types import Task, content_id


@dataclass
class Corpus:
    index: RetrievalIndex
    decontaminated: int
    """Entries dropped because they overlap a held-out task."""
    folder: Path
    """Where the index is saved (workers load it from there)."""
    fingerprint: str
    """The entries (ids and texts) and the embedder: another dataset is another corpus."""


def check_dataset(corpus: str, dataset: Path | None) -> None:
    """Fail with the fix when a dataset corpus is missing (before any episode runs)."""
    if corpus != "docs" and (dataset is None or not (dataset / corpus).exists()):
        raise ConfigError(f"no `{corpus}` config in the dataset folder {dataset}: point "
                          "`dataset` at the folder `lbi synth` wrote (…/dataset); datasets made "
                          "before the data-distill config existed get it by rerunning lbi synth "
                          "on the same output_dir (finished stages are not redone)")


def load_entries(corpus: str, dataset: Path | None, env: Environment,
                 held_out: list[Task]) -> tuple[list[Entry], int]:
    """The entries of ``corpus`` and how many were dropped by decontamination."""
    if corpus == "docs":
        return [document_entry(d) for d in env.docs()], 0
    check_dataset(corpus, dataset)
    assert dataset is not None
    rows = load_dataset_dir(dataset)[corpus]["train"]
    decontam = Decontaminator(held_out)
    examples = [example_from_row(row) for row in rows]
    clean = [e for e in examples if e.env == env.name and not decontam.example_reason(e)]
    return [example_entry(e) for e in clean], len(examples) - len(clean)


def open_corpus(corpus: str, *, dataset: Path | None, cache_root: Path, env: Environment,
                held_out: list[Task], embedder: Embedder, console: Console) -> Corpus:
    """The index of ``corpus``: loaded if a saved one matches the entries, else built and saved."""
    entries, dropped = load_entries(corpus, dataset, env, held_out)
    if not entries:
        raise ConfigError(f"the `{corpus}` corpus is empty (after decontamination: {dropped} "
                          "dropped); synthesize more data or remove the rows that use it")
    root = dataset / "index" if corpus != "docs" and dataset else cache_root / "index"
    folder = root / f"{corpus}-{slug(embedder.name)}"
    fingerprint = content_id([e.id for e in entries], [e.text for e in entries], embedder.name)
    if RetrievalIndex.saved_fingerprint(folder) == fingerprint:
        return Corpus(RetrievalIndex.load(folder, embedder), dropped, folder, fingerprint)
    with console.status(f"indexing {len(entries)} {corpus} entries…"):
        index = RetrievalIndex.build(entries, embedder)
        index.save(folder, fingerprint)
    return Corpus(index, dropped, folder, fingerprint)
