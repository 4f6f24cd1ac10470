"""The report's cost part (issues 18, 19): what each arm of a recipe run cost, in teacher tokens
and student passes, beside its pass@1, and pass@1 per million teacher tokens. Present only when a
recipe run's files price something (a run without token accounting has a report as before).

What is counted (every number is read from the file a stage wrote, named in the row's sources):

* **teacher tokens (training data)**: prompt + completion tokens of the teacher answers the arm's
  training data was made from. Each answer's tokens are the usage stored with it, so an answer
  served from the response cache counts as if asked: the price of making the data, not what one
  machine spent. Rejected attempts and invalid rows count (they were paid for). A stage shared by
  several arms is priced in full for each (the price of that arm alone). Per kind:
  ``trained`` (cd): ``teach/teach_manifest.json`` ``tokens.total``; ``hsft``:
  ``hsft/teach_manifest.json``; ``reer``: ``reer/teach_manifest.json`` (draft and rewrites; the
  split from ``reer/contexts.jsonl``'s ``reverse`` blocks, the drafts counted even where the teach
  stage's cache answered them); ``cd+lema`` / ``cd+corrected-only``: teach + ``correct/
  correct_manifest.json`` ``cost.teacher.total_tokens``; ``elad`` / ``elad-random``: ``elad/cost.json``
  ``selected`` / ``random`` (the teach stage's records of the subset's problems only); ``elad+claer``:
  its ``claer`` (the revision run); ``hsft+dpo`` / ``cd+dpo``: the ``start`` arm's cost + ``arms/<arm>/
  pairs/pairs_manifest.json`` ``cost.teacher.total_tokens``; ``pipeline``: the trained arms it uses
  (``arm:<name>``); ``base``: 0.
* **teacher tokens (inference)**: where the teacher answers the benchmark: a pipeline's Reasoner
  (``results.json`` ``pipeline.reasoner_usage``) and any arm whose answering model (a pipeline's
  Coder) is the run's teacher, ``serve.model`` (``generation.usage``): each summed over the eval's
  generation batches (``generation_log.jsonl``), so exact after an interrupted and resumed eval.
  Where some answers' batches carry no usage (``generation.samples_priced`` < ``samples``), and in
  an eval from before per-batch usage (the last call's only: ``generation.this_call.usage``, when
  that call did not generate every answer), the number is a lower bound (≥).
* **student samples**: answers the student generated to make the data: ``select`` (ELAD's
  uncertainty: ``select/select_manifest.json`` ``cost.generations``: samples, step ablations and
  baseline regenerations; not for elad-random, whose random draw needs none), ``correct`` and
  ``pairs`` (``cost.student.samples``), reer's student drafts (``draft: student``: one plan per row).
  **Scoring passes**: reer's PPL scoring of candidate reasonings (``mode_summary.totals.scorer_passes``).
* **training examples**: examples through the optimiser, ``steps × batch_size × grad_accum ×
  processes`` (``arms/<arm>/train/train_summary.json`` ``steps``, ``num_processes``;
  ``train_config.json``); every step takes exactly that many from the epoch stream. A DPO example is
  a pair (two sequences through the policy, two through the reference); a DPO arm adds its start
  arm's, a pipeline the arms it uses. ``training set``: the distinct examples of the arm's own split.
* **pass@1 per million teacher tokens**: pass@1 / ((data + inference teacher tokens) / 10⁶); none
  for an arm with no teacher tokens.

A missing file or field gives "–" and a note, never an error.
"""

from __future__ import annotations

import json
from pathlib import Path

from codistill.report.load import Arm, RunInfo

__all__ = ["FIELDS", "cost_part", "cost_rows", "cost_section", "fmt_per_mtok", "fmt_samples", "fmt_tokens"]

