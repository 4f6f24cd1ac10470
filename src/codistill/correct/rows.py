"""Step 3 of the correct stage: training rows from the kept corrections, in two variants, and their
mixes with the teach stage's context-distillation rows.

The layout follows LEMA (An et al., 2023, "Learning From Mistakes Makes LLM Better Reasoner",
arXiv:2310.20689; prompts at github.com/microsoft/LEMA): a correction example's *input* is the
question plus the inaccurate reasoning path, its *output* the correction (the incorrect step, the
explanation of the error, the correct solution); the model is fine-tuned on the ordinary CoT data
plus these examples, and at inference it is prompted with the question alone. So the student
learns to correct a mistake it is shown, never to narrate a mistake it did not make.

Every row has exactly the teach stage's keys (:data:`codistill.teacher.outputs.TRAIN_KEYS`:
``id, prompt, context, code, tests, difficulty, source``), so ``codistill train`` reads these files
as it reads ``train.jsonl`` (it renders ``prompt`` through the run's format as the user turn, never
truncates it: a row whose prompt and code do not fit ``max_length`` is dropped). ``id`` is
``<problem_id>#fix<k>`` (k: the student's sample), the same in both variants; ``code`` is the
corrected program (it passed the judge); ``tests`` the problem's tests as text.

**lema** (``train_lema.jsonl``): ``prompt`` is the statement and the student's failed attempt,
through the fixed template ``codistill/templates/lema_correction_prompt.txt`` (:func:`lema_prompt`)::

    <the problem statement>

    ### An attempt that fails the tests
    <the student's answer, as the teacher was shown it: cut to max_attempt_chars>

    ### Task
    Find the first incorrect step of the attempt above, explain the error, and write a corrected solution.

The attempt is the failure row's ``attempt`` (:func:`codistill.correct.attempts.failure_rows`: the
raw answer cut to ``max_attempt_chars``), the text the correction record answers (its ``row_hash``
covers it); the judge's report is not shown (LEMA's input is the question and the path). ``context``::

    ### Incorrect step
    <the first wrong step of the student's attempt, as the teacher quoted it>

    ### Explanation of the error
    <why it is wrong and how it led to the judge's failure>

    ### Corrected solution
    <the corrected solution's reasoning, in words>

**corrected-only** (``train_corrected_only.jsonl``, the ablation): ``prompt`` is the bare statement
(as every context-distillation row's), ``context`` only the last block of the lema context::

    ### Corrected solution
    <the corrected solution's reasoning, in words>

i.e. the same corrected solutions without the attempt, the error and its explanation: lema vs
corrected-only tests whether the error signal matters.

The student's answer layout (its format) wraps ``context`` as it wraps any context (``paper``:
``### Reasoning`` + context, ``### Code`` + code, ``### Tests`` + tests).

**Mixing** (``context_data`` given: ``train_cd_lema.jsonl``, ``train_cd_corrected_only.jsonl``):
every context-distillation row, in its order, then the chosen correction rows, in theirs.
``mix_ratio`` = correction rows per context-distillation row: with C context rows and K kept
corrections, ``wanted = floor(mix_ratio * C + 0.5)``; when ``wanted <= K``, ``wanted`` of them are
drawn without replacement by ``random.Random(mix_seed)``; when there are too few (``wanted > K``),
all K are used once (never repeated), a warning is logged and the manifest's ``mix`` records the
shortfall and the ratio achieved (K / C). ``mix_ratio`` None: all K. Both variants take the same
correction ids, so the ablation differs only in the prompt and the context.

**Length** (``max_row_tokens`` set; a recipe sets it to the correction arms' ``train.data.
max_length``): the trainer drops a row whose prompt + code cannot fit, and a lema prompt carries
the attempt, so it would drop lema rows whose corrected-only twins it keeps. An id whose row of
either variant could not fit (:mod:`codistill.correct.fit`) is left out of both variants and so of
both mixes (:func:`leave_out_too_long`; ``left_out_too_long`` in the manifest, the ids under
``rows.fit``); a failure whose lema prompt alone could not fit was never shown to the teacher
(:func:`codistill.correct.attempts.failure_rows`). Unset: no check, the rows as before.

**Resume**: the rows are written afresh from the kept records on every run of the stage (the
records and attempts are reused by their own keys, the teacher is not asked again).
:func:`rows_layout` names this layout (a version and the template's sha256); the recipe's stage
key holds it (:mod:`codistill.correct.recipe`), so a changed layout runs the stage again in the
same folder and re-writes the rows, and the manifest records it (``rows.layout``).
"""

