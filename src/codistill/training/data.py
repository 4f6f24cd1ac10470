"""Training examples → token sequences for SFT with a structure-aware loss.

Input (from the teach stage): records ``{"id", "prompt", "context", "code", "tests",
"difficulty", "source"}`` in a JSONL file (optionally .gz) or a ``datasets`` folder written with
``save_to_disk`` (:func:`load_records` reads both).

One example is ``prompt ids + target ids``:

- **prompt** = the problem statement, through the tokenizer's chat template as one user turn with
  the generation prompt (``prompt_mode="chat"``, the default for tokenizers that have a
  template), or the statement verbatim, with a newline appended when it does not end in one
  (``"completion"``). :func:`format_prompt` is the one place this happens; evaluation must show
  the model the same text (the HF backend's chat ``format_prompt`` does the same for the same
  system prompt; in completion mode it passes the prompt verbatim, so give it the newline).
- **target** = the sections of ``DataConfig.target_sections`` joined by ``section_separator``,
  each filled with one field and left out when that field is empty. Default::

      ### Reasoning
      {context}

      ### Code
      ```python
      {code}
      ```

      ### Tests
      ```python
      {tests}
      ```

  followed by the eos token (``append_eos``). Fields are cleaned first: leading blank lines and
  trailing whitespace are removed (indentation of the first line is kept).
- **labels** = ``-100`` on the prompt (no loss), the token ids on the target.
- **code_mask** = True exactly on the target tokens that overlap the code field's characters,
  found with the tokenizer's offset mapping over the target text (needs a fast tokenizer).
  A token that straddles the code boundary (e.g. ``"\\n```"`` merged by BPE) counts as code; the
  fences and section headers otherwise do not.

Prompt and target are tokenised separately and concatenated (as TRL's prompt-completion format
does), so the boundary is exact and the prompt is byte-identical to what generation sees.

**Length** (``max_length``, prompt + target + eos): ``truncation="sections"`` (default) shortens
the tests first, then the context, by whole lines from the end (a section cut to nothing is left
out), never the prompt and never the code; an example whose prompt + code (with its fences)
alone is too long is dropped. ``"drop"`` drops every over-long example. Dropped and truncated
examples are counted in :class:`BuildStats`.

**Packing** is not offered. Packing several examples into one row would need per-example
attention (a causal mask per segment, or position-id resets with a varlen kernel) so examples do
not attend to each other, and the structure loss pools the code positions *per example*: the
packed row would need segment ids so that each example's code span is pooled and compared on its
own, and ``combined_loss`` would need the number of examples rather than rows. That is doable,
but on CPU the padding it saves is small next to its cost in complexity.

**Split** (:func:`split_train_val`): an example goes to validation when its place in the order of
``sha256(f"{seed}:{id}")`` falls in the first ``val_fraction`` of ids — deterministic, and stable
when other examples are added or the file is reordered.

**Difficulty**: raw labels are mapped to a bucket (easy, medium, hard, unknown; see
:func:`difficulty_bucket`); ``order="easy_first"`` sorts each epoch easy → hard (unknown with
medium, ties shuffled), ``"weighted"`` samples each epoch with replacement with probability
proportional to the bucket weight, which is also stored on the example as ``weight``. Weights are
not applied to the loss: per-example loss weights would break the normalisation by target tokens
and examples that gradient accumulation relies on.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codistill.training.config import DataConfig

IGNORE_INDEX = -100
REQUIRED_FIELDS = ("id", "prompt", "code")


# ---------------------------------------------------------------------- reading records
def load_records(path: str | Path) -> list[dict]:
    """Training records from a JSONL file (``.jsonl``/``.json``/``.gz``) or a ``datasets``
    folder saved with ``save_to_disk``. Missing optional fields get defaults; a record without
    ``id``, ``prompt`` or ``code`` is an error naming it."""
    path = Path(path)
    if path.is_dir():
        try:
            from datasets import load_from_disk
        except ImportError as e:
            raise ImportError("reading a datasets folder needs the `datasets` package: pip install 'codistill[ml]'") from e
        ds = load_from_disk(str(path))
        if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict
            split = "train" if "train" in ds else next(iter(ds.keys()))
            ds = ds[split]
        rows: Iterable[dict] = ds
    elif path.is_file():
        from codistill.store import read_jsonl

        rows = read_jsonl(path)
    else:
        raise FileNotFoundError(f"training data {path} not found: give a JSONL file or a datasets folder (save_to_disk) written by the teach stage")
    records = []
    problems = []
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED_FIELDS if not isinstance(row.get(k), str) or (k != "prompt" and not row.get(k))]
        if missing:
            problems.append(f"record {i} (id={row.get('id')!r}) lacks {missing}")
            continue
        records.append({
            "id": row["id"], "prompt": row["prompt"], "context": row.get("context") or "",
            "code": row["code"], "tests": row.get("tests") or "",
            "difficulty": None if row.get("difficulty") in (None, "") else str(row["difficulty"]),
            "source": row.get("source") or "",
        })
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"{path}: {len(problems)} record(s) are not training examples: {shown}. "
                         "Each needs string fields id, prompt and a non-empty code.")
    return records


# ---------------------------------------------------------------------- difficulty
_BUILTIN_BUCKETS = [
    (re.compile(r"^(very[ _-]?hard|medium[ _-]?hard|hard|competition|expert|difficult)$"), "hard"),
    (re.compile(r"^(medium|interview|intermediate|moderate)$"), "medium"),
    (re.compile(r"^(easy|introductory|beginner|basic|simple)$"), "easy"),
]


def difficulty_bucket(label: str | None, extra: dict[str, str] | None = None) -> str:
    """Bucket of a raw difficulty label: easy | medium | hard | unknown.

    Checked in order: ``extra`` (exact, case-insensitive); TACO/APPS/LeetCode names (EASY,
    MEDIUM, MEDIUM_HARD→hard, HARD, VERY_HARD→hard, introductory→easy, interview→medium,
    competition→hard, Easy/Medium/Hard); numbers as Codeforces-style ratings (< 1400 easy,
    < 2000 medium, else hard) or small levels (1 easy, 2 medium, ≥ 3 hard); anything else unknown.
    """
    if label is None:
        return "unknown"
    text = str(label).strip().lower()
    for key, bucket in (extra or {}).items():
        if key.strip().lower() == text:
            return bucket
    for pattern, bucket in _BUILTIN_BUCKETS:
        if pattern.match(text):
            return bucket
    try:
        value = float(text)
    except ValueError:
        return "unknown"
    if value >= 100:
        return "easy" if value < 1400 else "medium" if value < 2000 else "hard"
    if value <= 0:
        return "unknown"
    return "easy" if value < 2 else "medium" if value < 3 else "hard"


BUCKET_RANK = {"easy": 0, "medium": 1, "unknown": 1, "hard": 2}


# ---------------------------------------------------------------------- text layout
def student_format(tokenizer: Any, config: DataConfig):
    """The :class:`codistill.formats.StudentFormat` these data settings make for this tokenizer
    (``prompt_mode="auto"`` resolved): what the trainer stores with the adapter and what
    evaluation must use."""
    from codistill.formats import StudentFormat

    has_template = bool(getattr(tokenizer, "chat_template", None))
    if config.prompt_mode == "chat" and not has_template:
        raise ValueError("data.prompt_mode='chat' but the tokenizer has no chat template; use 'completion' or 'auto'")
    chat = config.prompt_mode == "chat" or (config.prompt_mode == "auto" and has_template)
    return StudentFormat(name=config.format_name, prompt_mode="chat" if chat else "completion",
                         prompt_template=config.prompt_template, system_prompt=config.system_prompt,
                         sections=list(config.target_sections), section_separator=config.section_separator,
                         stop_after_code=config.stop_after_code)


def format_prompt(tokenizer: Any, statement: str, config: DataConfig) -> tuple[str, bool]:
    """(prompt text, whether it is a chat-template prompt) for a problem statement: the format's
    :meth:`~codistill.formats.StudentFormat.render_prompt`, the same call evaluation makes."""
    return student_format(tokenizer, config).render_prompt(tokenizer, statement)


def clean_field(text: str | None) -> str:
    """Leading blank lines and trailing whitespace removed; first-line indentation kept."""
    if not text:
        return ""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


def render_target(fields: dict[str, str], config: DataConfig) -> tuple[str, tuple[int, int]]:
    """(target text, (start, end) character span of the code inside it).

    ``fields`` holds context, code and tests (already cleaned); sections whose field is empty
    are left out.
    """
    parts: list[str] = []
    pos = 0
    span = (0, 0)
    for section in config.target_sections:
        name = next(f for f in ("context", "code", "tests") if "{" + f + "}" in section)
        value = fields.get(name, "")
        if not value:
            continue
        if parts:
            parts.append(config.section_separator)
            pos += len(config.section_separator)
        before, after = section.split("{" + name + "}")
        if name == "code":
            span = (pos + len(before), pos + len(before) + len(value))
        text = before + value + after
        parts.append(text)
        pos += len(text)
    return "".join(parts), span


# ---------------------------------------------------------------------- examples
@dataclass
class SFTExample:
    """One tokenised example. ``labels`` is -100 on the prompt; ``code_mask`` True on code."""

    id: str
    input_ids: list[int]
    labels: list[int]
    code_mask: list[bool]
    difficulty: str | None = None
    bucket: str = "unknown"
    weight: float = 1.0
    truncated: bool = False

    @property
    def n_target(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BuildStats:
    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_empty_code: int = 0
    dropped_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dropped_ids"] = d["dropped_ids"][:20]
        return d


def _tokenize_target(tokenizer: Any, text: str, span: tuple[int, int]) -> tuple[list[int], list[bool]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = enc["offset_mapping"]
    start, end = span
    mask = [bool(e > start and s < end) for s, e in offsets]
    return ids, mask


def _shorten(text: str, keep_lines: int) -> str:
    return clean_field("\n".join(text.split("\n")[:keep_lines]))


def build_example(record: dict, tokenizer: Any, config: DataConfig, *, prompt_ids: list[int] | None = None,
                  ) -> tuple[SFTExample | None, str]:
    """Tokenise one record. Returns (example, "") or (None, reason) with reason
    ``"empty_code"`` or ``"too_long"``; a truncated example has ``truncated=True``."""
    if getattr(tokenizer, "is_fast", True) is False:
        raise ValueError("building code masks needs a fast tokenizer (offset mapping); load it with use_fast=True")
    fields = {k: clean_field(record.get(k)) for k in ("context", "code", "tests")}
    if not fields["code"]:
        return None, "empty_code"
    if prompt_ids is None:
        prompt_text, chat = format_prompt(tokenizer, record["prompt"], config)
        prompt_ids = list(tokenizer(prompt_text, add_special_tokens=not chat)["input_ids"])
    eos = [tokenizer.eos_token_id] if config.append_eos and tokenizer.eos_token_id is not None else []
    budget = config.max_length - len(prompt_ids) - len(eos)

    def encode(f: dict[str, str]) -> tuple[list[int], list[bool]]:
        text, span = render_target(f, config)
        return _tokenize_target(tokenizer, text, span)

    ids, mask = encode(fields)
    truncated = False
    if len(ids) > budget:
        if config.truncation == "drop":
            return None, "too_long"
        truncated = True
        for name in ("tests", "context"):
            if len(ids) <= budget or not fields[name]:
                continue
            lines = fields[name].split("\n")
            # binary search the most lines of this section that still fit
            lo, hi = 0, len(lines)
            best = None
            while lo <= hi:
                mid = (lo + hi) // 2
                trial = dict(fields, **{name: _shorten(fields[name], mid)})
                t_ids, t_mask = encode(trial)
                if len(t_ids) <= budget:
                    best, lo = (trial, t_ids, t_mask), mid + 1
                else:
                    hi = mid - 1
            if best is not None:
                fields, ids, mask = best
            else:
                fields = dict(fields, **{name: ""})
                ids, mask = encode(fields)
        if len(ids) > budget:
            return None, "too_long"
    input_ids = prompt_ids + ids + eos
    labels = [IGNORE_INDEX] * len(prompt_ids) + ids + eos
    code_mask = [False] * len(prompt_ids) + mask + [False] * len(eos)
    return SFTExample(id=str(record["id"]), input_ids=input_ids, labels=labels, code_mask=code_mask,
                      difficulty=record.get("difficulty"), truncated=truncated), ""


def build_examples(records: Sequence[dict], tokenizer: Any, config: DataConfig) -> tuple[list[SFTExample], BuildStats]:
    """Tokenise all records (see :func:`build_example`), attach difficulty buckets/weights."""
    stats = BuildStats(total=len(records))
    out = []
    for rec in records:
        ex, reason = build_example(rec, tokenizer, config)
        if ex is None:
            if reason == "too_long":
                stats.dropped_too_long += 1
            else:
                stats.dropped_empty_code += 1
            stats.dropped_ids.append(str(rec.get("id")))
            continue
        ex.bucket = difficulty_bucket(ex.difficulty, config.difficulty_map)
        ex.weight = float(config.difficulty_weights.get(ex.bucket, 1.0))
        stats.truncated += int(ex.truncated)
        out.append(ex)
    stats.kept = len(out)
    return out, stats


def format_record(records: Sequence[dict], tokenizer: Any, config: DataConfig) -> dict:
    """What the trainer stores with the adapter (``codistill_format.json``): the format, and the
    token lengths of the training targets — whole (``target_tokens``, with the eos) and up to
    where generation may stop at evaluation (``generation_tokens``: through the code section when
    the format stops after the code). Counted on the targets as the teacher wrote them (before
    any truncation to ``max_length``): that is what the student learns to write."""
    from codistill.formats import length_stats

    fmt = student_format(tokenizer, config)
    eos = 1 if config.append_eos and tokenizer.eos_token_id is not None else 0
    whole, until_stop = [], []
    for rec in records:
        fields = {k: clean_field(rec.get(k)) for k in ("context", "code", "tests")}
        if not fields["code"]:
            continue
        text, span = render_target(fields, config)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + eos
        end = fmt.answer_prefix_end(text, span)
        whole.append(n)
        until_stop.append(n if end >= len(text) else len(tokenizer(text[:end], add_special_tokens=False)["input_ids"]))
    return {"format": fmt.model_dump(), "target_tokens": length_stats(whole),
            "generation_tokens": length_stats(until_stop), "examples": len(whole)}


# ---------------------------------------------------------------------- split and order
def _hash01(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split_train_val(examples: Sequence[SFTExample], fraction: float, seed: int) -> tuple[list[SFTExample], list[SFTExample]]:
    """Hold out ``round(fraction · n)`` examples (≥ 1 when fraction > 0 and n ≥ 2), chosen by the
    order of ``sha256(seed:id)``. Examples sharing an id stay on the same side."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []
    ids = sorted({ex.id for ex in examples}, key=lambda i: _hash01(seed, i))
    n_val = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    val_ids = set(ids[:n_val])
    return [e for e in examples if e.id not in val_ids], [e for e in examples if e.id in val_ids]