TEACH, HSFT, REER = "teach/teach_manifest.json", "hsft/teach_manifest.json", "reer/teach_manifest.json"
REER_CONTEXTS = "reer/contexts.jsonl"
CORRECT, SELECT, ELAD = "correct/correct_manifest.json", "select/select_manifest.json", "elad/cost.json"
PAIRS = "arms/{arm}/pairs/pairs_manifest.json"
TRAIN_SUMMARY, TRAIN_CONFIG = "arms/{arm}/train/train_summary.json", "arms/{arm}/train/train_config.json"
FIELDS = ("teacher_tokens_data", "teacher_tokens_inference", "student_samples", "student_scoring_passes",
          "training_examples")
_LABEL = {"teacher_tokens_data": "teacher tokens (data)", "teacher_tokens_inference": "teacher tokens (inference)",
          "student_samples": "student samples", "student_scoring_passes": "scoring passes",
          "training_examples": "training examples"}
_TRAINED = {"trained", "cd+lema", "cd+corrected-only", "elad", "elad-random", "elad+claer", "hsft", "hsft+dpo",
            "cd+dpo", "reer"}
_ELAD_SUBSET = {"elad": "selected", "elad-random": "random", "elad+claer": "claer"}


def _num(x) -> int | None:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _get(d, path: str):
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


class _Files:
    """A run directory's files, each read once; ``missing`` says why one could not be."""

    def __init__(self, run: Path):
        self.run, self._cache = run, {}

    def json(self, rel: str) -> tuple[dict | None, str | None]:
        if rel not in self._cache:
            p = self.run / rel
            try:
                self._cache[rel] = (json.loads(p.read_text(encoding="utf-8")), None) if p.is_file() else \
                    (None, f"{rel} missing")
            except (OSError, ValueError) as e:
                self._cache[rel] = (None, f"{rel} unreadable ({type(e).__name__})")
        return self._cache[rel]

    def records(self, rel: str) -> list[dict] | None:
        """A contexts.jsonl's records, the last of an id winning (None when missing)."""
        p = self.run / rel
        if not p.is_file():
            return None
        from codistill.store import read_jsonl

        try:
            return list({r.get("id"): r for r in read_jsonl(p, resumable=True)}.values())
        except (OSError, ValueError):
            return None


class _Account:
    """One arm's sums, their sources and notes. A field is None once any of its parts is unknown."""

    def __init__(self):
        self.values: dict[str, int | None] = {f: 0 for f in FIELDS}
        self.lower: set[str] = set()
        self.sources: list[str] = []
        self.notes: list[str] = []
        self.found = False  # some number came from a file
        self.training_set: int | None = None

    def add(self, field: str, value: int | None, source: str, lower: bool = False) -> None:
        if value is None:
            self.values[field] = None
            return
        if self.values[field] is not None:
            self.values[field] += value
        if lower:
            self.lower.add(field)
        self.sources.append(f"{_LABEL[field]} {value:,}{' (lower bound)' if lower else ''}: {source}")
        self.found = True

    def unknown(self, field: str, note: str) -> None:
        self.values[field] = None
        self.notes.append(f"{_LABEL[field]} unknown: {note}")

    def merge(self, other: "_Account", prefix: str) -> None:
        for f in FIELDS:
            v = other.values[f]
            self.values[f] = None if v is None or self.values[f] is None else self.values[f] + v
        self.lower |= other.lower
        self.sources += [f"{prefix}: {s}" for s in other.sources]
        self.notes += [f"{prefix}: {n}" for n in other.notes]
        self.found = self.found or other.found


# --------------------------------------------------------------------------- each stage's price
def _teach(acc: _Account, files: _Files, rel: str) -> dict | None:
    m, why = files.json(rel)
    if m is None:
        acc.unknown("teacher_tokens_data", why)
        return None
    tok = m.get("tokens") or {}
    total = _num(tok.get("total"))
    if total is None and _num(tok.get("prompt")) is not None and _num(tok.get("completion")) is not None:
        total = _num(tok["prompt"]) + _num(tok["completion"])
    if total is None:
        acc.unknown("teacher_tokens_data", f"{rel} has no tokens (written before token accounting?)")
    else:
        acc.add("teacher_tokens_data", total, f"{rel} tokens.total (prompt {tok.get('prompt')}, completion "
                f"{tok.get('completion')})")
    return m


