"""Convert a PEFT LoRA adapter into a GGUF LoRA adapter that llama.cpp applies at run time.

Why: on this 2-core CPU, llama.cpp decodes the 0.5B student at ~45 tok/s (one stream) and ~64 tok/s
(8 parallel slots), against ~8-15 tok/s for transformers fp32 batched (measured, see
benchmarks/generation_throughput.py). Evaluating each trained arm through llama.cpp is what makes
a base-vs-cd-vs-cd_sa comparison fit on a CPU. llama.cpp's own `convert_lora_to_gguf.py` is a
script in its git repository, not in any installed package, and it needs the base model's HF
folder and its `convert_hf_to_gguf.py` model classes; what it writes is small enough to write here
with the `gguf` package (tensor names from gguf's own name map, so nothing is spelled by hand):

- KV: ``general.architecture`` (that of the base GGUF), ``general.type = "adapter"``,
  ``adapter.type = "lora"``, ``adapter.lora.alpha``; llama.cpp scales each update by alpha / r.
- Tensors: for each adapted linear layer with GGUF name ``blk.N.attn_q.weight``, the pair
  ``blk.N.attn_q.weight.lora_a`` (PEFT ``lora_A``, torch shape [r, in]) and ``...lora_b``
  (``lora_B``, [out, r]), float32. In ggml order these are [in, r] and [r, out], which is what
  llama.cpp checks against the base weight [in, out].

Refused with a clear error (llama.cpp cannot express them): DoRA, ``modules_to_save``, per-module
rank/alpha patterns, bias training, and target modules without a GGUF name (embeddings/lm_head).
rsLoRA (scale alpha/sqrt(r)) is expressed by writing alpha·sqrt(r).

Correctness is tested against PEFT itself (tests/test_lora_gguf.py, slow): the same adapter
through transformers+peft and through llama.cpp gives the same greedy continuation, and a
different one from the base model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

__all__ = ["peft_to_gguf", "gguf_architecture", "cached_adapter_gguf", "LoraConversionError"]

CONVERTER_VERSION = 1


class LoraConversionError(ValueError):
    """The adapter cannot be expressed as a llama.cpp LoRA adapter."""


def gguf_architecture(base_gguf: str | Path) -> tuple[str, int]:
    """(architecture name, block count) read from a GGUF file's metadata."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = reader.fields["general.architecture"].contents()
    blocks = int(reader.fields[f"{arch}.block_count"].contents())
    return arch, blocks


def _adapter_files(adapter_dir: Path) -> tuple[dict, Path]:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise LoraConversionError(f"{adapter_dir} has no adapter_config.json: pass the folder that "
                                  "PEFT's save_pretrained wrote (e.g. RUN/adapter)")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise LoraConversionError(f"{adapter_dir} has no adapter_model.safetensors (a .bin adapter: "
                                  "load it with peft and save_pretrained it again with safetensors)")
    return json.loads(cfg_path.read_text()), weights


def _check_config(cfg: dict) -> float:
    """The alpha to write (llama.cpp scales by alpha / r)."""
    if cfg.get("peft_type", "LORA") != "LORA":
        raise LoraConversionError(f"only LoRA adapters convert, this is {cfg.get('peft_type')}")
    if cfg.get("use_dora"):
        raise LoraConversionError("DoRA adapters cannot be applied by llama.cpp; evaluate with --backend hf")
    if cfg.get("modules_to_save"):
        raise LoraConversionError(f"modules_to_save={cfg['modules_to_save']} (fully trained modules) cannot be "
                                  "expressed as a llama.cpp LoRA; evaluate with --backend hf")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise LoraConversionError("per-module rank/alpha patterns are not supported; evaluate with --backend hf")
    if cfg.get("bias", "none") != "none":
        raise LoraConversionError(f"bias={cfg['bias']!r}: trained biases cannot be expressed as a llama.cpp "
                                  "LoRA; evaluate with --backend hf")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    return alpha * math.sqrt(r) if cfg.get("use_rslora") else alpha


def peft_to_gguf(adapter_dir: str | Path, out_path: str | Path, base_gguf: str | Path) -> Path:
    """Write ``adapter_dir`` (a PEFT LoRA folder) as a GGUF LoRA adapter for ``base_gguf``."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    cfg, weights = _adapter_files(adapter_dir)
    alpha = _check_config(cfg)
    arch, blocks = gguf_architecture(base_gguf)
    try:
        arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    except StopIteration:
        raise LoraConversionError(f"gguf {gguf.__version__} does not know architecture {arch!r}") from None
    names = gguf.get_tensor_name_map(arch_enum, blocks)
    tensors = load_file(str(weights))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in tensors.items():
        for part, suffix in (("a", ".lora_A.weight"), ("b", ".lora_B.weight")):
            if key.endswith(suffix):
                module = key[: -len(suffix)]
                break
        else:
            raise LoraConversionError(f"unexpected tensor {key!r} in {weights}: only lora_A/lora_B weights convert")
        module = module.removeprefix("base_model.model.")
        gname = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if gname is None:
            raise LoraConversionError(f"no GGUF tensor name for module {module!r} ({arch}); llama.cpp LoRA covers "
                                      "linear layers inside the blocks only")
        pairs.setdefault(gname, {})[part] = arr
    if not pairs:
        raise LoraConversionError(f"{weights} holds no LoRA weights")
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for gname in sorted(pairs):
        pa = pairs[gname]
        if set(pa) != {"a", "b"}:
            raise LoraConversionError(f"{gname}: lora_A or lora_B missing in {weights}")
        a, b = pa["a"].astype(np.float32), pa["b"].astype(np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise LoraConversionError(f"{gname}: shapes A{a.shape} B{b.shape} are not a rank-r pair")
        writer.add_tensor(gname + ".lora_a", a)
        writer.add_tensor(gname + ".lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    return out_path


def cached_adapter_gguf(adapter_dir: str | Path, base_gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The GGUF form of ``adapter_dir``, converted once and cached by content hash."""
    from codistill.paths import cache_dir as default_cache

    adapter_dir = Path(adapter_dir)
    cfg, weights = _adapter_files(adapter_dir)
    h = hashlib.sha256()
    h.update(f"v{CONVERTER_VERSION}\n".encode())
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(str(Path(base_gguf).resolve()).encode())
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    folder = Path(cache_dir) if cache_dir else default_cache() / "lora-gguf"
    dest = folder / f"{h.hexdigest()[:24]}.gguf"
    if not dest.exists():
        peft_to_gguf(adapter_dir, dest, base_gguf)
    return dest
