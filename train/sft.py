"""Supervised fine-tuning on a learn-by-interact dataset (docs/method.md, fine-tuning).

```bash
# The embedded student on CPU, on the dataset `lbi synth --config configs/sql.yaml` wrote:
accelerate launch train/sft.py --config recipes/qwen2.5-coder-0.5b/sft/lora-cpu.yaml

# Codestral-22B, QLoRA on one GPU (any recipe field can be overridden on the command line):
accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml train/sft.py \
    --config recipes/codestral-22b/sft/qlora.yaml --dataset_name you/lbi-sql
```

The dataset is a folder written by ``lbi synth`` or its Hub copy. ``dataset_config: sft`` trains
on its step-level conversations as published; ``examples`` (or ``distill``, the no-backward-
construction ablation) converts the examples here, step by step or as whole trajectories
(``conversation_format``). The loss is on the action turns only (``lbi.train.data``); rows longer
than ``max_length`` are dropped and counted, never cut. A run resumes from the last checkpoint
in ``output_dir``. ``export_gguf`` folds the adapter into the GGUF the model came from so that
``lbi eval`` serves it with llama.cpp as ``local/<output_dir>/model.gguf``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser

from lbi.errors import LbiError
from lbi.synth.sft import Messages, conversations
from lbi.train.data import TokenizeReport, tokenize_rows
from lbi.train.gguf_export import export_merged_gguf
from lbi.train.models import gguf_source, load_model, load_tokenizer

log = logging.getLogger("lbi.train")


@dataclass
class LbiScriptArguments(ScriptArguments):
    """Dataset and export options on top of TRL's ``ScriptArguments``.

    dataset_name: a folder written by ``lbi synth`` (``<output_dir>/dataset``) or a Hub id.
    dataset_config: ``sft`` (step conversations as exported), ``examples`` or ``distill``.
    conversation_format: for ``examples``/``distill``: ``step`` (one row per action, the paper's
        format) or ``trajectory`` (one multi-turn row per example).
    export_gguf: write ``<output_dir>/model.gguf`` (base GGUF + adapter) for llama.cpp.
    gguf_qtype: quantization of the merged tensors in that file.
    merge_adapter: also save the merged full model in ``<output_dir>/merged``.
    cpu_threads: torch threads of a single-process CPU run (default: every core this process may
        use; ``accelerate launch`` would otherwise leave it at one).
    """

    dataset_config: str | None = field(
        default="sft", metadata={"help": "sft (as exported), examples or distill."})
    conversation_format: str = field(
        default="step", metadata={"help": "step or trajectory (examples/distill configs)."})
    export_gguf: bool = field(
        default=False, metadata={"help": "Write <output_dir>/model.gguf for llama.cpp serving."})
    gguf_qtype: str = field(default="Q8_0", metadata={"help": "Type of the merged GGUF tensors."})
    merge_adapter: bool = field(
        default=False, metadata={"help": "Save the merged model in <output_dir>/merged."})
    cpu_threads: int | None = field(
        default=None, metadata={"help": "Torch threads on CPU (default: all available cores)."})


def get_dataset(script_args: LbiScriptArguments) -> Any:
    """The ``DatasetDict`` of the chosen config, from a local ``lbi synth`` folder or the Hub."""
    from datasets import load_dataset

    from lbi.synth.export import load_dataset_dir

    if script_args.dataset_name is None:
        raise LbiError("no dataset: set dataset_name (an `lbi synth` dataset folder or Hub id)")
    config = script_args.dataset_config or "sft"
    local = Path(script_args.dataset_name).expanduser()
    if local.is_dir():
        if not (local / config).is_dir():
            raise LbiError(f"{local} has no {config!r} config; found: "
                           f"{sorted(p.name for p in local.iterdir() if p.is_dir())}")
        try:
            return load_dataset_dir(local)[config]
        except Exception as exc:  # a truncated or foreign file
            raise LbiError(f"cannot read the dataset {local / config}: {type(exc).__name__}: "
                           f"{str(exc)[:300]}. Export it again with lbi synth (finished stages "
                           "are not redone).") from None
    return load_dataset(script_args.dataset_name, name=config)


def conversation_rows(split: Any,
                      script_args: LbiScriptArguments) -> Iterator[tuple[str, Messages]]:
    """``(row id, messages)`` for every training conversation of a split."""
    if "messages" in split.column_names:
        if script_args.conversation_format != "step":
            raise LbiError("the sft config holds step conversations; for "
                           f"conversation_format={script_args.conversation_format!r} train on "
                           "dataset_config examples (or distill)")
        for row in split:
            yield row["id"], row["messages"]
        return
    from lbi.synth.export import example_from_row

    for row in split:
        example = example_from_row(row)
        for k, messages in enumerate(conversations(example, script_args.conversation_format)):
            yield f"{example.id}-{k}", messages


def tokenized_split(dataset: Any, name: str, tokenizer: Any, script_args: LbiScriptArguments,
                    max_length: int | None) -> tuple[Any, TokenizeReport]:
    """Split ``name`` as ``input_ids`` + ``labels`` rows, and what tokenization dropped."""
    from datasets import Dataset

    if name not in dataset:
        raise LbiError(f"the dataset has no {name!r} split; it has: {', '.join(dataset)}")
    split = dataset[name]
    rows, report = tokenize_rows(tokenizer, conversation_rows(split, script_args), max_length)
    if not rows:
        raise LbiError(f"no training rows left ({report.rows} read, {report.dropped_too_long} "
                       f"over max_length={max_length})")
    return Dataset.from_list(rows), report


def get_model(model_args: ModelConfig, training_args: SFTConfig) -> Any:
    import torch
    from accelerate import PartialState
    from trl import get_quantization_config

    quantization = get_quantization_config(model_args)
    dtype = model_args.dtype
    return load_model(
        model_args.model_name_or_path, revision=model_args.model_revision,
        dtype=dtype if dtype in ("auto", None) else getattr(torch, dtype),
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        quantization_config=quantization,
        device_map={"": PartialState().local_process_index} if quantization else None)


def last_checkpoint(training_args: SFTConfig) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest in ``output_dir``."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    out = Path(training_args.output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def write_card(trainer: SFTTrainer, script_args: LbiScriptArguments, model_args: ModelConfig,
               report: TokenizeReport, extra: dict[str, Any]) -> None:
    """TRL's model card plus what the training rows were made of and what was dropped."""
    out = Path(trainer.args.output_dir)
    trainer.create_model_card(model_name=out.name, dataset_name=script_args.dataset_name,
                              tags=["learn-by-interact", "agent", "sft"])
    summary = {"base_model": model_args.model_name_or_path,
               "dataset": script_args.dataset_name, "dataset_config": script_args.dataset_config,
               "conversation_format": script_args.conversation_format,
               "tokenization": report.as_dict(), **extra}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["## Learn-by-interact training data", "",
             f"- dataset: `{script_args.dataset_name}`, config `{script_args.dataset_config}`, "
             f"format `{script_args.conversation_format}` (prompt = the agent's inference prompt, "
             "docs/method.md)",
             f"- rows: {report.kept} trained of {report.rows}; {report.dropped_too_long} dropped "
             f"as longer than {report.max_length} tokens (longest {report.longest})",
             f"- tokens: {report.tokens:,}, of which {report.trained_tokens:,} are action tokens "
             "(the only ones in the loss)"]
    if report.system_folded:
        lines.append("- the chat template has no system role: the system prompt was folded into "
                     "the first user turn")
    if "gguf" in extra:
        lines.append(f"- llama.cpp file: `model.gguf` ({extra['gguf']['merged_tensors']} tensors "
                     f"merged, {extra['gguf']['qtype']}); `lbi eval` model string "
                     f"`local/{out / 'model.gguf'}`")
    card = out / "README.md"
    card.write_text(card.read_text().rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


def use_all_cores(script_args: LbiScriptArguments, training_args: SFTConfig) -> None:
    """One CPU process gets every core (accelerate sets OMP_NUM_THREADS=1 for CPU launches)."""
    import torch
    from accelerate import PartialState

    if training_args.use_cpu and PartialState().num_processes == 1:
        torch.set_num_threads(script_args.cpu_threads or len(os.sched_getaffinity(0)))
        log.info("CPU training with %d threads", torch.get_num_threads())


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Elsewhere torch emulates
    it, and bf16 autocast is slower than fp32 (bench/train_cpu.py); True when torch cannot tell."""
    import torch

    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    known = [probe for probe in probes if probe is not None]
    return not known or any(probe() for probe in known)


def cpu_precision(training_args: SFTConfig) -> SFTConfig:
    """``training_args`` with bf16 off for a CPU run on a CPU without native bf16, where the
    recipes' bf16 autocast would be the slower choice."""
    if training_args.use_cpu and training_args.bf16 and not native_cpu_bf16():
        log.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): training in fp32, which "
                    "is faster here than emulated bf16")
        return replace(training_args, bf16=False)
    return training_args


