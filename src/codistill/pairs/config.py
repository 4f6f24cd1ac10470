"""Settings of the pairs stage: :class:`PairsConfig` (what ``codistill pairs`` and a recipe's
``pairs:`` section take). The student, its sampling, the cut of its answer in the teacher's prompt
and the teacher's settings are the correct stage's (:class:`~codistill.correct.config.
CutAttemptSettings`, :class:`~codistill.correct.config.CorrectionSettings`: the same attempts, read
the same way, and the same teacher machinery); :meth:`PairsConfig.key` is the stage's identity.

Fields added after the stage's keys were first written are left out of the key while at their
default (:attr:`PairsConfig.ABSENT_FROM_KEY_AT`), so a run that does not set them keeps its key:
``max_attempt_chars`` (the cut only changes the prompts of answers longer than it, and a prompt
enters each row's hash: such a row is asked again, never answered by a record of the uncut prompt)
and ``max_pair_tokens`` (None: no skip, what the stage did before it existed).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from codistill.correct.config import CorrectionSettings, CutAttemptSettings, StudentConfig

__all__ = ["MODE", "PairsConfig"]

MODE = "first_error"  # the teacher mode that writes the corrections (codistill.teacher.modes.first_error)


class PairsConfig(CorrectionSettings, CutAttemptSettings):
    """Configuration of ``make_pairs`` (``codistill pairs``); the run directory is its ``out_dir``
    argument. The student's format must have a reasoning section before the code."""

    MODE: ClassVar[str] = MODE

    # the settings of CutAttemptSettings and CorrectionSettings that read otherwise here (they keep their place)
    student: StudentConfig = Field(..., description="the student whose failures become pairs: the model the DPO "
                                   "starts from (base, or base + the SFT adapter the DPO continues), in the run's "
                                   "student format")
    failures_per_problem: int = Field(1, ge=1, description="distinct failed answers per problem shown to the teacher "
                                      "(the first ones in sample order): at most one pair each")
    max_attempt_chars: int = Field(6000, ge=200, description="a failed answer's numbered steps and code are cut to "
                                   "this many characters in all in the teacher's prompt (the shorter kept whole "
                                   "when it takes less than half); the pair keeps the whole answer")
    judge_timeout_s: float = Field(10.0, gt=0, description="seconds per program (the student's and the chosen answers)")
    max_attempts: int = Field(2, ge=1, description="teacher calls per failure at most (an answer that is malformed, "
                              "names no step of the student's, or whose chosen answer fails the judge is asked again)")
    template: str | None = Field(None, description="a first_error template of your own (default: the packaged one)")
    # the stage's own
    max_pair_tokens: int | None = Field(None, ge=16, description="set it to the DPO arm's train.data.max_length (a "
                                        "recipe sets it from the arm): a failed answer whose pair could not fit it "
                                        "(the student's prompt + the answer, in the student's tokens, over this) is "
                                        "skipped before the teacher is asked, counted as skipped_too_long; DPO "
                                        "training would drop its pair. None: no skip")
    progress_every: int = Field(10, ge=1, description="a progress line every N finished items (and every 30 s)")

    ABSENT_FROM_KEY_AT: ClassVar[dict[str, Any]] = {"max_attempt_chars": 6000, "max_pair_tokens": None}
