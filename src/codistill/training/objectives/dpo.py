"""DPO on chosen/rejected pairs (SuperCorrect's cross-model collaborative DPO, for code), in the
project's own training loop.

**Own loop, not TRL's ``DPOTrainer``** (TRL 1.16 read for this: ``trl/trainer/dpo_trainer.py``,
``dpo_config.py``). What decided it:

* the arms must be comparable: a DPO arm written by the same loop as the SFT arms gets the same
  checkpoints and exact resume (the data position is the step), the same ``train_log.jsonl`` /
  TensorBoard / progress lines, the same ``train_summary.json`` and, above all, the same adapter
  record (``codistill_format.json``) that ``eval`` checks the student format and token budget
  against. ``DPOTrainer`` is an HF ``Trainer``: its own checkpoint layout and resume, its own
  logs, no format record;
* the prompt must be tokenised exactly as SFT tokenises it (:meth:`codistill.formats.StudentFormat.
  prompt_ids`) and the shared prefix ``s<k`` once for both completions. TRL tokenises the prompt
  and each completion itself (``_prepare_dataset``) and offers no hook for either;
* the reference is the student the DPO starts from. TRL does the same thing for a peft model (the
  adapter disabled for a fresh adapter, a frozen "ref" copy of a pretrained one), so nothing is
  lost there; here it is explicit and tested;
* what TRL offers beyond this, its maintained loss variants, matters little here: the two used
  (``sigmoid`` and ``ipo``) are a few lines each, written below as TRL 1.16 writes them
  (``_compute_loss``: IPO on log-ratios averaged per completion token, as TRL confirmed with the
  IPO authors), and the logs carry TRL's names' quantities (rewards/chosen, rewards/rejected,
  rewards/margins, rewards/accuracies, logps). A new variant is one branch in :func:`dpo_loss`.

**Pairs** (``data.train_file``: the pairs stage's ``pairs.jsonl``, :mod:`codistill.pairs`): one
record per pair, ``{"id", "prompt", "prefix", "chosen", "rejected"}`` (+ ``difficulty``,
``format``, anything else, ignored): ``prompt`` is the problem statement; ``chosen`` and
``rejected`` are whole answers in the student format that both begin with ``prefix`` (the
student's own answer up to its first wrong step: the header and steps ``s<k``). A pair whose
answers do not both begin with its prefix is refused (:class:`PairError`, naming the pair and
where they part); so is a pair whose completions are equal or empty, and a pairs file laid out in
another student format than the run's.

**Tokens**: ``prompt ids`` (the format's, identical to SFT's for the same problem) + ``prefix ids``
(shared, tokenised once) + ``completion ids`` (chosen or rejected after the prefix, tokenised on
its own; + eos when the format ends with the code section and ``data.append_eos``, as an SFT target
does). The loss reads the completion tokens only: log π(prefix) is the same in both rows of a pair
and cancels in the margin anyway. A pair longer than ``data.max_length`` is dropped (counted).

**Loss** (per pair, β = ``dpo.beta``; ``log π`` summed over the completion tokens)::

    sigmoid: −log σ(β·[(log π_c − log π_ref_c) − (log π_r − log π_ref_r)])
    ipo:     ((log π_c − log π_ref_c)/n_c − (log π_r − log π_ref_r)/n_r − 1/(2β))²

Each micro-batch returns its share (sum over its pairs / the step's pairs, ``totals["examples"]``).

**Reference** = the student the DPO starts from, run without dropout and without gradient:

* a fresh adapter (LoRA B = 0, so the start *is* the base): the same model inside peft's
  ``disable_adapter()`` context;
* ``init_adapter`` (hsft+DPO, cd+DPO): disabling it would give the base, not the SFT student, so
  the reference is the adapter's starting weights, kept aside at setup and swapped in (tensor
  pointers, no copy) for the reference pass. This runs in one process or under DDP; FSDP and
  DeepSpeed shard the weights and are refused (:meth:`DPOObjective.sharding_problem`).

Reference log-probs do not change during training: they are computed once per pair, in the first
step that sees it, and kept (not saved: a resumed run recomputes them, identically).

**Logs** (``train_log.jsonl`` fields; validation records the same): ``dpo_loss``, ``reward_chosen``
/ ``reward_rejected`` (β·log-ratio, mean over pairs), ``reward_margin`` (their difference),
``reward_accuracy`` (share of pairs with chosen reward > rejected), ``logps_chosen`` /
``logps_rejected`` (policy, summed over completion tokens, mean over pairs), and ``beta``.

**Budget**: ``dpo.max_pairs`` (pairs taken by the order of sha256(seed:id), stable when pairs are
added) and the loop's ``epochs`` / ``max_steps``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from codistill.training.config import DataConfig, TrainConfig
from codistill.training.data import IGNORE_INDEX, difficulty_bucket, split_train_val, student_format
from codistill.training.objectives.base import Objective, forward_at_targets

__all__ = ["DPOObjective", "PairCollator", "PairError", "PairExample", "build_pair_example", "build_pair_examples",
           "dpo_loss", "load_pairs", "sequence_logps"]

PAIR_FIELDS = ("id", "prompt", "prefix", "chosen", "rejected")


class PairError(ValueError):
    """A pair that cannot be trained on as given (named, with what is wrong)."""


@dataclass
class PairExample:
    """One tokenised pair: ``shared`` = prompt ids + prefix ids; ``chosen`` / ``rejected`` = the
    completion ids after it. ``key``: a number unique in the run (the reference cache's key)."""

    id: str
    key: int
    shared: list[int]
    chosen: list[int]
    rejected: list[int]
    prompt_len: int = 0
    difficulty: str | None = None
    bucket: str = "unknown"
    weight: float = 1.0

    def rows(self) -> tuple[list[int], list[int]]:
        return self.shared + self.chosen, self.shared + self.rejected


@dataclass
class PairStats:
    total: int = 0
    kept: int = 0
    dropped_too_long: int = 0
    over_budget: int = 0
    dropped_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"pairs": self.total, "kept": self.kept, "dropped_too_long": self.dropped_too_long,
                "over_budget": self.over_budget, "dropped_ids": self.dropped_ids[:20]}


