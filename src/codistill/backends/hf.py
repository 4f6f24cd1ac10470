"""transformers backend: local model (+ optional unmerged LoRA adapter), batched generation.

* The model is anything :func:`codistill.models.resolve_model` accepts (packaged short name,
  HF folder, ``.gguf`` file).
* A peft LoRA adapter is applied with ``PeftModel.from_pretrained`` and NOT merged, so the same
  base can be evaluated with and without it and the adapter stays a separate artifact.
* Prompts are tokenized one by one, sorted by length, and generated in left-padded batches of
  ``batch_size`` rows; results come back in the original order.
* Greedy when ``temperature == 0``; otherwise sampling with ``top_p`` (no top-k filter).
* Stop strings: a ``StoppingCriteria`` marks a row finished as soon as its generated text
  contains one (the batch ends when every row is finished), and the returned text is cut before
  the earliest stop string.
* ``stop_on_loop``: a second criterion (:class:`StopOnLoop`) ends a row whose text ends in a loop
  (:mod:`codistill.loops`); the text is then cut where the loop stop cuts it (token ids are those
  generated, past the cut).
* ``prompt_mode``: "chat" wraps each prompt as one user message through the tokenizer's chat
  template; "completion" feeds the text as is; "auto" picks chat when a template exists.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

if "torch" not in sys.modules:
    # Idle OpenMP threads spin by default. On a small machine shared with other processes (the
    # sandbox's workers, a second job) 2 spinning threads collapse: SmolLM2 batch-1 measured
    # 1.5 tok/s with 2 threads vs 11 tok/s with 1; PASSIVE gives 6.5 there and costs nothing
    # measurable when the machine is idle (~22 tok/s either way). Only a default: an explicit
    # OMP_WAIT_POLICY wins, and it can only act before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)

from codistill import models  # noqa: E402
from codistill.backends.base import (  # noqa: E402
    Capabilities,
    Generator,
    PromptMode,
    SamplingParams,
    finish_text,
    truncate_at_stop,
)

__all__ = ["HFGenerator", "StopOnLoop", "StopOnStrings"]


class StopOnStrings(StoppingCriteria):
    """Per-row stop: a row is done once the text generated after ``prompt_len`` holds a stop
    string. Only the last few tokens are decoded each step (enough to cover the longest stop)."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.prompt_len = prompt_len
        # a stop of m characters spans at most m tokens, plus slack for byte-fallback pieces
        self.window = max((len(s) for s in self.stop), default=0) + 4
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        rows = input_ids.shape[0]
        if self.done is None:
            self.done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        gen = input_ids[:, self.prompt_len:]
        if self.stop and gen.shape[1]:
            tail = gen[:, -self.window:].tolist()
            for i in range(rows):
                if not self.done[i]:
                    text = self.tokenizer.decode(tail[i], skip_special_tokens=True)
                    if any(s in text for s in self.stop):
                        self.done[i] = True
        return self.done.clone()


class StopOnLoop(StoppingCriteria):
    """Per-row stop once the generated text ends in a loop (:class:`codistill.loops.LoopWatch`):
    every ``every_tokens`` steps the rows still running are decoded and watched."""

    def __init__(self, tokenizer, prompt_len: int, every_tokens: int = 16):
        self.tokenizer, self.prompt_len, self.every_tokens = tokenizer, prompt_len, every_tokens
        self.watches: list | None = None
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        from codistill.loops import LoopWatch

        rows = input_ids.shape[0]
        if self.done is None:
            self.done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
            self.watches = [LoopWatch() for _ in range(rows)]
        gen = input_ids[:, self.prompt_len:]
        if gen.shape[1] and gen.shape[1] % self.every_tokens == 0:
            for i, ids in enumerate(gen.tolist()):
                if not self.done[i] and self.watches[i].feed(self.tokenizer.decode(ids, skip_special_tokens=True)):
                    self.done[i] = True
        return self.done.clone()