def epoch_order(examples: Sequence[SFTExample], epoch: int, seed: int, order: str) -> list[int]:
    """Indices of ``examples`` for one epoch: a pure function of (examples, epoch, seed, order),
    so a resumed run sees the same sequence."""
    import random

    rng = random.Random(f"{seed}:{epoch}")
    n = len(examples)
    if order == "random":
        idx = list(range(n))
        rng.shuffle(idx)
        return idx
    if order == "easy_first":
        keys = [(BUCKET_RANK.get(ex.bucket, 1), rng.random()) for ex in examples]
        return sorted(range(n), key=lambda i: keys[i])
    if order == "weighted":
        weights = [max(ex.weight, 0.0) for ex in examples]
        if not any(weights):
            raise ValueError("order='weighted' but every example has weight 0: check data.difficulty_weights")
        return rng.choices(range(n), weights=weights, k=n)
    raise ValueError(f"unknown order {order!r}: random | easy_first | weighted")


class ExampleStream:
    """The infinite example sequence epoch 0, epoch 1, ...; ``batch(step)`` gives the examples
    of one optimizer step for one process, so the data position is just the step number.

    Step ``s`` uses positions ``[s·G, (s+1)·G)`` of the stream with ``G = micro · accum ·
    world``; process ``rank`` takes micro-batch ``m`` at ``s·G + (m·world + rank)·micro``.
    """

    def __init__(self, examples: Sequence[SFTExample], seed: int, order: str):
        if not examples:
            raise ValueError("no training examples left (all dropped?): check max_length and the data file")
        self.examples, self.seed, self.order = list(examples), seed, order
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def at(self, position: int) -> SFTExample:
        epoch, offset = divmod(position, len(self.examples))
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(self.examples, epoch, self.seed, self.order)}
        return self.examples[self._orders[epoch][offset]]

    def micro_batches(self, step: int, micro: int, accum: int, world: int = 1, rank: int = 0) -> list[list[SFTExample]]:
        start = step * micro * accum * world
        out = []
        for m in range(accum):
            first = start + (m * world + rank) * micro
            out.append([self.at(p) for p in range(first, first + micro)])
        return out