# ---------------------------------------------------------------------- reading and checking pairs
def load_pairs(path: str | Path) -> list[dict]:
    """The pair records of a JSONL file; a record without the string fields of
    :data:`PAIR_FIELDS` is an error naming it."""
    from codistill.store import read_jsonl

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} not found: give the pairs stage's pairs.jsonl as data.train_file")
    records, problems = [], []
    for i, row in enumerate(read_jsonl(path)):
        missing = [k for k in PAIR_FIELDS if not isinstance(row.get(k), str)]
        if missing:
            problems.append(f"record {i} (id={row.get('id')!r}) lacks {missing}")
        records.append(row)
    if problems:
        raise PairError(f"{path}: {len(problems)} record(s) are not pairs: {'; '.join(problems[:5])}. Each needs "
                        f"string fields {', '.join(PAIR_FIELDS)} (chosen and rejected are whole answers that "
                        "begin with prefix)")
    return records


def completions(rec: dict) -> tuple[str, str]:
    """(chosen, rejected) after the pair's shared prefix; :class:`PairError` when the two answers
    do not both begin with it, or are equal or empty after it."""
    pid, prefix, chosen, rejected = rec.get("id"), rec["prefix"], rec["chosen"], rec["rejected"]
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.startswith(prefix):
            at = next((i for i, (a, b) in enumerate(zip(text, prefix)) if a != b), min(len(text), len(prefix)))
            other = rejected if name == "chosen" else chosen
            raise PairError(f"pair {pid!r}: the {name} answer does not begin with the pair's prefix (they part at "
                            f"character {at}: {name} {text[max(0, at - 20):at + 20]!r}, prefix "
                            f"{prefix[max(0, at - 20):at + 20]!r}); chosen and rejected must share the prefix "
                            f"(prompt + the student's steps before the first wrong one) exactly"
                            + ("" if other.startswith(prefix) else "; the other answer does not either"))
    c, r = chosen[len(prefix):], rejected[len(prefix):]
    if not c.strip() or not r.strip():
        raise PairError(f"pair {pid!r}: the {'chosen' if not c.strip() else 'rejected'} completion after the prefix "
                        "is empty")
    if c == r:
        raise PairError(f"pair {pid!r}: chosen and rejected are the same answer")
    return c, r


