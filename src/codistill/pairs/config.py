"""Settings of the pairs stage: :class:`PairsConfig` (what ``codistill pairs`` and a recipe's
``pairs:`` section take). The student, its sampling and the teacher's settings are the correct
stage's (:class:`~codistill.correct.config.AttemptSettings`, :class:`~codistill.correct.config.
CorrectionSettings`: the same attempts, read the same way, and the same teacher machinery);
:meth:`PairsConfig.key` is the stage's identity."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from codistill.correct.config import AttemptSettings, CorrectionSettings, StudentConfig

__all__ = ["MODE", "PairsConfig"]

MODE = "first_error"  # the teacher mode that writes the corrections (codistill.teacher.modes.first_error)


class PairsConfig(CorrectionSettings, AttemptSettings):
    """Configuration of ``make_pairs`` (``codistill pairs``); the run directory is its ``out_dir``
    argument. The student's format must have a reasoning section before the code."""

    MODE: ClassVar[str] = MODE

    # the settings of AttemptSettings and CorrectionSettings that read otherwise here (they keep their place)
    student: StudentConfig = Field(..., description="the student whose failures become pairs: the model the DPO "
                                   "starts from (base, or base + the SFT adapter the DPO continues), in the run's "
                                   "student format")
    failures_per_problem: int = Field(1, ge=1, description="distinct failed answers per problem shown to the teacher "
                                      "(the first ones in sample order): at most one pair each")
    judge_timeout_s: float = Field(10.0, gt=0, description="seconds per program (the student's and the chosen answers)")
    max_attempts: int = Field(2, ge=1, description="teacher calls per failure at most (an answer that is malformed, "
                              "names no step of the student's, or whose chosen answer fails the judge is asked again)")
    template: str | None = Field(None, description="a first_error template of your own (default: the packaged one)")
    progress_every: int = Field(10, ge=1, description="a progress line every N finished items (and every 30 s)")
