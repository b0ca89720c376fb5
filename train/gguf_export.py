"""Fold a trained LoRA adapter into the GGUF it was trained from, for serving with llama.cpp.

Every tensor, tokenizer and chat template of the base GGUF is copied; only the weights the adapter
touches are replaced by ``base + delta``, requantized (Q8_0 by default). Before a tensor is
replaced, its dequantized GGUF value is compared with the weight transformers trained on (both
come from the same file): that proves the name mapping, and finds the row permutation llama.cpp
applies to the query/key weights of some architectures (llama), which the delta then gets too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lbi.errors import LbiError
from lbi.io import atomic_path

log = logging.getLogger(__name__)


def _rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's interleaving of query/key rows for rotary embeddings."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents() if key in reader.fields else None


def lora_deltas(model: Any, adapter: str = "default") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{transformers module name: (base weight, LoRA delta)}`` of a peft model (fp32 numpy)."""
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            base = module.get_base_layer().weight.detach().float().cpu().numpy()
            delta = module.get_delta_weight(adapter).detach().float().cpu().numpy()
            deltas[name.removeprefix("base_model.model.")] = (base, delta)
    if not deltas:
        raise LbiError("the model has no LoRA layers to export")
    return deltas


def export_merged_gguf(model: Any, base_gguf: Path, out: Path, qtype: str = "Q8_0",
                       adapter: str = "default") -> dict[str, Any]:
    """Write ``out``: ``base_gguf`` with the adapter of ``model`` merged in. Returns a summary."""
    import gguf

    quant = gguf.GGMLQuantizationType[qtype]
    reader = gguf.GGUFReader(base_gguf)
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    arch_ids = {name: arch_id for arch_id, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in arch_ids:
        raise LbiError(f"GGUF architecture {arch!r} is unknown to the gguf package")
    n_blocks = _field(reader, f"{arch}.block_count")
    heads = {_field(reader, f"{arch}.attention.head_count"),
             _field(reader, f"{arch}.attention.head_count_kv")} - {None}
    names = gguf.get_tensor_name_map(arch_ids[arch], n_blocks)
    tensors = {t.name: t for t in reader.tensors}

    replaced: dict[str, np.ndarray] = {}
    for module, (base, delta) in lora_deltas(model, adapter).items():
        gguf_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name not in tensors:
            raise LbiError(f"{module}: no tensor {gguf_name!r} in {base_gguf.name}")
        tensor = tensors[gguf_name]
        original = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        if original.shape != base.shape:
            raise LbiError(f"{module}: trained weight {base.shape} != {gguf_name} "
                           f"{original.shape} in {base_gguf.name}: not the model's base GGUF")
        layouts = [lambda w: w] + [lambda w, h=h: _rope_permute(w, h) for h in heads
                                   if base.shape[0] % (2 * h) == 0]
        for layout in layouts:
            if np.allclose(layout(base), original, rtol=1e-4, atol=1e-5):
                break
        else:
            raise LbiError(f"{module}: the trained weight does not match {gguf_name} in "
                           f"{base_gguf.name}; this architecture's layout is not supported")
        replaced[gguf_name] = gguf.quants.quantize(original + layout(delta), quant)

    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # written by GGUFWriter itself
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
        for tensor in reader.tensors:
            data = replaced.get(tensor.name, tensor.data)
            kind = quant if tensor.name in replaced else tensor.tensor_type
            writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(replaced.get(tensor.name, tensor.data),
                                     tensor_endianess=reader.endianess)
        writer.close()
    log.info("wrote %s: %d of %d tensors merged (%s)", out, len(replaced), len(tensors), qtype)
    return {"path": str(out), "base": str(base_gguf), "merged_tensors": len(replaced),
            "tensors": len(tensors), "qtype": qtype}