def ends_with_code(config: DataConfig) -> bool:
    """Whether the format's answer ends with its code section (then a completion ends with eos,
    as an SFT target does; otherwise generation stops at the next section and so does the pair)."""
    return "{code}" in config.target_sections[-1]


def build_pair_example(rec: dict, tokenizer: Any, config: DataConfig, key: int = 0, fmt: Any = None,
                       ) -> tuple[PairExample | None, str]:
    """Tokenise one pair: (example, "") or (None, "too_long"); :class:`PairError` when the pair
    is malformed (see :func:`completions`)."""
    chosen, rejected = completions(rec)
    fmt = fmt or student_format(tokenizer, config)
    prompt_ids = fmt.prompt_ids(tokenizer, rec["prompt"])  # identical to SFT's (training/data.py build_example)
    prefix_ids = list(tokenizer(rec["prefix"], add_special_tokens=False)["input_ids"]) if rec["prefix"] else []
    eos = [tokenizer.eos_token_id] if (config.append_eos and tokenizer.eos_token_id is not None
                                       and ends_with_code(config)) else []
    c_ids = list(tokenizer(chosen, add_special_tokens=False)["input_ids"]) + eos
    r_ids = list(tokenizer(rejected, add_special_tokens=False)["input_ids"]) + eos
    shared = prompt_ids + prefix_ids
    if len(shared) + max(len(c_ids), len(r_ids)) > config.max_length:
        return None, "too_long"
    return PairExample(id=str(rec["id"]), key=key, shared=shared, chosen=c_ids, rejected=r_ids,
                       prompt_len=len(prompt_ids), difficulty=None if rec.get("difficulty") in (None, "")
                       else str(rec["difficulty"])), ""


def _order(seed: int, pid: str) -> str:
    return hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()


def build_pair_examples(records: Sequence[dict], tokenizer: Any, config: DataConfig, *, max_pairs: int | None = None,
                        seed: int = 0) -> tuple[list[PairExample], PairStats]:
    """Tokenise the pairs (the first ``max_pairs`` by the order of sha256(seed:id) when given),
    in file order; difficulty buckets and weights as for SFT examples."""
    fmt = student_format(tokenizer, config)
    for rec in records:
        if rec.get("format") is not None and not fmt.same_as(rec["format"]):
            raise PairError(f"pair {rec['id']!r} was made in student format {rec['format'].get('name')!r}, but this "
                            f"run trains in {fmt.name!r} ({fmt.describe()}): make the pairs in the run's format")
    stats = PairStats(total=len(records))
    chosen_ids = None
    if max_pairs is not None and len(records) > max_pairs:
        chosen_ids = set(sorted((str(r["id"]) for r in records), key=lambda i: _order(seed, i))[:max_pairs])
        stats.over_budget = len(records) - max_pairs
    out = []
    for rec in records:
        if chosen_ids is not None and str(rec["id"]) not in chosen_ids:
            continue
        ex, reason = build_pair_example(rec, tokenizer, config, key=len(out), fmt=fmt)
        if ex is None:
            stats.dropped_too_long += 1
            stats.dropped_ids.append(str(rec["id"]))
            continue
        ex.bucket = difficulty_bucket(ex.difficulty, config.difficulty_map)
        ex.weight = float(config.difficulty_weights.get(ex.bucket, 1.0))
        out.append(ex)
    stats.kept = len(out)
    return out, stats


def pairs_format_record(examples: Sequence[PairExample], tokenizer: Any, config: DataConfig,
                        init_adapter: Path | None = None) -> dict:
    """``codistill_format.json`` of a DPO adapter: the format, and the token lengths of the chosen
    answers (prefix + chosen completion: what the student learns to write; the answers end where
    generation stops). Starting from an adapter trained in another format is refused; starting
    from one of this format, the longer of its generation lengths and these is kept (eval's budget
    guard reads them)."""
    import json

    from codistill.formats import FORMAT_FILE, StudentFormat, length_stats

    fmt = student_format(tokenizer, config)
    lengths = length_stats([len(ex.shared) - ex.prompt_len + len(ex.chosen) for ex in examples])
    record = {"format": fmt.model_dump(), "target_tokens": lengths, "generation_tokens": lengths,
              "examples": len(examples), "objective": "dpo"}
    path = Path(init_adapter) / FORMAT_FILE if init_adapter else None
    if path is not None and path.is_file():
        start = json.loads(path.read_text())
        trained = StudentFormat.model_validate(start["format"])
        if not trained.same_as(fmt):
            raise PairError(f"init_adapter {init_adapter} was trained in format {trained.name!r} "
                            f"({trained.describe()}), these pairs are in {fmt.name!r}: DPO continues a student "
                            "in the format it was trained in")
        for name in ("target_tokens", "generation_tokens"):
            if (start.get(name) or {}).get("p99", -1) > lengths.get("p99", -1):
                record[name] = start[name]
    return record


