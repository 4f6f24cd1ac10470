"""PPL(y | x, z) under a scorer model, rendered as the student sees x and z in training.

**What is scored.** The training example of (x, z, y) in the student's format
(:mod:`codistill.formats`): the prompt is the format's prompt for the statement x
(:meth:`~codistill.formats.StudentFormat.render_prompt`, through the chat template in a chat
format), the target is the answer's sections laid out as training lays them out
(:func:`codistill.training.data.render_target`, fields cleaned by ``clean_field``: z in the
context section, y in the code section, the row's tests where the format has them), cut after the
code section (what follows the code cannot change its probabilities). The perplexity is
``exp(-mean log p)`` over y's tokens only: the target tokens that overlap y's characters, found
with the tokenizer's offset mapping exactly as the trainer's ``code_mask`` (a token straddling
the fence counts as code). z is scored whole: training's ``max_length`` truncation is not applied.

**How.** The scorer is built with :func:`codistill.backends.make_generator` (``prompt_mode=
"completion"``: the prompt text is already rendered, as evaluation sends a format's prompts) and
must declare ``Capabilities.score``; its ``score(prompts, continuations)`` gives the per-token
log-probs. Before the first score, the prompt ids the backend makes are compared with the
format's (:meth:`~codistill.formats.StudentFormat.prompt_ids`, training's), and the continuation's
ids with the training target's prefix; a difference is an error, not a silently different PPL.

**Cache** (``<cache_dir>/scores.jsonl``): by sha256 of (the scorer's identity: backend, model,
adapter, dtype, revision; the format; the rendered user turn; the rendered answer through the
code section; :data:`SCORE_VERSION`). The chat template is the scorer's, so the identity and the
format stand for it, and a cached score needs no tokenizer or model: a resumed run loads neither
unless something is left to score. The student's own plans (``draft: student``) are cached there
too, keyed by the same identity, the prompt and the sampling settings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from pathlib import Path
from typing import Any

from codistill.store import JsonlAppender, read_jsonl, sha256_json

__all__ = ["SCORE_VERSION", "ScoreCache", "Scorer", "layout", "plan_from_answer"]

log = logging.getLogger(__name__)

SCORE_VERSION = 1


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _data_config(fmt):
    from codistill.training.config import DataConfig

    return DataConfig(**fmt.data_fields(), format_name=fmt.name, stop_after_code=fmt.stop_after_code)


def _code_section(fmt) -> str:
    return next(s for s in fmt.sections if "{code}" in s)


def layout(fmt, x: str, z: str, y: str, tests: str = "") -> tuple[str, str, tuple[int, int]]:
    """``(user turn, answer through the code section, y's character span in it)`` of (x, z, y)."""
    from codistill.training.data import clean_field, render_target

    dcfg = _data_config(fmt)
    fields = {"context": clean_field(z), "code": clean_field(y), "tests": clean_field(tests)}
    if not fields["code"]:
        raise ValueError("nothing to score: the reference code is empty")
    text, span = render_target(fields, dcfg)
    end = span[1] + len(_code_section(fmt).split("{code}")[1])
    return fmt.prompt_template.replace("{prompt}", x), text[:end], span


def plan_from_answer(fmt, answer: str) -> str:
    """The reasoning section of an answer written in ``fmt`` (a student's own plan): the text after
    the context section's header (its template's text before ``{context}``, when the answer holds
    it) up to where the next section's header or a code fence begins."""
    ctx = next((s for s in fmt.sections if "{context}" in s), None)
    if ctx is None:
        return ""
    head = ctx.split("{context}")[0]
    text = answer
    if head.strip() and head.strip() in text:
        text = text.split(head.strip(), 1)[1]
    cuts = [text.find("```")]
    for s in fmt.sections:
        if s is ctx:
            continue
        field = next(f for f in ("context", "code", "tests") if "{" + f + "}" in s)
        first = s.split("{" + field + "}")[0].split("\n")[0].strip()
        if first:
            cuts.append(text.find(first))
    cuts = [c for c in cuts if c >= 0]
    return text[:min(cuts)].strip() if cuts else text.strip()


class ScoreCache:
    """Scores and student plans by key, in an append-only JSONL file (thread-safe)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "scores.jsonl"
        self._d: dict[str, dict] = {}
        if self.path.exists():
            for r in read_jsonl(self.path, resumable=True):
                self._d[r["key"]] = r
        self._app: JsonlAppender | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._d.get(key)

    def put(self, rec: dict) -> None:
        with self._lock:
            if self._app is None:
                self._app = JsonlAppender(self.path)
            self._app.append(rec)
            self._d[rec["key"]] = rec

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class Scorer:
    """``ppl(x, [z...], y, tests) -> [ppl...]`` with the cache; the model is loaded on the first
    miss. One forward pass at a time (a lock: rows run in threads, the model is shared).
    ``counts``: ``passes`` (texts scored by the model), ``hits`` (scores from the cache),
    ``plans`` (student plans generated), ``plan_hits``."""

    def __init__(self, cfg, fmt, cache: ScoreCache):
        self.cfg, self.fmt, self.cache = cfg, fmt, cache  # ScorerConfig, StudentFormat
        self.counts = {"passes": 0, "hits": 0, "plans": 0, "plan_hits": 0}
        self._gen: Any = None
        self._lock = threading.Lock()
        self._checked_prompts: set[str] = set()

    # ------------------------------------------------------------------ the model
    def generator(self):
        if self._gen is None:
            from codistill.backends import make_generator

            c = self.cfg
            log.info("reverse: loading the scorer %s (%s)", c.resolved_model(), c.backend)
            gen = make_generator(c.backend, model=c.resolved_model(), **({"adapter": c.adapter} if c.adapter else {}),
                                 dtype=c.dtype, batch_size=c.batch_size, prompt_mode="completion", **c.options)
            if not gen.capabilities.score or not gen.capabilities.tokenizer:
                gen.close()
                raise ValueError(f"scorer backend {c.backend!r} cannot score continuations with a tokenizer "
                                 "(Capabilities.score, .tokenizer): use a local backend such as hf")
            self._gen = gen
        return self._gen

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    # ------------------------------------------------------------------ scores
    def key(self, x: str, z: str, y: str, tests: str = "") -> str:
        user, target, _ = layout(self.fmt, x, z, y, tests)
        return sha256_json({"scorer": self.cfg.identity(), "format": self.fmt.key(), "user": _sha(user),
                            "target": _sha(target), "version": SCORE_VERSION})

    def ppl(self, x: str, zs: list[str], y: str, tests: str = "") -> list[float]:
        """PPL(y | x, z) for each z (see the module docstring)."""
        keys = [self.key(x, z, y, tests) for z in zs]
        out: dict[str, float] = {}
        todo: dict[str, str] = {}
        with self._lock:
            for k, z in zip(keys, zs):
                hit = self.cache.get(k)
                if hit is not None:
                    out[k] = hit["ppl"]
                    self.counts["hits"] += 1
                else:
                    todo.setdefault(k, z)
            if todo:
                scored = self._score(x, list(todo.values()), y, tests)
                for k, (nll, n) in zip(todo, scored):
                    ppl = math.exp(nll / n)
                    self.cache.put({"key": k, "kind": "score", "nll_sum": nll, "n_tokens": n, "ppl": ppl})
                    out[k] = ppl
                self.counts["passes"] += len(todo)
        return [out[k] for k in keys]

    def _score(self, x: str, zs: list[str], y: str, tests: str) -> list[tuple[float, int]]:
        gen = self.generator()
        tok = gen.tokenizer
        prompt, _ = self.fmt.render_prompt(tok, x)
        self._check_prompt(gen, tok, x, prompt)
        conts, masks = [], []
        for z in zs:
            _, target, span = layout(self.fmt, x, z, y, tests)
            cont, mask = self._continuation(tok, target, span)
            conts.append(cont)
            masks.append(mask)
        lps = gen.score([prompt] * len(zs), conts)
        out = []
        for lp, mask in zip(lps, masks):
            if len(lp) != len(mask):
                raise RuntimeError(f"the scorer returned {len(lp)} log-probs for {len(mask)} continuation tokens")
            code = [v for v, m in zip(lp, mask) if m]
            out.append((-sum(code), len(code)))
        return out

    @staticmethod
    def _continuation(tok, target: str, span: tuple[int, int]) -> tuple[str, list[bool]]:
        """The answer text to score and, per token, whether it is y's: cut after the last code
        token when that cut keeps the tokenization of the whole target, else the whole target."""
        enc = tok(target, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        mask = [bool(e > span[0] and s < span[1]) for s, e in offsets]
        if not any(mask):
            raise ValueError("no token of the reference code in the scored text")
        last = max(i for i, m in enumerate(mask) if m)
        cut = target[:offsets[last][1]]
        if list(tok(cut, add_special_tokens=False)["input_ids"]) == ids[:last + 1]:
            return cut, mask[:last + 1]
        return target, mask

    def _check_prompt(self, gen, tok, x: str, prompt: str) -> None:
        if prompt in self._checked_prompts or not hasattr(gen, "encode_prompt"):
            return
        want = self.fmt.prompt_ids(tok, x)
        got = list(gen.encode_prompt(prompt))
        if got != want:
            raise ValueError(f"the scorer backend tokenizes the {self.fmt.name!r} prompt otherwise than training "
                             f"({len(got)} vs {len(want)} tokens): PPL would not be the student's view")
        self._checked_prompts.add(prompt)

    # ------------------------------------------------------------------ the student's own plan
    def plan(self, x: str, max_new_tokens: int) -> str:
        """The scorer's own answer to x in its format (greedy), cut to its reasoning section."""
        from codistill.backends import SamplingParams

        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens,
                                stop=tuple(self._plan_stops()))
        key = sha256_json({"scorer": self.cfg.identity(), "format": self.fmt.key(), "kind": "plan",
                           "user": _sha(self.fmt.prompt_template.replace("{prompt}", x)),
                           "params": params.model_dump(), "version": SCORE_VERSION})
        with self._lock:
            hit = self.cache.get(key)
            if hit is not None:
                self.counts["plan_hits"] += 1
                return hit["plan"]
            gen = self.generator()
            prompt, _ = self.fmt.render_prompt(gen.tokenizer, x)
            answer = gen.generate([prompt], params)[0][0]
            self.counts["plans"] += 1
            plan = plan_from_answer(self.fmt, answer)
            self.cache.put({"key": key, "kind": "plan", "answer": answer, "plan": plan})
        return plan

    def _plan_stops(self) -> list[str]:
        """Stop where the section after the reasoning begins (its header line), or at a code fence."""
        idx = next((i for i, s in enumerate(self.fmt.sections) if "{context}" in s), None)
        stops = ["```"]
        if idx is not None and idx + 1 < len(self.fmt.sections):
            s = self.fmt.sections[idx + 1]
            field = next(f for f in ("context", "code", "tests") if "{" + f + "}" in s)
            first = s.split("{" + field + "}")[0].split("\n")[0]
            if first.strip():
                stops.insert(0, self.fmt.section_separator + first)
        return stops
