"""What every generation backend looks like (after evalplus ``provider/base.py``).

A backend turns prompts into ``n`` completions each. This module imports nothing heavy: the
concrete backends (transformers, OpenAI-compatible HTTP, llama.cpp) import their libraries only
when constructed, through :func:`codistill.backends.make_generator`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

PromptMode = Literal["auto", "chat", "completion"]


class BackendUnavailableError(ImportError):
    """A backend's library is not installed; the message says how to install it."""


class ContextSizeError(RuntimeError):
    """The model cannot hold the request: the prompt does not fit its context window (a llama.cpp
    server without context shift answers HTTP 400 "the request exceeds the available context
    size"). Permanent for that prompt on that server: asking again gets the same answer, so a
    caller records the prompt as rejected instead of retrying it."""


class SamplingParams(BaseModel):
    """How to sample. ``temperature == 0`` means greedy (all ``n`` completions are then equal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(1, ge=1, description="completions per prompt")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(256, ge=1, description="tokens to generate at most")
    stop: tuple[str, ...] = Field((), description="cut each completion before the first of these")
    seed: int | None = Field(None, description="seed for sampling (reproducible given the same "
                             "prompts, params and batch size)")
    stop_on_loop: bool = Field(False, description="end an answer once it ends in a loop: the answer becomes "
                               "codistill.loops.cut_at_loop(full answer); see codistill.loops")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """``stop_on_loop`` is in dumps (cache keys) only when on, so keys made before it existed stay valid."""
        d = handler(self)
        if not self.stop_on_loop:
            d.pop("stop_on_loop", None)
        return d

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Usage:
    """Token accounting summed over a generator's life (thread-safe ``add``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, prompt_tokens: int = 0, completion_tokens: int = 0, requests: int = 0,
            retries: int = 0) -> None:
        with self._lock:
            self.prompt_tokens += int(prompt_tokens or 0)
            self.completion_tokens += int(completion_tokens or 0)
            self.requests += requests
            self.retries += retries

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "requests": self.requests,
            "retries": self.retries,
        }


def finish_text(text: str, params: SamplingParams) -> str:
    """A completion as every backend returns it: cut at the first stop string, then (``stop_on_loop``)
    where the loop stop cuts it (:func:`codistill.loops.cut_at_loop`)."""
    text = truncate_at_stop(text, params.stop)
    if params.stop_on_loop:
        from codistill.loops import cut_at_loop

        text = cut_at_loop(text)
    return text


def truncate_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """``text`` cut before the earliest occurrence of any stop string (unchanged if none)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


# why an answer ended: the model's end of sequence, a stop string, the token cap, the loop stop
# (codistill.loops), or -- where the server's protocol does not tell them apart -- a stop string or
# the end of sequence (OpenAI's finish_reason "stop" when stop strings were sent)
FINISH_REASONS = ("eos", "stop", "length", "loop", "stop_or_eos")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared by its class (callers read these, never probe with hasattr)."""

    score: bool = False  # teacher-forced log-probs (perplexity, token NLL): ``Generator.score``
    tokenizer: bool = False  # ``.tokenizer`` is the model's HF tokenizer
    adapter: bool = False  # applies a PEFT LoRA adapter given as ``adapter=``
    local_weights: bool = False  # the weights are on this machine (transformers can score them)
    concurrent: bool = False  # ``generate`` may be called from several threads at once (a server client)


class Generator(ABC):
    """A text generator: ``generate(prompts, params) -> [[completion] * params.n] per prompt``.

    Completions are the generated text only (no prompt), already cut at the first stop string.
    Results come back in the order of ``prompts``.
    """

    name: str = "generator"
    capabilities: Capabilities = Capabilities()

    def __init__(self) -> None:
        self.usage = Usage()

    @abstractmethod
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[str]]:
        """``params.n`` completions for each prompt, in prompt order."""

    def generate_detailed(self, prompts: list[str], params: SamplingParams) -> list[list[tuple[str, str | None]]]:
        """:meth:`generate`'s completions each with why it ended (one of :data:`FINISH_REASONS`, or
        None where the backend does not say)."""
        return [[(text, None) for text in comps] for comps in self.generate(prompts, params)]

    def score(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Per-token log-probs of each continuation given its prompt (teacher-forced)."""
        raise NotImplementedError(f"backend {self.name!r} cannot score continuations")

    def close(self) -> None:
        """Release resources (threads, model memory). Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