# ---------------------------------------------------------------------- tensors
class PairCollator:
    """Pairs → one micro-batch: rows ``[chosen_0 … chosen_{B−1}, rejected_0 … rejected_{B−1}]``,
    right-padded (input_ids with the pad id, attention_mask 0, labels −100 on the prompt, the
    prefix and the padding); ``pair_key`` [B] (the reference cache's key)."""

    def __init__(self, pad_token_id: int | None):
        self.pad = 0 if pad_token_id is None else int(pad_token_id)

    def __call__(self, pairs: Sequence[PairExample]) -> dict:
        rows = [p.rows()[0] for p in pairs] + [p.rows()[1] for p in pairs]
        starts = [len(p.shared) for p in pairs] * 2
        width = max(len(r) for r in rows)
        n = len(rows)
        ids = torch.full((n, width), self.pad, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        for i, (row, start) in enumerate(zip(rows, starts)):
            t = torch.tensor(row, dtype=torch.long)
            ids[i, :len(row)] = t
            attn[i, :len(row)] = 1
            labels[i, start:len(row)] = t[start:]
        return {"input_ids": ids, "attention_mask": attn, "labels": labels,
                "pair_key": torch.tensor([p.key for p in pairs], dtype=torch.long)}


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the log-probabilities of the target tokens per row, their count per row), fp32;
    ``logits[:, j]`` predicts ``labels[:, j]`` (already aligned)."""
    mask = labels != IGNORE_INDEX
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
    return -(nll * mask).sum(dim=1), mask.sum(dim=1)


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float,
             loss_type: str, n_c: torch.Tensor | None = None, n_r: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss from summed completion log-probs (policy and reference); ``n_c``/``n_r``:
    completion token counts (ipo)."""
    chosen, rejected = pi_c - ref_c, pi_r - ref_r
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * (chosen - rejected))
    if loss_type == "ipo":
        delta = chosen / n_c.clamp(min=1) - rejected / n_r.clamp(min=1)
        return (delta - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown DPO loss type {loss_type!r}: sigmoid | ipo")


# ---------------------------------------------------------------------- the objective
class DPOObjective(Objective):
    """DPO against the starting student; see the module docstring."""

    progress_fields = {"reward_margin": "margin", "reward_accuracy": "acc"}

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        if config.dpo is None:
            raise ValueError("the dpo objective needs TrainConfig.dpo (β, loss type, pairs budget)")
        self.settings = config.dpo
        self.start_weights: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None
        self.ref_cache: dict[int, tuple[float, float]] = {}

    def sharding_problem(self) -> str | None:
        if self.config.init_adapter is not None:
            return ("DPO from an init_adapter keeps the adapter's starting weights as the reference and swaps them "
                    "in; that runs in one process or under DDP, not with FSDP/DeepSpeed sharded weights")
        return None

    def data(self, tokenizer: Any) -> tuple[list, list, dict]:
        cfg = self.config
        if cfg.data.train_file is None:
            raise ValueError("data.train_file is not set: point it at the pairs stage's pairs.jsonl")
        records = load_pairs(cfg.data.train_file)
        examples, stats = build_pair_examples(records, tokenizer, cfg.data, max_pairs=self.settings.max_pairs,
                                              seed=cfg.seed)
        train_set, val_set = split_train_val(examples, cfg.data.val_fraction, cfg.seed)
        if not train_set:
            raise ValueError(f"no pairs left from {cfg.data.train_file} ({stats.as_dict()}): raise data.max_length "
                             "or check the pairs")
        record = pairs_format_record(examples, tokenizer, cfg.data, cfg.init_adapter)
        return train_set, val_set, stats.as_dict() | {"train": len(train_set), "val": len(val_set),
                                                      "format_record": record}

    def collator(self, tokenizer: Any):
        return PairCollator(tokenizer.pad_token_id)

    def setup(self, model: Any, tokenizer: Any, device: Any, total_steps: int) -> None:
        super().setup(model, tokenizer, device, total_steps)
        if self.config.init_adapter is not None:  # the starting adapter, before any step (or resume) moves it
            self.start_weights = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def counts(self, batch: dict) -> dict[str, int]:
        labels = batch["labels"]
        return {"tokens": int(batch["attention_mask"].sum()), "target_tokens": int((labels != IGNORE_INDEX).sum()),
                "examples": len(batch["pair_key"])}

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.settings.beta}

    # -- the reference ---------------------------------------------------------------------
    @contextlib.contextmanager
    def reference_weights(self, peft_model: Any):
        """The student the DPO started from: the adapter disabled (fresh adapter) or its starting
        weights swapped in (``init_adapter``)."""
        if self.start_weights is None:
            with peft_model.disable_adapter():
                yield
            return
        now = [p.data for p, _ in self.start_weights]
        try:
            for p, start in self.start_weights:
                p.data = start
            yield
        finally:
            for (p, _), data in zip(self.start_weights, now):
                p.data = data

    def reference_logps(self, model: Any, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π_ref of the chosen completions [B], of the rejected [B]), from the cache when every
        pair of the batch is there; else one reference pass (eval mode, no gradient)."""
        keys = batch["pair_key"].tolist()
        if not all(k in self.ref_cache for k in keys):
            inner = getattr(model, "module", model)  # DDP's wrapper: the peft model is inside
            was = inner.training
            inner.eval()
            try:
                with torch.no_grad(), self.reference_weights(inner):
                    _, logits, keep = forward_at_targets(inner, batch)
                    logps, _ = sequence_logps(logits, batch["labels"][:, keep + 1])
            finally:
                inner.train(was)
            ref_c, ref_r = logps.chunk(2)
            for k, c, r in zip(keys, ref_c.tolist(), ref_r.tolist()):
                self.ref_cache[k] = (c, r)
        device = batch["input_ids"].device
        vals = torch.tensor([self.ref_cache[k] for k in keys], dtype=torch.float32, device=device)
        return vals[:, 0], vals[:, 1]

    # -- the loss ---------------------------------------------------------------------------
    def loss(self, model: Any, batch: dict, step: int, totals: dict[str, int]) -> tuple[torch.Tensor, dict[str, float]]:
        ref_c, ref_r = self.reference_logps(model, batch)
        _, logits, keep = forward_at_targets(model, batch)
        logps, n_tok = sequence_logps(logits, batch["labels"][:, keep + 1])
        pi_c, pi_r = logps.chunk(2)
        n_c, n_r = n_tok.chunk(2)
        beta = self.settings.beta
        per_pair = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta, self.settings.loss_type, n_c, n_r)
        loss = per_pair.sum() / max(totals.get("examples") or len(pi_c), 1)
        with torch.no_grad():
            rc, rr = beta * (pi_c - ref_c), beta * (pi_r - ref_r)
            parts = {"dpo_sum": float(per_pair.sum()), "reward_chosen_sum": float(rc.sum()),
                     "reward_rejected_sum": float(rr.sum()), "correct": float((rc > rr).sum()),
                     "logps_chosen_sum": float(pi_c.sum()), "logps_rejected_sum": float(pi_r.sum())}
        return loss, parts

    def summarize(self, sums: dict[str, float], totals: dict[str, int]) -> dict[str, Any]:
        n = max(totals["examples"], 1)
        chosen, rejected = sums["reward_chosen_sum"] / n, sums["reward_rejected_sum"] / n
        return {"dpo_loss": sums["dpo_sum"] / n, "reward_chosen": chosen, "reward_rejected": rejected,
                "reward_margin": chosen - rejected, "reward_accuracy": sums["correct"] / n,
                "logps_chosen": sums["logps_chosen_sum"] / n, "logps_rejected": sums["logps_rejected_sum"] / n}
