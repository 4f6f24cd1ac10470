"""``make_pairs(cfg, out_dir)``: the stage (see :mod:`codistill.pairs` for the files it writes).

1. the student's attempts on the training problems, judged in the sandbox: the correct stage's
   step (:func:`codistill.correct.attempts.sample_attempts`, same records, same resume);
2. the failures to correct: per problem, failed answers in sample order (not the sandbox's fault,
   distinct programs, with reasoning steps and a code section), up to ``failures_per_problem``,
   leaving out (``skipped_too_long``) those whose pair could not fit DPO training
   (``max_pair_tokens``: the student's prompt + the answer, in the student's tokens, as
   :func:`codistill.training.objectives.dpo.build_pair_example` counts them): the teacher is never
   paid for a pair the DPO arm would drop; the steps and code the teacher is shown are cut to
   ``max_attempt_chars`` (the pair keeps the whole answer);
3. per failure, the teacher in mode ``first_error`` (:mod:`codistill.teacher.modes.first_error`)
   through the teach stage's machinery (:class:`~codistill.teacher.runner.ProblemRunner`: the cache,
   the call, parsing, the mode's judge of the chosen answer, retries); records in
   ``corrections.jsonl``, appended as they finish (a prompt the teacher's server refuses for its
   size is recorded as rejected, :data:`codistill.correct.failures.OVER_CONTEXT`: not asked again);
4. ``pairs.jsonl`` from the kept corrections (:func:`codistill.pairs.layout.build_pair`) and
   ``pairs_manifest.json``: counts, why failures gave no pair, and the cost (student samples and
   tokens, teacher tokens, judge runs, seconds).

Steps 1, 3 and the manifest's counts and cost are the correct stage's too
(:mod:`codistill.correct.failures`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from codistill.correct.failures import (FailureRun, IncompleteError, attempt_and_ask, failed_samples, incomplete,
                                        manifest, reason_group, teacher_row, write_manifest)
from codistill.pairs.config import MODE, PairsConfig
from codistill.store import RunDirLock, write_jsonl

__all__ = ["PairsIncompleteError", "incomplete_error", "make_pairs"]

PAIRS_FILE = "pairs.jsonl"
MANIFEST = "pairs_manifest.json"


class PairsIncompleteError(IncompleteError):
    """Teacher errors left failures without a correction; a re-run asks only those. ``exit_code``: 1
    when no correction was finished in this run, 3 when some were."""


def make_pairs(config: PairsConfig | dict, out_dir: str | Path, *, generator=None, tokenizer=None) -> dict:
    """Run (or resume) the stage into ``out_dir``; returns the manifest. ``generator`` / ``tokenizer``: a
    student already loaded (otherwise built from ``config.student``). One process per ``out_dir``."""
    cfg = config if isinstance(config, PairsConfig) else PairsConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out, "pairs"):
        return _make_pairs(cfg, out, generator, tokenizer)


def _student_format(cfg: PairsConfig):
    from codistill.correct.attempts import resolve_format
    from codistill.evaluation.strategies.reasoner_coder import format_plan_cut

    fmt = resolve_format(cfg)
    try:
        format_plan_cut(fmt)
    except ValueError:
        raise ValueError(f"student format {fmt.name!r} ({fmt.describe()}) has no reasoning section before the code: "
                         "a student in it writes no steps for the teacher to correct; pairs need a format such as "
                         "paper or paper-no-tests") from None
    return fmt


def pair_tokens(fmt, tokenizer) -> Callable[[str, str], int]:
    """``count(statement, answer)``: the tokens a pair with ``answer`` as its rejected side takes at
    least in DPO training (:func:`codistill.training.objectives.dpo.build_pair_example`): the prompt
    rendered in the student format, the answer, and the eos token when the format ends with its code."""
    eos = int("{code}" in fmt.sections[-1] and getattr(tokenizer, "eos_token_id", None) is not None)

    def count(statement: str, answer: str) -> int:
        return (len(fmt.prompt_ids(tokenizer, statement))
                + len(tokenizer(answer.rstrip(), add_special_tokens=False)["input_ids"]) + eos)

    return count


def failure_rows(cfg: PairsConfig, fmt, rows: list[dict], attempts: dict[str, dict],
                 tokens: Callable[[str, str], int] | None = None) -> tuple[list[dict], Counter]:
    """The teacher's rows (one per failure to correct, in problem order) and the failed answers left
    out, by reason. A row is the data row plus ``answer``, ``program``, ``report``, ``format``,
    ``max_attempt_chars`` and ``sample_index``; its id is ``<problem_id>#s<sample index>``.
    ``tokens``: :func:`pair_tokens` (needed when ``cfg.max_pair_tokens`` is set): an answer over
    ``max_pair_tokens`` is left out (``skipped_too_long``) and the next failure of its problem taken."""
    from codistill.correct.attempts import NOT_THE_STUDENTS_FAULT
    from codistill.pairs.layout import read_attempt

    out: list[dict] = []
    skipped: Counter = Counter()
    fdump = fmt.model_dump()
    for r, failed in failed_samples(rows, attempts):
        seen: set[str] = set()
        taken = 0
        for smp in failed:
            attempt = read_attempt(smp["raw"], fmt)
            why = ("not_the_students_fault" if smp["status"] in NOT_THE_STUDENTS_FAULT else
                   "no_steps" if not attempt.spans else "no_code" if not attempt.has_code else
                   "duplicate_program" if smp["program"].strip() in seen else
                   "over_failures_per_problem" if taken == cfg.failures_per_problem else
                   "skipped_too_long" if too_long(cfg, tokens, r["prompt"], smp["raw"]) else None)
            if why:
                skipped[why] += 1
                continue
            seen.add(smp["program"].strip())
            taken += 1
            out.append(teacher_row(r, smp, "s", answer=smp["raw"], program=smp["program"], report=smp["report"],
                                   format=fdump, max_attempt_chars=cfg.max_attempt_chars))
    return out, skipped


def too_long(cfg: PairsConfig, tokens: Callable[[str, str], int] | None, statement: str, answer: str) -> bool:
    """Whether a pair with ``answer`` as its rejected side could not fit ``cfg.max_pair_tokens``."""
    if cfg.max_pair_tokens is None:
        return False
    if tokens is None:
        raise ValueError("max_pair_tokens counts the student's tokens: give failure_rows a counter (pair_tokens)")
    return tokens(statement, answer) > cfg.max_pair_tokens


def _counter(cfg: PairsConfig, fmt, tokenizer) -> Callable[[str, str], int] | None:
    """:func:`pair_tokens` with the student's tokenizer (the one given, else the student model's,
    loaded on first use), or None when ``max_pair_tokens`` is not set."""
    if cfg.max_pair_tokens is None:
        return None
    held: list = [None if tokenizer is None else pair_tokens(fmt, tokenizer)]

    def count(statement: str, answer: str) -> int:
        if held[0] is None:
            from codistill.evaluation.run import load_tokenizer

            tok = load_tokenizer(cfg.student.model, cfg.student.dtype)
            if tok is None:
                raise ValueError(f"max_pair_tokens counts the student's tokens, and no tokenizer could be loaded for "
                                 f"{cfg.student.model!r}: give a local student model, or leave max_pair_tokens unset")
            held[0] = pair_tokens(fmt, tok)
        return held[0](statement, answer)

    return count


def _make_pairs(cfg: PairsConfig, out: Path, generator, tokenizer) -> dict:
    t0 = time.time()
    run = attempt_and_ask("pairs", cfg, out, _student_format,
                          lambda fmt, rows, att: failure_rows(cfg, fmt, rows, att, _counter(cfg, fmt, tokenizer)),
                          generator, tokenizer)
    pairs, dropped = _pairs(run.fmt, run.records, {r["id"]: r for r in run.fixes})
    write_jsonl(out / PAIRS_FILE, pairs)
    return write_manifest("pairs", out, _manifest(pairs=pairs, dropped=dropped, wall=time.time() - t0, **vars(run)),
                          "pairs")


def _manifest(*, pairs: list[dict], dropped: Counter, wall: float, **run) -> dict:
    """pairs_manifest.json's content (``run``: the fields of a :class:`~codistill.correct.failures.
    FailureRun`; ``pairs`` and ``dropped``: :func:`_pairs`'s; tests/test_report_cost.py writes manifests
    through it)."""
    ks = Counter("code" if p["first_wrong_step"] is None else "step" for p in pairs)
    return manifest("pairs", FailureRun(**run), wall, kept="pairs", per_kept="tokens_per_pair",
                    judged_as="chosen_answers", head={"mode": MODE},
                    outcome={"skipped_too_long": run["skipped"].get("skipped_too_long", 0),
                             "pairs": len(pairs), "pairs_by_first_error": dict(ks),
                             "dropped": len(run["records"]) - len(pairs), "dropped_by_reason": dict(dropped)},
                    files={"pairs": PAIRS_FILE})


def _pairs(fmt, records: list[dict], rows: dict[str, dict]) -> tuple[list[dict], Counter]:
    """The pairs of the kept corrections (laid out as the mode judged them), and the corrections
    dropped, by reason."""
    from codistill.pairs.layout import build_pair, read_attempt
    from codistill.teacher.templates import is_none_text

    pairs, dropped = [], Counter()
    for rec in records:
        if not rec.get("valid"):
            dropped[reason_group(rec.get("reason"))] += 1
            continue
        row = rows[rec["id"]]
        revision = (rec.get("sections") or {}).get("revision") or ""
        k = (rec.get("first_error") or {}).get("k")
        pair = build_pair(read_attempt(row["answer"], fmt), fmt, k, None if is_none_text(revision) else revision,
                          rec["code"])
        pairs.append({"id": rec["id"], "problem_id": row["problem_id"], "prompt": row["prompt"], **pair,
                      "difficulty": row.get("difficulty"), "source": row.get("source"),
                      "sample_index": row["sample_index"], "student_status": row["report"].get("status"),
                      "teacher_tokens": rec["tokens"], "format": fmt.model_dump()})
    return pairs, dropped


def incomplete_error(manifest: dict, resume: str = "the same `codistill pairs` command") -> PairsIncompleteError | None:
    """The error a command ends with when failures are left without a correction (None: complete)."""
    return incomplete(manifest, "pairs", resume, PairsIncompleteError)