def steps_per_epoch(n_examples: int, micro: int, accum: int, world: int = 1) -> int:
    return max(1, math.ceil(n_examples / (micro * accum * world)))


# ---------------------------------------------------------------------- collation
class Collator:
    """Right-pads a list of examples into tensors: input_ids (pad id), attention_mask (0),
    labels (-100), code_mask (False). ``pad_to_multiple_of`` rounds the width up."""

    def __init__(self, pad_token_id: int | None, pad_to_multiple_of: int | None = None):
        self.pad = 0 if pad_token_id is None else int(pad_token_id)
        self.multiple = pad_to_multiple_of

    def __call__(self, examples: Sequence[SFTExample | dict]) -> dict:
        import torch

        rows = [e if isinstance(e, dict) else e.to_dict() for e in examples]
        width = max(len(r["input_ids"]) for r in rows)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        n = len(rows)
        ids = torch.full((n, width), self.pad, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        code = torch.zeros((n, width), dtype=torch.bool)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"], dtype=torch.long)
            attn[i, :k] = 1
            labels[i, :k] = torch.tensor(r["labels"], dtype=torch.long)
            code[i, :k] = torch.tensor(r["code_mask"], dtype=torch.bool)
        return {"input_ids": ids, "attention_mask": attn, "labels": labels, "code_mask": code}