def _reer(acc: _Account, files: _Files) -> None:
    m = _teach(acc, files, REER)
    recs = files.records(REER_CONTEXTS)
    if recs is not None:
        draft = rewrite = cached = 0
        for r in recs:
            rev = r.get("reverse") or {}
            d = rev.get("draft_teacher_tokens") if rev else r.get("tokens")
            draft += sum(_num((d or {}).get(k)) or 0 for k in ("prompt", "completion"))
            rewrite += _num((rev.get("teacher_tokens") or {}).get("total")) or 0
            cached += sum(1 for a in r.get("attempt_log") or [] if a.get("cached"))
        acc.sources.append(f"of which drafts {draft:,} and rewrites {rewrite:,} ({REER_CONTEXTS} reverse."
                           f"draft_teacher_tokens / reverse.teacher_tokens): the drafts count in full, "
                           f"{cached} draft answer(s) served by the teach stage's cache included, as the arm's price")
    if m is None:
        return
    passes = _num(_get(m, "mode_summary.totals.scorer_passes"))
    if passes is None:
        acc.unknown("student_scoring_passes", f"{REER} has no mode_summary.totals.scorer_passes")
    else:
        acc.add("student_scoring_passes", passes, f"{REER} mode_summary.totals.scorer_passes")
    if _get(m, "config.mode_options.draft") == "student":
        acc.add("student_samples", _num(_get(m, "counts.finished")) or 0,
                f"{REER} counts.finished (draft: student, one plan per row)")


def _stage_cost(acc: _Account, files: _Files, rel: str) -> None:
    """A correct or pairs manifest's ``cost``: teacher tokens and the student's samples."""
    m, why = files.json(rel)
    if m is None:
        acc.unknown("teacher_tokens_data", why)
        acc.unknown("student_samples", why)
        return
    t, s = _num(_get(m, "cost.teacher.total_tokens")), _num(_get(m, "cost.student.samples"))
    if t is None:
        acc.unknown("teacher_tokens_data", f"{rel} has no cost.teacher.total_tokens")
    else:
        acc.add("teacher_tokens_data", t, f"{rel} cost.teacher.total_tokens")
    if s is None:
        acc.unknown("student_samples", f"{rel} has no cost.student.samples")
    else:
        acc.add("student_samples", s, f"{rel} cost.student.samples ({_get(m, 'cost.student.completion_tokens')} "
                "generated tokens)")


def _elad(acc: _Account, files: _Files, kind: str) -> None:
    sub = _ELAD_SUBSET[kind]
    c, why = files.json(ELAD)
    part = (c or {}).get(sub)
    tok = None if not isinstance(part, dict) else _num(part.get("prompt"))
    if tok is not None and _num(part.get("completion")) is not None:
        acc.add("teacher_tokens_data", tok + _num(part["completion"]),
                f"{ELAD} {sub}.prompt + {sub}.completion ({part.get('rows')} rows)")
    else:
        acc.unknown("teacher_tokens_data", why or f"{ELAD} has no {sub} prompt/completion tokens")
    if kind == "elad-random":
        acc.sources.append("student samples 0: a random subset needs no student")
        return
    m, why = files.json(SELECT)
    sel = (m or {}).get("cost") or (c or {}).get("selection")
    src = SELECT if m is not None else f"{ELAD} selection"
    if not isinstance(sel, dict):
        acc.unknown("student_samples", why)
        return
    n = _num(sel.get("generations"))
    if n is None and _num(sel.get("student_samples")) is not None:
        n = sum(_num(sel.get(k)) or 0 for k in ("student_samples", "step_ablations", "baseline_regenerations"))
    if n is None:
        acc.unknown("student_samples", f"{src} has no cost.generations")
    else:
        acc.add("student_samples", n, f"{src} cost.generations (samples {sel.get('student_samples')}, step ablations "
                f"{sel.get('step_ablations')}, baseline regenerations {sel.get('baseline_regenerations')}; "
                f"{sel.get('generated_tokens')} generated tokens)")


