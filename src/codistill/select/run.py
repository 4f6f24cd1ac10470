"""``codistill select``: ELAD's explanation-guided active selection (Zhang et al., ACL Findings
2024), for code. For each candidate problem of a ``codistill data`` folder the student writes k
answers (reasoning + code, in the run's student format); the problem's scores
(:mod:`codistill.select.scores`) come from the outcome clusters of their programs in the sandbox
(inter-uncertainty) and from regenerating the code with one reasoning step left out at a time
(intra-uncertainty, steps as :mod:`codistill.select.steps` splits them). A budget of problems is
kept by score, and as many at random (the control).

Files in ``out_dir``:

* ``records.jsonl`` — append-only, one record per problem as soon as its batch is judged:
  ``problem_id``, ``problem_hash``, ``run_key``, ``samples`` (index, completion, steps, tokens,
  outcome cluster, kind, passed), ``ablations`` (per ablated sample: its steps, the baseline —
  code regenerated from the whole reasoning — and one variant per ablated step with its outcome
  and whether it ``changed``), ``clusters``, ``entropy``, ``inter_norm``, ``intra``,
  ``pass_rate``, ``student`` (the attempt CLAER revises: the first sample that failed, else the
  first), ``cost`` (samples, ablations, baselines, generated tokens, seconds). A resumed run
  keeps the records with the same ``run_key`` (:meth:`SelectConfig.sampling_key`) and problem
  hash and samples only the rest; the choice is made again from the records (a new budget or
  score costs no sampling).
* ``scores.jsonl`` — per candidate: scores, rank, ``selected``, ``random``.
* ``selected/`` and ``random/`` — ``rows.jsonl`` + ``problems.jsonl`` of the chosen problems, in
  the data stage's layout (rows in dataset order, every row of a chosen problem, its ``#alt``
  rows too), each row with the problem's ``student`` attempt added: ``codistill teach
  --dataset <out>/selected`` teaches the subset (any mode; ``claer`` revises the attempt), and
  ``codistill train`` reads ``rows.jsonl`` as it is (no context: code-only rows).
* ``select_manifest.json`` — config, counts, the two subsets, the score distributions, and the
  cost of selection itself (student samples, step ablations, baseline regenerations, generated
  tokens, generation and judging seconds, over every record; the generator's usage per run).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from codistill.select.config import SelectConfig
from codistill.store import JsonlAppender, RunDirLock, read_jsonl, sha256_json

__all__ = ["SELECT_VERSION", "load_candidates", "select"]

log = logging.getLogger("codistill.select")
SELECT_VERSION = 1  # the record format and the outcome/step rules


def load_candidates(cfg: SelectConfig) -> tuple[dict[str, list[dict]], dict, list[str]]:
    """(rows by problem id, problems by id, candidate problem ids in dataset order)."""
    from codistill.problems.schema import Problem

    d = Path(cfg.dataset)
    for name in ("rows.jsonl", "problems.jsonl"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d} has no {name}: give a folder written by `codistill data`")
    problems = {p["id"]: Problem.model_validate(p) for p in read_jsonl(d / "problems.jsonl")}
    rows: dict[str, list[dict]] = {}
    for r in read_jsonl(d / "rows.jsonl"):
        rows.setdefault(r.get("problem_id", r["id"]), []).append(r)
    order = [pid for pid in rows if pid in problems]
    missing = [pid for pid in rows if pid not in problems]
    if missing:
        raise ValueError(f"{d}: rows of {len(missing)} problems have no record in problems.jsonl (e.g. {missing[:3]})")
    if cfg.ids is not None:
        unknown = sorted(set(cfg.ids) - set(order))
        if unknown:
            raise ValueError(f"ids not in {d}: {unknown[:5]}")
        wanted = set(cfg.ids)
        order = [pid for pid in order if pid in wanted]
    if cfg.limit is not None:
        order = order[:cfg.limit]
    if not order:
        raise ValueError(f"no candidate problems in {d}")
    return rows, problems, order


def _check_format(fmt) -> None:
    from codistill.evaluation.strategies.reasoner_coder import format_plan_cut

    try:
        format_plan_cut(fmt)
    except ValueError as e:
        raise ValueError(f"select scores a student's reasoning, but {e}; use a format with a reasoning section "
                         "before the code (e.g. paper)") from None


def select(config: SelectConfig | dict, out_dir: str | Path, generator: Any = None, tokenizer: Any = None,
           judge: Any = None, progress: bool = True) -> dict:
    """Score the candidates, choose the budget and the random control, write the subsets; returns
    the manifest (files: the module docstring). ``generator``/``tokenizer``/``judge``: given ones
    are used (tests, callers holding a model); otherwise built from the config when there is
    something to sample, and closed at the end. One process per ``out_dir`` at a time."""
    cfg = config if isinstance(config, SelectConfig) else SelectConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out, "select"):
        return _select(cfg, out, generator, tokenizer, judge, progress)


def _finished(path: Path, run_key: str, problems: dict) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.exists():
        for r in read_jsonl(path, resumable=True):
            p = problems.get(r.get("problem_id"))
            if p is not None and r.get("run_key") == run_key and \
                    r.get("problem_hash") == sha256_json(p.model_dump(exclude={"meta"}))[:16]:
                done[r["problem_id"]] = r
    return done


def make_student(cfg: SelectConfig, fmt) -> tuple[Any, Any]:
    """(generator, tokenizer) of the student, built as eval builds a format's backend: raw
    completion prompts rendered by codistill."""
    from codistill.backends import backend_kind, make_generator
    from codistill.evaluation.config import _SET_BY_EVAL

    kind = backend_kind(cfg.backend)
    owned = {"model": cfg.model, "adapter": cfg.adapter, "batch_size": cfg.batch_size,
             "prompt_mode": "completion", "dtype": cfg.dtype}
    if cfg.adapter and "adapter" not in _SET_BY_EVAL.get(kind, ()):
        raise ValueError(f"backend {cfg.backend!r} cannot apply an adapter: use hf or llama-server")
    kwargs = {k: owned[k] for k in _SET_BY_EVAL.get(kind, ("model",))}
    options = dict(cfg.backend_options)
    options.pop("prompt_mode", None)
    gen = make_generator(cfg.backend, **kwargs, **options)
    tok = gen.tokenizer if gen.capabilities.tokenizer else None
    if tok is None:
        from codistill.evaluation.run import load_tokenizer

        tok = load_tokenizer(cfg.model, cfg.dtype)
    if tok is None and fmt.prompt_mode == "chat":
        gen.close()
        raise ValueError(f"format {fmt.name!r} prompts through the chat template, and no tokenizer could be loaded "
                         f"for {cfg.model!r}")
    return gen, tok


def _select(cfg: SelectConfig, out: Path, generator, tokenizer, judge, progress: bool) -> dict:
    from contextlib import ExitStack

    from codistill.select.outputs import write_outputs

    fmt = cfg.student_format()
    _check_format(fmt)
    rows, problems, order = load_candidates(cfg)
    run_key = sha256_json([SELECT_VERSION, cfg.sampling_key()])
    rec_path = out / "records.jsonl"
    done = _finished(rec_path, run_key, problems)
    todo = [pid for pid in order if pid not in done]
    log.info("select: %d candidates, %d already scored, %d to do (k=%d, ablating %d sample(s), <= %d steps each)",
             len(order), len(order) - len(todo), len(todo), cfg.k, cfg.ablate_samples, cfg.max_steps)
    this_run: dict = {"problems": 0, "wall_s": 0.0, "usage": None}
    t0 = time.time()
    if todo:
        with ExitStack() as stack:
            if generator is None:
                generator, tokenizer = make_student(cfg, fmt)
                stack.callback(generator.close)
            if judge is None:
                from codistill.execution.judge import Judge, JudgeConfig
                from codistill.execution.sandbox import SandboxConfig

                jcfg = JudgeConfig(timeout_s=cfg.judge_timeout_s,
                                   sandbox=SandboxConfig(**({"workers": cfg.workers} if cfg.workers else {})))
                judge = stack.enter_context(Judge(jcfg))
            before = generator.usage.as_dict() if getattr(generator, "usage", None) is not None else None
            try:
                _score(cfg, fmt, generator, tokenizer, judge, [problems[p] for p in todo], rec_path, run_key, done,
                       len(order), progress, this_run)
            except BaseException:
                # interrupted: the records so far are kept; the manifest keeps this run's usage
                _usage(this_run, generator, before, t0)
                write_outputs(cfg, out, order, rows, problems, done, run_key, this_run)
                raise
            _usage(this_run, generator, before, t0)
    this_run["wall_s"] = round(time.time() - t0, 2)
    return write_outputs(cfg, out, order, rows, problems, done, run_key, this_run)


def _usage(this_run: dict, generator, before: dict | None, t0: float) -> None:
    this_run["wall_s"] = round(time.time() - t0, 2)
    if before is not None:
        after = generator.usage.as_dict()
        this_run["usage"] = {k: after[k] - before[k] for k in after}


def _score(cfg, fmt, generator, tokenizer, judge, todo: list, rec_path: Path, run_key: str, done: dict,
           total: int, progress: bool, this_run: dict) -> None:
    from codistill.progress import PROGRESS_FILE, Progress
    from codistill.select.sample import BatchScorer

    scorer = BatchScorer(cfg, fmt, generator, tokenizer, judge)
    counts = {"samples": 0, "ablations": 0}
    prog = Progress("select", total, unit="problems", done=total - len(todo), every_n=cfg.progress_every, logger=log,
                    echo=progress, state=rec_path.parent / PROGRESS_FILE, bar=None if progress else False,
                    describe=lambda: f"student samples {counts['samples']}, step ablations {counts['ablations']}")
    with JsonlAppender(rec_path) as app, prog:
        for i in range(0, len(todo), cfg.problems_per_batch):
            batch = todo[i:i + cfg.problems_per_batch]
            for rec in scorer(batch):
                rec["run_key"] = run_key
                rec["version"] = SELECT_VERSION
                app.append(rec)
                done[rec["problem_id"]] = rec
                counts["samples"] += rec["cost"]["samples"]
                counts["ablations"] += rec["cost"]["ablations"]
                this_run["problems"] += 1
            prog.advance(len(batch))