class HFGenerator(Generator):
    """Generate with a transformers causal LM on CPU or GPU.

    Args:
        model: packaged short name, HF folder, or ``.gguf`` file (see ``models.resolve_model``).
        adapter: optional peft adapter folder, applied unmerged.
        dtype: "float32" (default; exact on CPU) or "bfloat16"/"float16".
        batch_size: rows per forward batch (a prompt with ``n`` samples takes ``n`` rows).
        prompt_mode: "auto" | "chat" | "completion".
        system_prompt: optional system message in chat mode (else the template's default).
        num_threads: torch intra-op threads; default: :func:`codistill.cpu.default_threads`
            (the physical cores this process may use, less those others keep busy now).
        device: "cpu", "cuda", ...; default cuda when available.
    """

    name = "hf"
    capabilities = Capabilities(score=True, tokenizer=True, adapter=True, local_weights=True)

    def __init__(
        self,
        model: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        dtype: str = "float32",
        batch_size: int = 8,
        prompt_mode: PromptMode = "auto",
        system_prompt: str | None = None,
        num_threads: int | None = None,
        device: str | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prompt_mode not in ("auto", "chat", "completion"):
            raise ValueError(f"prompt_mode must be auto, chat or completion, got {prompt_mode!r}")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        # torch defaults to the physical core count, which can exceed what a container lets this
        # process use; never oversubscribe, and do not inherit a lower count an earlier stage set
        from codistill.cpu import TORCH_ENV, default_threads

        torch.set_num_threads(default_threads(num_threads, physical=True, env_names=TORCH_ENV,
                                              what="torch threads"))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        conv_dtype = "bfloat16" if dtype == "bfloat16" else "float32"
        self.model_path = Path(models.resolve_model(model, dtype=conv_dtype))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
        if self.tokenizer.pad_token is None:
            fallback = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fallback is None:
                raise ValueError(f"tokenizer of {self.model_path} has no pad, eos or unk token")
            self.tokenizer.pad_token = fallback
        self.tokenizer.padding_side = "left"
        base = AutoModelForCausalLM.from_pretrained(
            str(self.model_path), dtype=getattr(torch, dtype)
        )
        self.adapter = Path(adapter) if adapter else None
        if self.adapter is not None:
            from peft import PeftModel

            base = PeftModel.from_pretrained(base, str(self.adapter), is_trainable=False)
        self.model = base.to(self.device).eval()
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if prompt_mode == "chat" and not has_template:
            raise ValueError(f"prompt_mode='chat' but the tokenizer of {self.model_path} has no "
                             "chat template; use prompt_mode='completion'")
        self.prompt_mode = "chat" if prompt_mode == "chat" or (
            prompt_mode == "auto" and has_template) else "completion"
        self.eos_ids = self._eos_ids()

    # ------------------------------------------------------------------ prompts

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        # the pad token ends a row too: Qwen pads with <|endoftext|>, which its chat models emit
        # at the end of a completion-mode answer; nothing useful ever follows a generated pad
        for x in ([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])) + [
            self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        ]:
            if x is not None and x not in ids:
                ids.append(int(x))
        return ids

    def format_prompt(self, prompt: str) -> str:
        """The text the model sees for ``prompt`` (chat template applied in chat mode)."""
        if self.prompt_mode == "completion":
            return prompt
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` as generation sees it."""
        text = self.format_prompt(prompt)
        # the chat template writes its own special tokens; plain prompts get the tokenizer's, unless
        # the text was rendered through the chat template already (a student format's prompt)
        bos = self.tokenizer.bos_token
        rendered = bool(bos) and text.startswith(bos)
        ids = self.tokenizer(text, add_special_tokens=self.prompt_mode == "completion" and not rendered)["input_ids"]
        return list(ids)

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: list[str], params: SamplingParams | None = None) -> list[list[str]]:
        return [[text for _, text, _ in rows] for rows in self._run(prompts, params)]

    def generate_detailed(self, prompts: list[str], params: SamplingParams | None = None):
        """:meth:`generate` with why each answer ended (``eos``, ``stop``, ``loop``, ``length``)."""
        return [[(text, why) for _, text, why in rows] for rows in self._run(prompts, params)]

    def generate_tokens(self, prompts: list[str], params: SamplingParams | None = None
                        ) -> list[list[list[int]]]:
        """Like :meth:`generate` but the generated token ids (cut at end-of-sequence, not at
        stop strings), for exact comparisons and token counts."""
        return [[ids for ids, _, _ in rows] for rows in self._run(prompts, params)]

    def _run(self, prompts: list[str], params: SamplingParams | None
             ) -> list[list[tuple[list[int], str, str | None]]]:
        params = params or SamplingParams()
        if not prompts:
            return []
        encoded = [self.encode_prompt(p) for p in prompts]
        if any(not e for e in encoded):
            raise ValueError("empty prompt after tokenization (the model needs at least 1 token)")
        # greedy: one row per prompt, copied n times; sampling: n independent rows per prompt
        reps = 1 if params.greedy else params.n
        rows = [(pi, r) for pi in range(len(prompts)) for r in range(reps)]
        # longest first (stable): similar lengths share a batch, so little padding
        order = sorted(range(len(rows)), key=lambda k: -len(encoded[rows[k][0]]))
        outs: list[tuple[list[int], str, str | None] | None] = [None] * len(rows)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if params.seed is not None:  # seed locally; the caller's RNG state is left alone
                stack.enter_context(torch.random.fork_rng(
                    devices=[] if self.device.type == "cpu" else None))
                torch.manual_seed(params.seed)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                got = self._generate_batch([encoded[rows[k][0]] for k in chunk], params)
                for k, out in zip(chunk, got):
                    outs[k] = out
        result: list[list[tuple[list[int], str, str | None]]] = [[] for _ in prompts]
        for (pi, _), out in zip(rows, outs):
            result[pi].append(out)  # type: ignore[arg-type]
        if reps == 1 and params.n > 1:
            result = [r * params.n for r in result]
        return result

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams
                        ) -> list[tuple[list[int], str, str | None]]:
        input_ids, attention_mask = self._left_pad(batch)
        prompt_len = input_ids.shape[1]
        criteria = StoppingCriteriaList()
        if params.stop:
            criteria.append(StopOnStrings(self.tokenizer, params.stop, prompt_len))
        if params.stop_on_loop:
            criteria.append(StopOnLoop(self.tokenizer, prompt_len))
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids or None,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          top_k=0)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            stopping_criteria=criteria,
            **kwargs,
        )
        results = []
        eos = set(self.eos_ids)
        n_completion = 0
        for row in out[:, prompt_len:].tolist():
            cut = next((j for j, t in enumerate(row) if t in eos), None)
            ids = row if cut is None else row[:cut]
            n_completion += len(ids) + (0 if cut is None else 1)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append((ids, finish_text(text, params), _why_ended(text, ids, cut is not None, params)))
        self.usage.add(prompt_tokens=sum(len(b) for b in batch), completion_tokens=n_completion,
                       requests=len(batch))
        return results

    # ------------------------------------------------------------------ scoring

    def score(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Teacher-forced log-probs (natural log) of each continuation token given its prompt.

        The prompt is formatted as in :meth:`generate` (chat template in chat mode); the
        continuation is tokenized on its own (no special tokens) and appended. Returns one list
        per pair with one float per continuation token.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = []
        for p, c in zip(prompts, continuations):
            p_ids = self.encode_prompt(p)
            if not p_ids:
                if self.tokenizer.bos_token_id is None:
                    raise ValueError("empty prompt and no BOS token: nothing to condition on")
                p_ids = [self.tokenizer.bos_token_id]
            c_ids = list(self.tokenizer(c, add_special_tokens=False)["input_ids"])
            pairs.append((p_ids, c_ids))
        out: list[list[float] | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda k: -(len(pairs[k][0]) + len(pairs[k][1])))
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                seqs = [pairs[k][0] + pairs[k][1] for k in chunk]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for i, s in enumerate(seqs):  # right padding: positions need no adjustment
                    ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
                    mask[i, :len(s)] = 1
                # the vocabulary projection only where a continuation token is predicted: a full
                # [batch, width, vocab] logits tensor is 7.8 GB for 32 x 400 tokens of a 152k vocab
                hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
                head = self.model.get_output_embeddings()
                for i, k in enumerate(chunk):
                    p_len, c_len = len(pairs[k][0]), len(pairs[k][1])
                    if c_len == 0:
                        out[k] = []
                        continue
                    logits = head(hidden[i, p_len - 1:p_len + c_len - 1])
                    lp = torch.log_softmax(logits.float(), dim=-1)
                    tgt = ids[i, p_len:p_len + c_len].to(lp.device)
                    out[k] = lp.gather(-1, tgt[:, None])[:, 0].tolist()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.model = None
        self.tokenizer = None


def _why_ended(text: str, ids: list[int], eos: bool, params: SamplingParams) -> str | None:
    """Why a generated row ended, by the first event in its text: the loop stop (it cuts before
    the stop string it may run into), a stop string, the end of sequence (``eos``: an end token
    follows the text; a row a stopping criterion ended is padded with it, hence the order), the cap."""
    cut = truncate_at_stop(text, params.stop)
    if params.stop_on_loop:  # StopOnLoop ends a row where the loop stop fires (the padding after it reads as eos)
        from codistill.loops import loop_stop_point

        if loop_stop_point(cut) is not None:
            return "loop"
    if cut != text:
        return "stop"
    if eos:
        return "eos"
    return "length" if len(ids) >= params.max_new_tokens else None