def _training(acc: _Account, files: _Files, arm: str) -> None:
    rel, crel = TRAIN_SUMMARY.format(arm=arm), TRAIN_CONFIG.format(arm=arm)
    s, why = files.json(rel)
    c, cwhy = files.json(crel)
    if s is None or c is None:
        acc.unknown("training_examples", why or cwhy)
        return
    steps, world, batch = _num(s.get("steps")), _num(s.get("num_processes")) or 1, _num(c.get("batch_size"))
    accum = _num(c.get("grad_accum")) or 1
    if steps is None or batch is None:
        acc.unknown("training_examples", f"{rel} steps / {crel} batch_size missing")
        return
    acc.add("training_examples", steps * batch * accum * world,
            f"{rel} steps {steps} × {crel} batch_size {batch} × grad_accum {accum} × {world} process(es)")
    if s.get("stopped_early"):
        acc.notes.append(f"training stopped early at step {steps} of {s.get('total_steps')} ({rel})")
    acc.training_set = _num(_get(s, "data.train"))


def _kind(spec) -> str | None:
    if not isinstance(spec, dict):
        return None
    return spec.get("kind") or ("base" if spec.get("base") else "trained")


def _account(files: _Files, specs: dict, arm: str, depth: int = 0) -> _Account:
    """What ``arm``'s training cost (a pipeline: the trained arms it uses); inference apart."""
    acc = _Account()
    spec = specs.get(arm)
    kind = _kind(spec)
    if kind is None or depth > 4:
        for f in FIELDS:
            acc.unknown(f, f"arm {arm!r} is not in the run's recipe.yaml: its kind is unknown")
        return acc
    if kind == "base":
        acc.sources.append("base: no teacher, no training")
    elif kind == "pipeline":
        for ref in dict.fromkeys(v[4:] for v in (spec.get("reasoner"), spec.get("coder"))
                                 if isinstance(v, str) and v.startswith("arm:")):
            acc.merge(_account(files, specs, ref, depth + 1), f"arm:{ref}")
    elif kind in _TRAINED:
        if kind in ("hsft+dpo", "cd+dpo"):
            start = str(spec.get("start"))
            acc.merge(_account(files, specs, start, depth + 1), f"start arm {start}")
            _stage_cost(acc, files, PAIRS.format(arm=arm))
        elif kind in _ELAD_SUBSET:
            _elad(acc, files, kind)
        elif kind == "reer":
            _reer(acc, files)
        elif kind == "hsft":
            _teach(acc, files, HSFT)
        else:
            _teach(acc, files, TEACH)
            if kind in ("cd+lema", "cd+corrected-only"):
                _stage_cost(acc, files, CORRECT)
        _training(acc, files, arm)
    else:
        for f in FIELDS:
            acc.unknown(f, f"the report does not price arms of kind {kind!r}")
    return acc