from __future__ import annotations

import logging
import math
import random
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from codistill.store import read_jsonl, sha256_json, write_jsonl
from codistill.teacher.outputs import TRAIN_KEYS
from codistill.teacher.templates import render_context

__all__ = ["FILES", "LEMA_PROMPT_TEMPLATE", "VARIANTS", "corrected_only_context", "correction_rows", "lema_context",
           "lema_prompt", "leave_out_too_long", "mix_ids", "read_context_rows", "rows_layout", "write_rows"]

log = logging.getLogger("codistill.correct")

VARIANTS = ("lema", "corrected-only")
FILES = {"lema": "train_lema.jsonl", "corrected-only": "train_corrected_only.jsonl"}
MIX_FILES = {"lema": "train_cd_lema.jsonl", "corrected-only": "train_cd_corrected_only.jsonl"}
LEMA_SECTIONS = ("incorrect_step", "explanation", "reasoning")
LEMA_PROMPT_TEMPLATE = "lema_correction_prompt.txt"  # under codistill/templates
# 1: the bare statement as every row's prompt; 2: lema rows are prompted with the statement + the failed attempt
ROWS_VERSION = 2
_PLACEHOLDER = re.compile(r"\{(problem|attempt)\}")


@lru_cache(maxsize=1)
def _template() -> str:
    text = resources.files("codistill").joinpath("templates", LEMA_PROMPT_TEMPLATE).read_text()
    return text.rstrip("\n")


def rows_layout() -> str:
    """What names the rows' layout: :data:`ROWS_VERSION` and the lema prompt template's text (a
    stage key holds it, so a changed layout re-writes the rows)."""
    return sha256_json({"version": ROWS_VERSION, "lema_prompt": _template()})[:16]


def lema_prompt(statement: str, attempt: str) -> str:
    """The lema row's prompt: the statement and the failed attempt through the template, the
    two stripped as the teacher's template strips them (one pass: braces in either are kept)."""
    values = {"problem": statement.strip(), "attempt": attempt.strip("\n")}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template())


def lema_context(sections: dict) -> str:
    """Incorrect step, explanation of the error, corrected solution (see the module docstring)."""
    return render_context({k: sections.get(k) or "" for k in LEMA_SECTIONS}, "correction")


def corrected_only_context(sections: dict) -> str:
    """The corrected solution's block of :func:`lema_context`, alone."""
    return render_context({"reasoning": sections.get("reasoning") or ""}, "correction")


def correction_rows(records: list[dict], rows_by_id: dict) -> dict[str, list[dict]]:
    """Rows of both variants from the valid correction records (in record order); ``rows_by_id``:
    the failure rows the teacher was asked about (statement, tests, and the cut ``attempt``)."""
    out: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for rec in records:
        if not rec.get("valid"):
            continue
        row = rows_by_id[rec["id"]]
        if row.get("attempt") is None:
            raise ValueError(f"failure row {rec['id']!r} has no 'attempt': the lema prompt shows the failed attempt")
        base = {"id": rec["id"], "code": rec["code"], "tests": row.get("tests") or "",
                "difficulty": row.get("difficulty"), "source": row.get("source")}
        for variant, prompt, context in (
                ("lema", lema_prompt(row["prompt"], row["attempt"]), lema_context(rec["sections"])),
                ("corrected-only", row["prompt"], corrected_only_context(rec["sections"]))):
            full = {**base, "prompt": prompt, "context": context}
            out[variant].append({k: full[k] for k in TRAIN_KEYS})
    return out


