"""Training: label masks on the student's real tokenizer, a tiny random-init model trained by
train/sft.py, adapter round trips, GGUF export, and every shipped recipe."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml

from lbi.errors import LbiError
from lbi.synth import export
from lbi.synth.sft import conversations, step_conversations, trajectory_conversation
from lbi.train.data import IGNORE_INDEX, tokenize_conversation, tokenize_rows
from lbi.train.models import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*/sft/*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "recipes" / "accelerate_configs").glob("*.yaml"))
GEMMA_TEMPLATE = (Path(__import__("trl").__file__).parent / "chat_templates" / "gemma.jinja")


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded student's own tokenizer (Qwen2.5-Coder), converted from its GGUF."""
    return load_tokenizer("local/qwen2.5-coder-0.5b")


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive trained labels."""
    runs, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_step_rows_train_exactly_the_action_and_its_end_of_turn_token(tokenizer, sql_examples):
    example = next(e for e in sql_examples if len(e.steps) == 2)
    rows = step_conversations(example)
    assert len(rows) == 2 and "SELECT * FROM student LIMIT 2" in rows[1][1]["content"]
    for messages in rows:
        prompt, answer = messages[:-1], messages[-1]["content"]
        tokens = tokenize_conversation(tokenizer, messages)
        # Built independently: the prompt as the model sees it at inference, then the answer.
        prompt_ids = tokenizer(tokenizer.apply_chat_template(prompt, tokenize=False,
                                                             add_generation_prompt=True),
                               add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids, labels = tokens["input_ids"], tokens["labels"]
        n = len(prompt_ids)
        assert ids[:n] == prompt_ids
        assert ids[n:n + len(answer_ids)] == answer_ids
        assert ids[n + len(answer_ids):] == tokenizer("\n", add_special_tokens=False)["input_ids"]
        for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
            trained = n <= i < n + len(answer_ids)
            assert label == (token if trained else IGNORE_INDEX), (i, tokenizer.decode([token]))
        assert labels[n + len(answer_ids) - 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_trajectory_rows_train_every_action_turn_and_no_observation(tokenizer, sql_examples):
    example = next(e for e in sql_examples if len(e.steps) == 2)
    messages = trajectory_conversation(example)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert conversations(example, "trajectory") == [messages]
    tokens = tokenize_conversation(tokenizer, messages)
    runs = _runs(tokens["labels"])
    assert [tokenizer.decode(tokens["input_ids"][a:b]) for a, b in runs] == [
        m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    assert "SELECT * FROM student LIMIT 2" in messages[2]["content"]
    with pytest.raises(LbiError, match="unknown conversation format"):
        conversations(example, "turns")


def test_a_template_without_system_role_gets_it_folded_into_the_first_user_turn(
        tokenizer, sql_examples):
    gemma = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    gemma.chat_template = GEMMA_TEMPLATE.read_text()  # raises on a system turn, like CodeGemma's
    messages = step_conversations(sql_examples[0])[0]
    with pytest.raises(Exception, match="(?i)system"):
        gemma.apply_chat_template(messages, tokenize=False)
    rows, report = tokenize_rows(gemma, [("r", messages)], max_length=None)
    assert report.system_folded
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    text = gemma.decode(ids)
    assert text.index("You are an agent") < text.index("## Objective")
    # Qwen's vocabulary has no <end_of_turn> token: its last piece `>\n` carries the newline.
    assert [gemma.decode(ids[a:b]).rstrip("\n") for a, b in _runs(labels)] == [
        messages[-1]["content"] + "<end_of_turn>"]


def test_a_freshly_converted_tokenizer_is_the_cached_one(tmp_path, monkeypatch):
    """The first run on a machine converts the GGUF tokenizer; it must behave like the cached
    copy later runs load (a fresh install failed the Gemma-template test on this)."""
    import lbi.train.models as models

    monkeypatch.setattr(models, "lbi_home", lambda: tmp_path)
    fresh = load_tokenizer("local/qwen2.5-coder-0.5b")
    cached = load_tokenizer("local/qwen2.5-coder-0.5b")
    assert Path(fresh.name_or_path) == Path(cached.name_or_path)
    assert Path(fresh.name_or_path).is_relative_to(tmp_path)
    reloaded = fresh.__class__.from_pretrained(fresh.name_or_path)
    assert reloaded("<|im_start|>user x")["input_ids"] == fresh("<|im_start|>user x")["input_ids"]


def test_rows_over_max_length_are_dropped_counted_and_warned_about(tokenizer, sql_examples,
                                                                   caplog):
    rows = [(f"{e.id}-{k}", m) for e in sql_examples
            for k, m in enumerate(step_conversations(e))]
    lengths = sorted(len(tokenize_conversation(tokenizer, m)["input_ids"]) for _, m in rows)
    limit = lengths[len(lengths) // 2]
    with caplog.at_level(logging.WARNING):
        kept, report = tokenize_rows(tokenizer, rows, max_length=limit)
    too_long = sum(n > limit for n in lengths)
    assert 0 < too_long < len(rows)
    assert (report.rows, report.kept, report.dropped_too_long) == (len(rows), len(kept), too_long)
    assert report.longest == lengths[-1] and len(report.dropped_ids) == too_long
    assert all(len(r["input_ids"]) <= limit for r in kept)
    assert f"dropped {too_long} of {len(rows)} rows" in caplog.text


def test_a_broken_row_is_named_in_the_error(tokenizer):
    broken = [{"role": "user", "content": "hi"}, {"content": "no role"}]
    with pytest.raises(LbiError, match="row 'r7' cannot be rendered"):
        tokenize_rows(tokenizer, [("r7", broken)], max_length=None)


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer, sql_examples):
    odd = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    odd.chat_template = ("{{ messages | length }}{% for m in messages %}<{{ m.role }}>"
                         "{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}"
                         "<assistant>{% endif %}")
    with pytest.raises(LbiError, match="prefixes consistently"):
        tokenize_conversation(odd, step_conversations(sql_examples[0])[0])


# --- training with train/sft.py on a tiny random-init model ---------------------------------

@pytest.fixture(scope="module")
def tiny_model(tokenizer, tmp_path_factory):
    """A 2-layer Qwen2 with random weights and the student's real tokenizer, saved as a folder."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def synth_dataset(sql_examples, tmp_path_factory):
    """A dataset folder as `lbi synth` writes it (examples + step-level sft config)."""
    sft = [{"id": f"{e.id}-{k}", "example_id": e.id, "kind": e.kind, "messages": m}
           for e in sql_examples for k, m in enumerate(step_conversations(e))]
    dataset = export.build_dataset([], [export.example_row(e) for e in sql_examples], [], sft)
    return export.save_dataset(dataset, "# test dataset\n",
                               tmp_path_factory.mktemp("synth") / "dataset")