def _usage(res: dict, summed: str, last_call: str) -> tuple[int | None, bool, str]:
    """(tokens of a model's usage, whether they are a lower bound, where from). An eval that records
    usage per generation batch (results.json ``generation.samples_priced``) has it summed over every
    call at ``summed``; an older one only the last call's, at ``last_call``."""
    gen = res.get("generation") or {}
    priced, samples = _num(gen.get("samples_priced")), _num(gen.get("samples"))
    what = summed if priced is not None else last_call
    usage = _get(res, what)
    if not isinstance(usage, dict) or _num(usage.get("prompt_tokens")) is None:
        return None, False, f"results.json has no {what}"
    n = _num(usage["prompt_tokens"]) + (_num(usage.get("completion_tokens")) or 0)
    if priced is not None:
        lower = samples is not None and priced < samples
        return n, lower, f"results.json {what} prompt_tokens + completion_tokens, summed over the eval's generation " \
            "batches" + (f" (recorded for {priced} of {samples} answers)" if lower else "")
    done, total = _num(_get(gen, "this_call.new_tokens")), _num(gen.get("new_tokens"))
    lower = done is not None and total is not None and done < total
    return n, lower, f"results.json {what} prompt_tokens + completion_tokens" + (
        f" (the last eval call only: {done} of {total} generated tokens)" if lower else "")


def _inference(acc: _Account, arm: Arm, spec: dict, teacher: str | None) -> None:
    res = arm.results
    cfg = (res or {}).get("config") or {}
    roles = []  # (the teacher's role, its usage summed over the run, the last call's: paths in results.json)
    if spec.get("reasoner") == "teacher" or (teacher and str(cfg.get("reasoner") or "") == teacher):
        roles.append(("Reasoner", "pipeline.reasoner_usage", "pipeline.reasoner_usage"))
    if spec.get("coder") == "teacher" or (teacher and cfg.get("model") == teacher):
        roles.append(("Coder" if _kind(spec) == "pipeline" else "answering model", "generation.usage",
                      "generation.this_call.usage"))
    for role, summed, last_call in roles:
        if res is None:
            acc.unknown("teacher_tokens_inference", f"the teacher is the {role} but results.json is missing")
            continue
        n, lower, src = _usage(res, summed, last_call)
        if n is None:
            acc.unknown("teacher_tokens_inference", f"the teacher is the {role} but {src}")
        else:
            acc.add("teacher_tokens_inference", n, f"the teacher as {role}: {src}", lower=lower)


# --------------------------------------------------------------------------- the part
def _recipe(run: RunInfo) -> dict:
    if not run.recipe_text:
        return {}
    import yaml

    try:
        rec = yaml.safe_load(run.recipe_text)
    except yaml.YAMLError:
        return {}
    return rec if isinstance(rec, dict) else {}


def cost_rows(order: list[Arm], arms: list[Arm], benches: list[str], table1: dict) -> list[dict]:
    """One row per arm of a recipe run (evaluated ones in the report's order, then the others)."""
    rows: list[dict] = []
    files: dict[int, tuple[_Files, dict]] = {}
    shown = {id(a) for a in order}
    for a in order + [x for x in arms if id(x) not in shown]:
        if a.run is None or a.train_dir is None:
            continue
        if id(a.run) not in files:
            files[id(a.run)] = (_Files(a.run.path), _recipe(a.run))
        f, rec = files[id(a.run)]
        specs = rec.get("arms") if isinstance(rec.get("arms"), dict) else {}
        teacher = _get(rec, "serve.model")
        name = a.train_dir.parent.name  # the arm's folder: <arm>@<protocol> is <arm> judged otherwise
        acc = _account(f, specs, name)
        _inference(acc, a, specs.get(name) or {}, teacher)
        v = acc.values
        total = None if v["teacher_tokens_data"] is None or v["teacher_tokens_inference"] is None else \
            v["teacher_tokens_data"] + v["teacher_tokens_inference"]
        p1 = {b: c["pass@1"] for b in benches if (c := (table1.get(a.name) or {}).get(b)) and c.get("pass@1") is not None}
        protocol = a.eval_dir.name.split("@", 1)[1] if a.eval_dir is not None and "@" in a.eval_dir.name else None
        rows.append({"arm": a.name, "recipe_arm": name, "run": a.run.name, "kind": _kind(specs.get(name)),
                     "protocol": protocol, **v, "teacher_tokens": total, "training_set": acc.training_set,
                     "lower_bound": sorted(acc.lower), "pass@1": p1,
                     "pass@1_per_mtok": {b: (p / (total / 1e6) if total else None) for b, p in p1.items()},
                     "sources": acc.sources, "notes": acc.notes, "_found": acc.found})
    return rows


