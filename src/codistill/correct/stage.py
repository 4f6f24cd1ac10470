"""``correct(cfg, out_dir)``: the stage (see :mod:`codistill.correct` for the files it writes).

1. the student's attempts, judged (:mod:`.attempts`);
2. per failure, the teacher's correction in mode ``correction`` (:mod:`codistill.teacher.modes.
   correction`), through the teach stage's own machinery: :class:`~codistill.teacher.runner.
   ProblemRunner` (cache look-up, the call, parsing, the mode's judge of the corrected program,
   retries up to ``max_attempts``), :class:`~codistill.teacher.client.TeacherClient` (each call's
   exact token usage), :class:`~codistill.teacher.cache.ResponseCache`;
3. training rows in two variants and their mixes (:mod:`.rows`), written afresh from the kept
   records on every run (a changed row layout costs no student sample and no teacher call); with
   ``max_row_tokens`` set (:mod:`.fit`), an id whose row the trainer would drop is left out of both
   variants, and a failure whose lema prompt alone could not fit is never shown to the teacher;
4. ``correct_manifest.json``: counts, why corrections were dropped, and the cost.

Steps 1, 2 and 4 are the pairs stage's too (:mod:`codistill.correct.failures`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from codistill.correct.config import CorrectConfig
from codistill.correct.failures import (FailureRun, IncompleteError, attempt_and_ask, incomplete, manifest,
                                        reason_group, write_manifest)
from codistill.store import RunDirLock

__all__ = ["CorrectIncompleteError", "correct", "incomplete_error"]


class CorrectIncompleteError(IncompleteError):
    """Teacher errors left failures without a correction; a re-run asks only those.
    ``exit_code``: 1 when no correction was finished in this run, 3 when some were."""


def correct(config: CorrectConfig | dict, out_dir: str | Path, *, generator=None, tokenizer=None) -> dict:
    """Run (or resume) the stage into ``out_dir``; returns the manifest. ``generator`` /
    ``tokenizer``: a student already loaded (otherwise built from ``config.student``). One process
    per ``out_dir`` (:class:`codistill.store.RunDirBusyError` for a second)."""
    cfg = config if isinstance(config, CorrectConfig) else CorrectConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out, "correct"):
        return _correct(cfg, out, generator, tokenizer)


def _correct(cfg: CorrectConfig, out: Path, generator, tokenizer) -> dict:
    from codistill.correct.attempts import failure_rows, resolve_format
    from codistill.correct.fit import RowFit
    from codistill.correct.rows import write_rows

    t0 = time.time()
    fits: list = []  # the run's RowFit (None: max_row_tokens unset), made once its format is known

    def pick(fmt, rows: list[dict], att: dict):
        fits.append(RowFit.of(cfg, fmt, tokenizer))
        return failure_rows(cfg, rows, att, fits[0].prompt_fits if fits[0] else None)

    run = attempt_and_ask("correct", cfg, out, resolve_format, pick, generator, tokenizer)
    outputs = write_rows(cfg, out, run.records, {r["id"]: r for r in run.fixes}, fit=fits[0])
    return write_manifest("correct", out, _manifest(outputs=outputs, wall=time.time() - t0, **vars(run)), "kept")


def _manifest(*, outputs: dict, wall: float, **run) -> dict:
    """correct_manifest.json's content (``run``: the fields of a :class:`~codistill.correct.failures.
    FailureRun`; ``outputs``: :func:`~codistill.correct.rows.write_rows`'s counts, files, mix and rows' layout;
    tests/test_report_cost.py writes manifests through it)."""
    records = run["records"]
    kept = sum(1 for r in records if r.get("valid"))
    dropped = Counter(reason_group(r.get("reason")) for r in records if not r.get("valid"))
    return manifest("correct", FailureRun(**run), wall, kept="kept", per_kept="tokens_per_kept_correction",
                    judged_as="corrections", solved=True,
                    outcome={"kept": kept, "dropped": len(records) - kept, "dropped_by_reason": dict(dropped)},
                    tail={"train_rows": outputs["train_rows"],
                          "left_out_too_long": outputs.get("left_out_too_long", 0)}, files=outputs["files"],
                    extra={"mix": outputs["mix"], "rows": outputs.get("rows")})


def incomplete_error(manifest: dict, resume: str = "the same `codistill correct` command") -> CorrectIncompleteError | None:
    """The error a command ends with when failures are left without a correction (None: complete)."""
    return incomplete(manifest, "correct", resume, CorrectIncompleteError)
