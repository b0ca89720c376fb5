"""Tokenizer and model loading for training: Hub ids, local folders, and GGUF files.

``local/<embedded name>`` and ``local/<path>.gguf`` (the model strings of the agent layer) load the
GGUF through transformers, which dequantizes it. Such a model still carries the GGUF quantizer,
which blocks saving and training, so it is dropped. The tokenizer converted from a GGUF (≈ 25 s)
is cached under ``$LBI_HOME/tokenizers``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lbi.agent.local import resolve_gguf
from lbi.agent.providers import is_embedded
from lbi.assets import lbi_home

log = logging.getLogger(__name__)


def gguf_source(model_name_or_path: str) -> Path | None:
    """The GGUF file a model string names, or None for a Hub id / transformers folder."""
    if is_embedded(model_name_or_path) or model_name_or_path.endswith(".gguf"):
        return resolve_gguf(model_name_or_path)
    return None


def load_tokenizer(model_name_or_path: str, revision: str = "main",
                   trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, with a pad token (the end-of-sequence token if it has none)."""
    from transformers import AutoTokenizer

    gguf = gguf_source(model_name_or_path)
    if gguf is None:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision,
                                                  trust_remote_code=trust_remote_code)
    else:
        stat = gguf.stat()
        cache = lbi_home() / "tokenizers" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
        if not (cache / "tokenizer_config.json").is_file():
            log.info("converting the tokenizer of %s (once; cached in %s)", gguf.name, cache)
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(cache)
        # Always the saved copy: the one converted in memory differs from it (its name_or_path
        # is the GGUF's folder, so a reload by name gets another tokenizer), and the first run
        # on a machine must behave like every later one.
        tokenizer = AutoTokenizer.from_pretrained(cache)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def drop_gguf_quantizer(model: Any) -> Any:
    """Make a GGUF-loaded (already dequantized) model a plain one that can be trained and saved."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def load_model(model_name_or_path: str, **init_kwargs: Any) -> Any:
    """A causal LM for training; ``init_kwargs`` go to ``from_pretrained`` (dtype, revision,
    quantization_config, device_map, attn_implementation, trust_remote_code)."""
    from transformers import AutoModelForCausalLM

    gguf = gguf_source(model_name_or_path)
    if gguf is None:
        return AutoModelForCausalLM.from_pretrained(model_name_or_path, **init_kwargs)
    if init_kwargs.get("quantization_config") is not None:
        log.warning("a GGUF is dequantized on load; quantizing it again with bitsandbytes")
    init_kwargs.pop("revision", None)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **init_kwargs)
    return drop_gguf_quantizer(model)
