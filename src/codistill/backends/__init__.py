"""Generation backends behind one small interface, imported only when asked for.

>>> from codistill.backends import make_generator, SamplingParams
>>> gen = make_generator("hf", model="smollm2-135m", batch_size=8)          # doctest: +SKIP
>>> gen.generate(["def add(a, b):"], SamplingParams(max_new_tokens=32))     # doctest: +SKIP

Kinds: ``hf`` (transformers, optional LoRA adapter), ``openai`` (any OpenAI-compatible HTTP
server: vLLM, SGLang, llama.cpp server, Ollama, OpenAI), ``llamacpp`` (in-process llama.cpp),
``llama-server`` (a local llama.cpp server with parallel slots started for the run; LoRA adapters
converted to GGUF; the fastest way to evaluate on a CPU).
Importing this package imports neither torch, transformers, nor llama_cpp.
"""

from __future__ import annotations

import importlib

from codistill.backends.base import (
    BackendUnavailableError,
    Generator,
    PromptMode,
    SamplingParams,
    Usage,
    truncate_at_stop,
)

__all__ = [
    "BackendUnavailableError",
    "Generator",
    "PromptMode",
    "SamplingParams",
    "Usage",
    "truncate_at_stop",
    "make_generator",
    "KINDS",
]

# kind -> (module, class); aliases map onto the same entry
_BACKENDS = {
    "hf": ("codistill.backends.hf", "HFGenerator"),
    "openai": ("codistill.backends.openai_http", "OpenAIGenerator"),
    "llamacpp": ("codistill.backends.llamacpp", "LlamaCppGenerator"),
    "llama-server": ("codistill.backends.llama_server", "LlamaServerGenerator"),
}
_ALIASES = {
    "transformers": "hf",
    "huggingface": "hf",
    "openai_http": "openai",
    "http": "openai",
    "vllm": "openai",
    "sglang": "openai",
    "ollama": "openai",
    "llama.cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "llama_server": "llama-server",
    "llamacpp-server": "llama-server",
}
KINDS = tuple(_BACKENDS)


def make_generator(kind: str, **cfg) -> Generator:
    """Build a generator of ``kind`` ("hf", "openai", "llamacpp" or an alias) from keyword config.

    The backend's module (and its heavy imports) is loaded only here.
    """
    key = _ALIASES.get(kind.lower(), kind.lower())
    if key not in _BACKENDS:
        raise ValueError(
            f"unknown backend {kind!r}; choose one of {', '.join(KINDS)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    module_name, class_name = _BACKENDS[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**cfg)