def cost_part(order: list[Arm], arms: list[Arm], benches: list[str], table1: dict) -> dict:
    """The report.json keys of this part: ``cost`` (rows) when some recipe run's files price something."""
    rows = cost_rows(order, arms, benches, table1)
    found = [r.pop("_found") for r in rows]
    return {"cost": rows} if any(found) else {}


# --------------------------------------------------------------------------- the prose
def fmt_tokens(row: dict, field: str) -> str:
    v = row.get(field)
    if v is None:
        return "–"
    return ("≥" if field in row.get("lower_bound", []) else "") + f"{v:,}"


def fmt_per_mtok(row: dict, bench: str) -> str:
    v = (row.get("pass@1_per_mtok") or {}).get(bench)
    if v is None:
        return "–"
    lower = {"teacher_tokens_data", "teacher_tokens_inference"} & set(row.get("lower_bound") or [])
    return ("≤" if lower else "") + f"{100 * v:,.2f}"


def fmt_samples(row: dict) -> str:
    s = fmt_tokens(row, "student_samples")
    return s + (f" + {row['student_scoring_passes']:,} scored" if row.get("student_scoring_passes") else "")


def cost_section(rep: dict):
    """("Cost per arm", blocks), or None when the report has no cost part."""
    from codistill.report.sections import Block, _pct

    rows = rep.get("cost")
    if not rows:
        return None
    benches = rep["benchmarks"]
    headers = (["arm", "kind", "teacher tokens (training data)", "teacher tokens (inference)", "student samples",
                "training examples"] + [f"{b} pass@1" for b in benches]
               + [f"{b} pass@1 per M teacher tokens" for b in benches])
    table = [[r["arm"], r["kind"] or "?", fmt_tokens(r, "teacher_tokens_data"), fmt_tokens(r, "teacher_tokens_inference"),
              fmt_samples(r), fmt_tokens(r, "training_examples")
              + (f" ({r['training_set']:,} distinct)" if r.get("training_set") else "")]
             + [_pct(r["pass@1"].get(b)) for b in benches] + [fmt_per_mtok(r, b) for b in benches] for r in rows]
    b = [Block("table", headers=headers, rows=table),
         Block("p", "Teacher tokens: prompt + completion of the teacher answers the arm's training data was made from "
               "(each answer's recorded usage, so cached answers and rejected attempts count: the price of the data "
               "for this arm alone, shared stages in full), and of the teacher answering the benchmark (a pipeline's "
               "Reasoner or Coder, or an arm judged with the teacher as its model). Student samples: answers the "
               "student generated to make the data (ELAD selection, LEMA corrections, DPO pairs, REER student drafts; "
               "*scored*: REER's perplexity scoring passes). Training examples: optimiser steps × batch size × "
               "gradient accumulation × processes (a DPO example is a pair; a DPO arm includes its start arm's, a "
               "pipeline the arms it uses). pass@1 in %; per M teacher tokens: pass@1 (%) divided by the arm's "
               "teacher tokens (data + inference) in millions, none for an arm without teacher tokens. ≥ / ≤: a lower "
               "bound, some answers' usage unrecorded (an eval from before per-batch usage, resumed). REER's drafts are counted in full even where the teach stage's "
               "cache answered them: what the arm costs on its own."),
         Block("p", "Where each number came from:"),
         Block("list", items=[f"{r['arm']}: " + ("; ".join(r["sources"]) or "–") for r in rows])]
    notes = [f"{r['arm']}: {n}" for r in rows for n in r["notes"]]
    if notes:
        b.append(Block("warn", "Not priced (shown as –):", items=notes))
    return ("Cost per arm: teacher tokens, student samples, pass@1 per teacher token", b)
