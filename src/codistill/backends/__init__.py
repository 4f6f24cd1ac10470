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
    ContextSizeError,
    Generator,
    PromptMode,
    SamplingParams,
    Usage,
    truncate_at_stop,
)

__all__ = [
    "BackendUnavailableError",
    "ContextSizeError",
    "Generator",
    "PromptMode",
    "SamplingParams",
    "Usage",
    "truncate_at_stop",
    "make_generator",
    "backend_kind",
    "backend_options",
    "check_backend_options",
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


def backend_kind(kind: str) -> str:
    """The canonical name of a backend kind or alias, or a ValueError listing the valid ones."""
    key = _ALIASES.get(str(kind).lower(), str(kind).lower()) if isinstance(kind, str) else None
    if key not in _BACKENDS:
        raise ValueError(
            f"unknown backend {kind!r}; choose one of {', '.join(KINDS)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


def backend_options(kind: str) -> dict[str, bool] | None:
    """The keyword arguments a backend's constructor takes (name -> required), read from its source
    so that checking a config imports neither torch nor llama_cpp; None if they cannot be read."""
    import ast
    import importlib.util
    from pathlib import Path

    module_name, class_name = _BACKENDS[backend_kind(kind)]
    try:
        spec = importlib.util.find_spec(module_name)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, AttributeError, OSError, SyntaxError, TypeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    a = item.args
                    pos = a.posonlyargs + a.args
                    required = [len(pos) - len(a.defaults) > i for i in range(len(pos))]
                    out = {arg.arg: req for arg, req in zip(pos, required)}
                    out.update({arg.arg: d is None for arg, d in zip(a.kwonlyargs, a.kw_defaults)})
                    out.pop("self", None)
                    return out
    return None


def check_backend_options(kind: str, options: dict, set_by_caller: tuple[str, ...] = (),
                          what: str = "backend option") -> None:
    """ValueError unless every key of ``options`` is a setting of backend ``kind`` (and none of
    ``set_by_caller``, the settings the caller passes itself); names the allowed ones."""
    names = backend_options(kind)
    if names is None:
        return
    key = backend_kind(kind)
    taken = [k for k in options if k in set_by_caller]
    if taken:
        raise ValueError(f"{what} {', '.join(map(repr, taken))} of backend {key!r} is set by codistill itself "
                         "(use the setting of the same name instead)")
    unknown = [k for k in options if k not in names]
    if unknown:
        allowed = [n for n in names if n not in set_by_caller]
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))} for backend {key!r}; "
                         f"allowed: {', '.join(allowed)}")
    missing = [n for n, req in names.items() if req and n not in options and n not in set_by_caller]
    if missing:
        raise ValueError(f"backend {key!r} needs the {what} {', '.join(missing)}"
                         + (" (e.g. base_url=http://127.0.0.1:8000/v1)" if "base_url" in missing else ""))


def make_generator(kind: str, **cfg) -> Generator:
    """Build a generator of ``kind`` ("hf", "openai", "llamacpp" or an alias) from keyword config.

    The backend's module (and its heavy imports) is loaded only here. An argument the backend
    does not take (or a required one missing) is a ValueError naming the allowed ones.
    """
    key = backend_kind(kind)
    check_backend_options(key, cfg, what="setting")
    module_name, class_name = _BACKENDS[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**cfg)
