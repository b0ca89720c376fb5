"""Retrieval for ICL on real components: examples executed in the real SQL env, the real
all-MiniLM-L6-v2 embedder, bm25s and usearch; a scripted model only writes the search queries."""

from __future__ import annotations

import json

import pytest

from lbi.agent.retrieval import (
    MINILM_EMBEDDER,
    STATIC_EMBEDDER,
    STATIC_EMBEDDERS,
    AgenticRetriever,
    Embedder,
    RetrievalIndex,
    _static_table,
    document_entry,
    example_entry,
    parse_query,
)
from lbi.agent.scripted import ScriptedLLM
from lbi.envs import make_env
from lbi.errors import ConfigError
from lbi.types import Task


@pytest.fixture(scope="module")
def examples(sql_examples):
    return sql_examples


@pytest.fixture(scope="module")
def index(embedder, examples):
    return RetrievalIndex.build([example_entry(e) for e in examples], embedder)


def _instructions(index: RetrievalIndex, found: list[int]) -> list[str]:
    return [index.entries[k].key for k in found]


def test_dense_search_finds_the_example_with_the_same_meaning(index):
    assert _instructions(index, index.by_text("count the songs in the database", 1)) == [
        "How many tracks are in the music store?"]
    assert _instructions(index, index.by_text("French singers and how old they are", 1)) == [
        "Show the singers from France with their ages."]


def test_observation_search_matches_what_the_agent_sees(index, examples):
    # The schema of pets_1 is the first observation of two examples: they rank first.
    schema = examples[2].steps[0].observation
    found = _instructions(index, index.by_observation(schema, 2))
    assert set(found) == {"Which pets are older than 3 years?",
                          "How many students are majoring in 600?"}
    assert index.by_observation("zzqx unknownword", 5) == []  # no match, nothing returned
    for wordless in ("", "0", "the 42"):  # a command's empty or numeric output
        assert index.by_observation(wordless, 5) == []


def test_skip_excludes_already_retrieved_entries(index):
    first = index.by_text("count the songs", 2)
    assert not set(index.by_text("count the songs", 2, skip=set(first))) & set(first)


def test_index_save_load_round_trip_gives_the_same_results(index, embedder, tmp_path):
    index.save(tmp_path / "idx", fingerprint="f1")
    assert RetrievalIndex.saved_fingerprint(tmp_path / "idx") == "f1"
    loaded = RetrievalIndex.load(tmp_path / "idx", embedder)
    assert loaded.entries == index.entries
    for query in ("count the songs", "pets older than three"):
        assert loaded.by_text(query, 3) == index.by_text(query, 3)
        assert loaded.by_observation(query, 3) == index.by_observation(query, 3)
    assert RetrievalIndex.saved_fingerprint(tmp_path / "nothing") is None


def test_agentic_retrieval_combines_observation_and_model_query_without_duplicates(index,
                                                                                   examples):
    writer = ScriptedLLM(["QUERY: how many students have a given major"])
    retriever = AgenticRetriever(index, env="sql", sources=("observation", "model"), m1=2,
                                 m2=2, max_tokens=10_000, query_model=writer)
    task = Task(id="t", env="sql", instruction="Count the students in major 50", origin="user")
    record = retriever(task, [], examples[3].steps[0].observation)
    assert record.query == "how many students have a given major" and record.llm is not None
    assert len(record.ids) == len(set(record.ids)) and 2 <= len(record.ids) <= 4
    assert examples[3].id in record.ids
    assert "### Example: How many students are majoring in 600?" in record.text
    prompt = writer.seen[0][0]["content"]
    assert task.instruction in prompt and "pets_1" in prompt  # goal and current observation


def test_reference_block_respects_the_token_budget(index):
    one = max(entry.tokens for entry in index.entries)
    retriever = AgenticRetriever(index, env="sql", sources=("instruction",), m2=5,
                                 max_tokens=one + 5)
    task = Task(id="t", env="sql", instruction="How many tracks are there?", origin="user")
    record = retriever(task, [], "")
    assert len(record.ids) == 1 and record.tokens <= one + 5 and record.query is None


def test_token_counts_are_counted_once_and_restored(index, tmp_path):
    import litellm

    entry = index.entries[0]
    assert entry.tokens == len(litellm.encode(model="local/qwen2.5-coder-0.5b", text=entry.text))
    index.save(tmp_path / "saved")
    # An index saved before entries carried counts: they are counted again on load.
    lines = (tmp_path / "saved" / "entries.jsonl").read_text().splitlines()
    (tmp_path / "saved" / "entries.jsonl").write_text("".join(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "tokens"}) + "\n"
        for line in lines))
    loaded = RetrievalIndex.load(tmp_path / "saved", index.embedder)
    assert [e.tokens for e in loaded.entries] == [e.tokens for e in index.entries]


def test_model_based_retrieval_needs_a_query_model(index):
    with pytest.raises(ConfigError, match="needs a model"):
        AgenticRetriever(index, env="sql", sources=("model",))


def test_documents_are_indexed_the_same_way(embedder):
    docs = list(make_env("sql").docs())[:200]
    index = RetrievalIndex.build([document_entry(d) for d in docs], embedder)
    found = index.by_observation("CREATE INDEX ON table column", 3)
    assert found and any("index" in index.entries[k].text.lower() for k in found)


@pytest.mark.parametrize(("answer", "query"), [
    ("QUERY: join students and pets", "join students and pets"),
    ("Request: 'count tracks per genre'", "count tracks per genre"),
    ("Task: Identify TV channels without cartoons", "Identify TV channels without cartoons"),
    ("Show pets: name and age", "Show pets: name and age"),
    ('"count tracks per genre"\nexplanation…', "count tracks per genre"),
    ("\n\n  list albums  \n", "list albums"),
    ("", ""),
])
def test_parse_query(answer, query):
    assert parse_query(answer) == query


def test_unknown_embedder_fails_clearly():
    from lbi.errors import AssetError

    with pytest.raises(AssetError, match="cannot load the embedding model"):
        Embedder("/nonexistent/embedder")


@pytest.fixture(scope="module")
def static_index(examples):
    return RetrievalIndex.build([example_entry(e) for e in examples],
                                Embedder(STATIC_EMBEDDER))


@pytest.mark.parametrize(("name", "dim"), STATIC_EMBEDDERS.items())
def test_the_static_embedders_give_wordllamas_own_vectors(name, dim):
    import numpy as np
    from wordllama.inference import WordLlamaInference
    from wordllama.tokenizers import tokenizer_from_file

    table, _ = _static_table()
    # WordLlama.load(trunc_dim=...) keeps the table's first columns, as we do.
    reference = WordLlamaInference(table[:, :dim],
                                   tokenizer_from_file("l2_supercat_tokenizer_config.json"),
                                   binary=False)
    texts = ["Count the dogs kept by girls.", "Which pets are older than 3 years?", "é ✓ SELECT *"]
    ours = Embedder(name).encode(texts)
    assert ours.shape == (3, dim)
    np.testing.assert_allclose(ours, reference.embed(texts, norm=True), atol=1e-6)
    assert not Embedder(name).encode([""]).any()  # no tokens: a zero vector, no NaN


def test_dense_search_with_the_static_embedder_and_its_saved_index(static_index, tmp_path):
    assert _instructions(static_index, static_index.by_text("songs in the music store", 1)) == [
        "How many tracks are in the music store?"]
    static_index.save(tmp_path / "idx")
    with pytest.raises(ConfigError, match=f"built with '{STATIC_EMBEDDER}'"):
        RetrievalIndex.load(tmp_path / "idx", Embedder(MINILM_EMBEDDER))
