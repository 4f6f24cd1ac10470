"""Step 3 of the correct stage: training rows from the kept corrections, in two variants, and their
mixes with the teach stage's context-distillation rows.

Every row has exactly the teach stage's keys (:data:`codistill.teacher.outputs.TRAIN_KEYS`:
``id, prompt, context, code, tests, difficulty, source``), so ``codistill train`` reads these files
as it reads ``train.jsonl``. ``id`` is ``<problem_id>#fix<k>`` (k: the student's sample), the same
in both variants; ``prompt`` is the problem statement (the student is prompted as always);
``code`` is the corrected program (it passed the judge); ``tests`` the problem's tests as text.
``context`` is the part that differs:

**lema** (``train_lema.jsonl``)::

    ### Incorrect step
    <the first wrong step of the student's attempt, as the teacher quoted it>

    ### Explanation of the error
    <why it is wrong and how it led to the judge's failure>

    ### Corrected solution
    <the corrected solution's reasoning, in words>

**corrected-only** (``train_corrected_only.jsonl``, the ablation): the same rows with the first two
sections left out, i.e. exactly the last block of the lema context::

    ### Corrected solution
    <the corrected solution's reasoning, in words>

The student's answer layout (its format) wraps ``context`` as it wraps any context (``paper``:
``### Reasoning`` + context, ``### Code`` + code, ``### Tests`` + tests).

**Mixing** (``context_data`` given: ``train_cd_lema.jsonl``, ``train_cd_corrected_only.jsonl``):
every context-distillation row, in its order, then the chosen correction rows, in theirs.
``mix_ratio`` = correction rows per context-distillation row: with C context rows and K kept
corrections, ``wanted = floor(mix_ratio * C + 0.5)``; when ``wanted <= K``, ``wanted`` of them are
drawn without replacement by ``random.Random(mix_seed)``; when there are too few (``wanted > K``),
all K are used once (never repeated), a warning is logged and the manifest's ``mix`` records the
shortfall and the ratio achieved (K / C). ``mix_ratio`` None: all K. Both variants take the same
correction ids, so the ablation differs only in the context.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.outputs import TRAIN_KEYS
from codistill.teacher.templates import render_context

__all__ = ["FILES", "VARIANTS", "corrected_only_context", "correction_rows", "lema_context", "mix_ids",
           "read_context_rows", "write_rows"]

log = logging.getLogger("codistill.correct")

VARIANTS = ("lema", "corrected-only")
FILES = {"lema": "train_lema.jsonl", "corrected-only": "train_corrected_only.jsonl"}
MIX_FILES = {"lema": "train_cd_lema.jsonl", "corrected-only": "train_cd_corrected_only.jsonl"}
LEMA_SECTIONS = ("incorrect_step", "explanation", "reasoning")


def lema_context(sections: dict) -> str:
    """Incorrect step, explanation of the error, corrected solution (see the module docstring)."""
    return render_context({k: sections.get(k) or "" for k in LEMA_SECTIONS}, "correction")


def corrected_only_context(sections: dict) -> str:
    """The corrected solution's block of :func:`lema_context`, alone."""
    return render_context({"reasoning": sections.get("reasoning") or ""}, "correction")


def correction_rows(records: list[dict], rows_by_id: dict) -> dict[str, list[dict]]:
    """Rows of both variants from the valid correction records (in record order)."""
    out: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for rec in records:
        if not rec.get("valid"):
            continue
        row = rows_by_id[rec["id"]]
        base = {"id": rec["id"], "prompt": row["prompt"], "code": rec["code"], "tests": row.get("tests") or "",
                "difficulty": row.get("difficulty"), "source": row.get("source")}
        for variant, context in (("lema", lema_context(rec["sections"])),
                                 ("corrected-only", corrected_only_context(rec["sections"]))):
            out[variant].append({k: (context if k == "context" else base[k]) for k in TRAIN_KEYS})
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


def write_rows(cfg, out: Path, records: list[dict], rows_by_id: dict) -> dict:
    """Write the variants (and their mixes when ``cfg.context_data`` is set); returns the counts,
    files and mix arithmetic for the manifest."""
    variants = correction_rows(records, rows_by_id)
    info: dict = {"train_rows": {v: len(rs) for v, rs in variants.items()}, "files": {}, "mix": None}
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