def main(script_args: LbiScriptArguments, training_args: SFTConfig,
         model_args: ModelConfig) -> None:
    from transformers import set_seed
    from trl import get_peft_config

    base_gguf = gguf_source(model_args.model_name_or_path)
    if script_args.export_gguf and (base_gguf is None or not model_args.use_peft):
        raise LbiError("export_gguf needs a LoRA run (use_peft) on a GGUF model (local/...)")
    if script_args.merge_adapter and not model_args.use_peft:
        raise LbiError("merge_adapter needs a LoRA run (use_peft)")
    set_seed(training_args.seed)
    use_all_cores(script_args, training_args)
    training_args = cpu_precision(training_args)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.model_revision,
                               training_args.trust_remote_code)
    dataset = get_dataset(script_args)
    train_dataset, report = tokenized_split(dataset, script_args.dataset_train_split, tokenizer,
                                            script_args, training_args.max_length)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset, _ = tokenized_split(dataset, script_args.dataset_test_split, tokenizer,
                                          script_args, training_args.max_length)
    log.info("training rows: %d kept of %d (%d over max_length); %d tokens, %d in the loss",
             report.kept, report.rows, report.dropped_too_long, report.tokens,
             report.trained_tokens)

    try:  # with push_to_hub the Trainer creates the Hub repo first: fail before training
        trainer = SFTTrainer(model=get_model(model_args, training_args), args=training_args,
                             train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=tokenizer, peft_config=get_peft_config(model_args))
    except (HfHubHTTPError, OfflineModeIsEnabled) as exc:
        raise LbiError(f"cannot reach the Hub repo {training_args.hub_model_id!r}: {exc}\n"
                       "Nothing was trained. Log in (`hf auth login` or HF_TOKEN) or drop "
                       "--push_to_hub.") from None
    checkpoint = last_checkpoint(training_args)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)

    extra: dict[str, Any] = {"resumed_from": checkpoint, "global_step": trainer.state.global_step,
                             "bf16": training_args.bf16,
                             "log_history": trainer.state.log_history}
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if script_args.export_gguf:
            extra["gguf"] = export_merged_gguf(model, base_gguf,
                                               Path(training_args.output_dir) / "model.gguf",
                                               script_args.gguf_qtype)
        write_card(trainer, script_args, model_args, report, extra)
        if script_args.merge_adapter:
            merged = Path(training_args.output_dir) / "merged"
            model.merge_and_unload().save_pretrained(merged)
            tokenizer.save_pretrained(merged)
    if training_args.push_to_hub:
        try:
            trainer.push_to_hub(dataset_name=script_args.dataset_name)
        except (HfHubHTTPError, OfflineModeIsEnabled) as exc:
            raise LbiError(f"push to the Hub failed: {exc}\nThe model is saved in "
                           f"{training_args.output_dir}; push it later with "
                           f"`hf upload {training_args.hub_model_id} "
                           f"{training_args.output_dir}`.") from None
    if hasattr(trainer, "end"):
        trainer.end()


def make_parser() -> TrlParser:
    return TrlParser((LbiScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = make_parser().parse_args_and_config()
    except (ValueError, OSError) as exc:  # an unknown flag, a missing or broken --config
        raise SystemExit(f"error: {exc}") from None
    try:
        main(*args)
    except LbiError as exc:
        raise SystemExit(f"error: {exc}") from None
