"""In-process llama.cpp backend through ``llama_cpp`` (llama-cpp-python).

It runs the packaged GGUF files directly (no de-quantization): on 2 CPU cores the 1.5B teacher
decodes at ~10.6 tok/s here against 3.2 tok/s in transformers fp32 (shared/MODELS.md).

llama-cpp-python is not a dependency: it is source-only and the default build dies with SIGILL
on machines that report AMX but cannot use it. :data:`INSTALL_COMMAND` is the build that works;
the error raised when the module is missing repeats it.

Sampling matches the other backends: temperature 0 is greedy; otherwise temperature + top_p
only (llama.cpp's own top_k=40 / min_p=0.05 / repeat-penalty defaults are switched off).
"""

from __future__ import annotations

import os
from pathlib import Path

from codistill.backends.base import (
    Capabilities,
    BackendUnavailableError,
    ContextSizeError,
    Generator,
    PromptMode,
    SamplingParams,
    finish_text,
)

__all__ = ["LlamaCppGenerator", "INSTALL_COMMAND", "import_llama_cpp"]

INSTALL_COMMAND = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    "-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
    '-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" '
    'pip install "llama-cpp-python[server]==0.3.36"'
)


def import_llama_cpp():
    """Import ``llama_cpp`` or raise :class:`BackendUnavailableError` saying how to install it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise BackendUnavailableError(
            "the llamacpp backend needs llama-cpp-python, which is not installed. It builds from "
            "source (~6 min on 2 cores); on CPUs without AVX-512 drop the AVX512 flags. "
            f"Install it with:\n    {INSTALL_COMMAND}\n"
            "Or serve the GGUF with any OpenAI-compatible server and use the 'openai' backend."
        ) from e
    return llama_cpp


class LlamaCppGenerator(Generator):
    """Generate with llama.cpp in this process.

    Args:
        model: packaged short name (its GGUF is assembled if needed) or a ``.gguf`` path.
        n_ctx: context window in tokens.
        n_threads: CPU threads (default: :func:`codistill.cpu.default_threads`, the CPUs this
            process may use less those other processes keep busy now).
        n_batch: prompt-processing batch size.
        n_gpu_layers: layers to offload to a GPU build (0 = CPU).
        prompt_mode: "auto" (chat when the GGUF has a chat template) | "chat" | "completion".
        system_prompt: optional system message in chat mode.
    """

    name = "llamacpp"
    capabilities = Capabilities(local_weights=True)

    def __init__(
        self,
        model: str | os.PathLike,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        prompt_mode: PromptMode = "auto",
        system_prompt: str | None = None,
        verbose: bool = False,
    ):
        super().__init__()
        if prompt_mode not in ("auto", "chat", "completion"):
            raise ValueError(f"prompt_mode must be auto, chat or completion, got {prompt_mode!r}")
        llama_cpp = import_llama_cpp()
        from codistill import models

        text = os.fspath(model)
        path = models.gguf_path(text) if text in models.MODELS else Path(text).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise ValueError(f"llamacpp needs a packaged model name or a .gguf file, got {text!r}")
        from codistill.cpu import default_threads

        n_threads = default_threads(n_threads, what="llama.cpp threads")
        self.model_path = path
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=n_batch,
            n_gpu_layers=n_gpu_layers,
            verbose=verbose,
        )
        has_template = "tokenizer.chat_template" in (getattr(self.llm, "metadata", None) or {})
        if prompt_mode == "chat" and not has_template:
            raise ValueError(f"prompt_mode='chat' but {path.name} has no chat template")
        self.prompt_mode = "chat" if prompt_mode == "chat" or (
            prompt_mode == "auto" and has_template) else "completion"
        self.system_prompt = system_prompt

    def _sampling(self, params: SamplingParams, seed: int | None) -> dict:
        return dict(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p if not params.greedy else 1.0,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=list(params.stop),
            seed=seed,
        )

    def _complete(self, prompt: str, params: SamplingParams, seed: int | None) -> str:
        kw = self._sampling(params, seed)
        try:
            if self.prompt_mode == "completion":
                resp = self.llm.create_completion(prompt=prompt, **kw)
                text = resp["choices"][0]["text"]
            else:
                messages = [{"role": "user", "content": prompt}]
                if self.system_prompt is not None:
                    messages.insert(0, {"role": "system", "content": self.system_prompt})
                resp = self.llm.create_chat_completion(messages=messages, **kw)
                text = resp["choices"][0]["message"]["content"] or ""
        except ValueError as e:  # llama_cpp: "Requested tokens (N) exceed context window of M"
            if "exceed context window" in str(e):
                raise ContextSizeError(f"llama.cpp: {e}") from e
            raise
        usage = resp.get("usage") or {}
        self.usage.add(prompt_tokens=usage.get("prompt_tokens", 0),
                       completion_tokens=usage.get("completion_tokens", 0), requests=1)
        return finish_text(text, params)  # stop_on_loop: cut after the fact (same text, no time saved)

    def generate(self, prompts: list[str], params: SamplingParams | None = None) -> list[list[str]]:
        params = params or SamplingParams()
        out = []
        for p in prompts:
            if params.greedy:
                out.append([self._complete(p, params, params.seed)] * params.n)
            else:
                out.append([
                    self._complete(p, params, None if params.seed is None else params.seed + k)
                    for k in range(params.n)
                ])
        return out

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