def read_context_rows(path: str | Path) -> list[dict]:
    """The teach stage's training rows (``train.jsonl``, or the teach folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "train.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"context_data {path}: no such file (give the teach stage's train.jsonl or its folder)")
    rows = list(read_jsonl(p))
    bad = [i for i, r in enumerate(rows) if not all(k in r for k in ("id", "prompt", "code"))]
    if bad:
        raise ValueError(f"{p}: rows {bad[:5]} are not training rows (id, prompt, context, code, tests, ...)")
    return [{k: r.get(k) for k in TRAIN_KEYS} for r in rows]


def mix_ids(n_context: int, ids: list[str], ratio: float | None, seed: int) -> tuple[list[str], dict]:
    """(the correction ids to mix in, in their order; the arithmetic for the manifest)."""
    avail = len(ids)
    wanted = avail if ratio is None else math.floor(ratio * n_context + 0.5)
    if wanted <= avail:
        keep = set(random.Random(seed).sample(range(avail), wanted))
        chosen = [x for i, x in enumerate(ids) if i in keep]
    else:
        chosen = list(ids)
    info = {"mix_ratio": ratio, "seed": seed, "context_rows": n_context, "corrections_available": avail,
            "corrections_wanted": wanted, "corrections_used": len(chosen), "shortfall": max(0, wanted - avail),
            "achieved_ratio": round(len(chosen) / n_context, 6) if n_context else None}
    if info["shortfall"]:
        log.warning("correct: mix_ratio %s wants %d correction rows for %d context rows, only %d were kept: all %d "
                    "are used once (ratio %.3g)", ratio, wanted, n_context, avail, avail, info["achieved_ratio"] or 0)
    return chosen, info


def leave_out_too_long(variants: dict[str, list[dict]], fit) -> tuple[dict[str, list[dict]], dict]:
    """``variants`` without the ids of which a row of either variant could not fit ``fit.max_tokens``
    (:meth:`codistill.correct.fit.RowFit.fits`: the trainer would drop it), so both variants keep the
    same ids; and what the manifest records of it (the limit, the ids left out, the lema rows' fewest
    tokens)."""
    from codistill.formats import length_stats

    need = {v: {r["id"]: fit.row_tokens(r) for r in rs} for v, rs in variants.items()}
    out = {i for v in need.values() for i, n in v.items() if n is not None and n > fit.max_tokens}
    ids = [r["id"] for r in variants["lema"] if r["id"] in out]
    if ids:
        log.warning("correct: %d kept corrections are left out of both variants: a row of theirs needs more than "
                    "max_row_tokens %d tokens (e.g. %s)", len(ids), fit.max_tokens, ids[0])
    info = {"max_row_tokens": fit.max_tokens, "left_out_too_long": ids,
            "lema_row_tokens": length_stats([n for n in need["lema"].values() if n is not None])}
    return {v: [r for r in rs if r["id"] not in out] for v, rs in variants.items()}, info


def write_rows(cfg, out: Path, records: list[dict], rows_by_id: dict, fit=None) -> dict:
    """Write the variants (and their mixes when ``cfg.context_data`` is set); returns the counts,
    files, mix arithmetic and the rows' layout (with the prompts' lengths in characters) for the
    manifest. ``fit`` (:class:`codistill.correct.fit.RowFit`, when ``max_row_tokens`` is set): the
    ids whose rows could not fit are left out of both variants (:func:`leave_out_too_long`)."""
    from codistill.formats import length_stats

    variants = correction_rows(records, rows_by_id)
    fitted = None
    if fit is not None:
        variants, fitted = leave_out_too_long(variants, fit)
    info: dict = {"train_rows": {v: len(rs) for v, rs in variants.items()}, "files": {}, "mix": None,
                  "left_out_too_long": len(fitted["left_out_too_long"]) if fitted else 0,
                  "rows": {"layout": rows_layout(), "version": ROWS_VERSION,
                           "prompt_chars": {v: length_stats([len(r["prompt"]) for r in rs])
                                            for v, rs in variants.items()},
                           **({"fit": fitted} if fitted else {})}}
    for v, rs in variants.items():
        write_jsonl(out / FILES[v], rs)
        info["files"][v] = FILES[v]
    if cfg.context_data is not None:
        context = read_context_rows(cfg.context_data)
        clash = {r["id"] for r in context} & {r["id"] for r in variants["lema"]}
        if clash:
            raise ValueError(f"context_data holds ids of correction rows ({sorted(clash)[:3]}): not a teach train set?")
        chosen, info["mix"] = mix_ids(len(context), [r["id"] for r in variants["lema"]], cfg.mix_ratio, cfg.mix_seed)
        keep = set(chosen)
        for v, rs in variants.items():
            write_jsonl(out / MIX_FILES[v], context + [r for r in rs if r["id"] in keep])
            info["files"][f"cd+{v}"] = MIX_FILES[v]
    return info