def test_training_rows_of_an_examples_dataset_need_no_environment(synth_dataset):
    # The rows are built from the action description stored with each example: no environment
    # module is imported, so data of an environment whose extras are absent trains as well.
    script = f"""
import sys
class NoEnvs:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("lbi.envs.", "browsergym", "playwright")):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, NoEnvs())
from lbi.train.sft import LbiScriptArguments, get_dataset, conversation_rows
args = LbiScriptArguments(dataset_name={str(synth_dataset)!r}, dataset_config="examples")
rows = list(conversation_rows(get_dataset(args)["train"], args))
assert len(rows) == 6 and "SQL" in rows[0][1][0]["content"], rows[0]
print(sorted(m for m in sys.modules if m.startswith("lbi.envs")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("[]", "['lbi.envs']"), out.stdout


def _args(model: Path, data: Path, out: Path, **overrides: object) -> list[str]:
    args = {"model_name_or_path": model, "dataset_name": data, "output_dir": out,
            "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_target_modules": "all-linear",
            "use_cpu": True, "bf16": False, "activation_checkpointing": False,
            "per_device_train_batch_size": 2, "learning_rate": 5e-3, "max_steps": 8,
            "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 0,
            "max_length": 4096, "optim": "adamw_torch", "disable_tqdm": True, **overrides}
    return [x for k, v in args.items() for x in (f"--{k}", str(v))]


def _parse(args: list[str]):
    from lbi.train.sft import make_parser

    with mock.patch.dict(os.environ):  # a recipe's `env:` block must not leak into other tests
        return make_parser().parse_args_and_config(args=args)


def test_sft_trains_a_tiny_model_on_actions_only_and_its_loss_drops(tiny_model, synth_dataset,
                                                                    tmp_path):
    from lbi.train.sft import main

    out = tmp_path / "run"
    # Full fine-tuning: LoRA on a random 32-wide model barely moves (its output layer is frozen);
    # LoRA itself is exercised by the launch test below and the adapter round trip.
    main(*_parse(_args(tiny_model, synth_dataset, out, use_peft=False, learning_rate=1e-2)))
    summary = json.loads((out / "training_summary.json").read_text())
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert len(losses) == 8 and summary["resumed_from"] is None
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.5, losses  # nats
    tokenization = summary["tokenization"]
    assert tokenization["kept"] == tokenization["rows"] == 6
    assert 0 < tokenization["trained_tokens"] < tokenization["tokens"] / 3
    assert (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert "## Learn-by-interact training data" in card and "action tokens" in card


def test_adapter_save_load_and_merge_give_identical_outputs(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                      init_lora_weights=False))
    model.eval()
    ids = torch.randint(0, 1000, (2, 24))
    with torch.no_grad():
        trained = model(ids).logits
        with model.disable_adapter():
            base = model(ids).logits
    assert not torch.allclose(trained, base, atol=1e-4)  # the adapter does change the outputs
    model.save_pretrained(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                       tmp_path / "adapter").eval()
    merged = loaded.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        for other in (loaded, merged, reloaded):
            torch.testing.assert_close(other(ids).logits, trained, atol=1e-5, rtol=1e-4)


def test_accelerate_launch_tracks_to_wandb_offline_and_a_rerun_resumes(tiny_model, synth_dataset,
                                                                        sql_examples, tmp_path):
    """The documented command line, then a longer run in the same output_dir."""
    from lbi.train.sft import main

    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"env": {"WANDB_PROJECT": "lbi-test"}}))
    args = _args(tiny_model, synth_dataset, out, max_steps=3, save_strategy="steps",
                 save_steps=3, report_to="wandb", conversation_format="trajectory",
                 dataset_config="examples")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes",
                          "1", str(REPO / "train" / "sft.py"), "--config", str(recipe), *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "checkpoint-3").is_dir()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    first = json.loads((out / "training_summary.json").read_text())
    assert first["tokenization"]["rows"] == len(sql_examples)  # one trajectory row per example

    main(*_parse(_args(tiny_model, synth_dataset, out, max_steps=5, save_strategy="no",
                       conversation_format="trajectory", dataset_config="examples")))
    second = json.loads((out / "training_summary.json").read_text())
    assert second["resumed_from"].endswith("checkpoint-3") and second["global_step"] == 5


def test_a_missing_config_or_an_impossible_export_is_a_clear_error(tiny_model, synth_dataset,
                                                                     tmp_path):
    from lbi.train.sft import main

    with pytest.raises(LbiError, match="has no 'steps' config; found: .*'sft'"):
        main(*_parse(_args(tiny_model, synth_dataset, tmp_path / "o", dataset_config="steps")))
    with pytest.raises(LbiError, match="export_gguf needs .* GGUF model"):  # before any training
        main(*_parse(_args(tiny_model, synth_dataset, tmp_path / "o", export_gguf=True)))
    assert not (tmp_path / "o").exists()


# --- shipped recipes --------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_recipe_parses_into_the_script_arguments(recipe):
    from trl import get_peft_config, get_quantization_config

    raw = yaml.safe_load(recipe.read_text())
    # CI has no GPU: bf16 is validated against the device, so parse as if on CPU.
    script_args, training_args, model_args = _parse(["--config", str(recipe), "--use_cpu",
                                                     "true", "--learning_rate", "3e-4"])
    assert training_args.learning_rate == 3e-4  # the command line overrides the recipe
    assert model_args.use_peft and get_peft_config(model_args).r == raw["lora_r"]
    assert script_args.dataset_config in ("sft", "examples", "distill")
    assert f"--config {recipe.relative_to(REPO)}" in recipe.read_text()  # its launch command
    if "cpu" in recipe.stem:
        assert training_args.use_cpu and script_args.export_gguf
        return
    # The paper's hyper-parameters (docs/method.md).
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    assert (batch, training_args.learning_rate, raw["learning_rate"]) == (128, 3e-4, 2e-5)
    assert (training_args.warmup_steps, training_args.max_length,
            training_args.num_train_epochs) == (0.03, 8192, 3)
    assert "wandb" in training_args.report_to
    quantization = get_quantization_config(model_args)
    assert (quantization is not None) == ("qlora" in recipe.stem)
    if quantization is not None:
        assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_every_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"single_gpu": "NO", "ddp": "MULTI_GPU", "zero3": "DEEPSPEED", "fsdp": "FSDP"}
    assert config.distributed_type.value == expected[path.stem]
    assert config.mixed_precision == "bf16"
    if path.stem == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3


# --- GGUF export (real GGUF, real llama.cpp) ---------------------------------------------------

@pytest.mark.slow
def test_a_gguf_with_the_adapter_merged_runs_in_llama_cpp_like_the_trained_model(tmp_path):
    """SmolLM2 is a llama-architecture GGUF: llama.cpp permutes its query/key rows, so this
    also checks that the delta gets the same permutation. Served by llama-server: its greedy
    next token after every prefix of a prompt is compared with transformers' argmax."""
    import httpx
    from peft import LoraConfig, get_peft_model

    from lbi.agent import server
    from lbi.agent.local import resolve_gguf
    from lbi.train.gguf_export import export_merged_gguf
    from lbi.train.models import load_model

    name = "local/smollm2-135m"
    tok = load_tokenizer(name)
    torch.manual_seed(0)
    base_model = load_model(name)
    base_model.save_pretrained(tmp_path / "hf")  # transformers refuses while the GGUF quantizer
    assert (tmp_path / "hf" / "model.safetensors").is_file()  # is attached; load_model drops it
    model = get_peft_model(base_model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for param_name, param in model.named_parameters():
        if "lora_B" in param_name:  # as if trained: a delta large enough to change the outputs
            param.data.normal_(0, 0.3)
    summary = export_merged_gguf(model, resolve_gguf(name), tmp_path / "model.gguf")
    assert summary["merged_tensors"] == 30 * 7  # 30 blocks x (q k v o gate up down)

    ids = tok("<|im_start|>user\nWrite SQL that counts the rows of table t, then the rows of "
              "table u grouped by their first column.<|im_end|>\n<|im_start|>assistant\n"
              "SELECT count(*) FROM t; SELECT a, count(*) FROM u GROUP BY a;",
              add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        trained = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        with model.disable_adapter():
            base = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()

    def served_argmax(path: Path) -> list[int]:
        spec = server.ServerSpec(model=str(path), slots=1, ctx_per_slot=256, threads=1)
        url = server.ensure_server(spec)
        try:
            return [httpx.post(f"{url}/completion", json={
                "prompt": ids[: t + 1], "n_predict": 1, "temperature": 0.0,
                "cache_prompt": False, "return_tokens": True}, timeout=60).json()["tokens"][0]
                for t in range(len(ids))]
        finally:
            server.stop_server(spec)

    served_trained = served_argmax(tmp_path / "model.gguf")
    served_base = served_argmax(resolve_gguf(name))

    def agree(a: list[int], b: list[int]) -> float:
        return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)

    # What the adapter changes, as llama.cpp serves it vs as transformers computes it: where
    # the adapter changed transformers' prediction, the merged GGUF predicts the changed token
    # (a wrong layout or name would give the base model's token or noise).
    changed = [t for t in range(len(ids)) if trained[t] != base[t]]
    assert len(changed) >= 5
    assert sum(served_trained[t] == trained[t] for t in changed) >= 0.7 * len(changed)
    assert agree(served_trained, trained) >= 0.8 and agree(served_base, base) >= 0.8


def test_push_to_hub_without_the_hub_fails_before_training_with_one_clear_error(
        tiny_model, synth_dataset, tmp_path):
    from lbi.train.sft import main

    out = tmp_path / "run"
    with pytest.raises(LbiError, match="(?s)cannot reach the Hub repo 'someone/lbi-test'.*"
                                       "Nothing was trained"):  # HF_HUB_OFFLINE=1 in tests
        main(*_parse(_args(tiny_model, synth_dataset, out, max_steps=1, push_to_hub=True,
                           hub_model_id="someone/lbi-test")))


def test_a_cpu_without_native_bf16_trains_in_fp32(monkeypatch, tmp_path):
    from lbi.train import sft

    recipe = REPO / "recipes/qwen2.5-coder-0.5b/sft/lora-cpu.yaml"
    _, asked, _ = _parse(["--config", str(recipe), "--output_dir", str(tmp_path)])
    assert asked.use_cpu and asked.bf16  # what the recipe asks for
    monkeypatch.setattr(sft, "native_cpu_bf16", lambda: True)
    assert sft.cpu_precision(asked) is asked
    monkeypatch.setattr(sft, "native_cpu_bf16", lambda: False)
    chosen = sft.cpu_precision(asked)
    assert (chosen.bf16, chosen.mixed_precision) == (False, "no")
    kept = ("learning_rate", "num_train_epochs", "gradient_accumulation_steps", "output_dir",
            "report_to", "lr_scheduler_type", "max_length")
    assert [getattr(chosen, k) for k in kept] == [getattr(asked, k) for k in kept]
