"""What a teacher mode is: :class:`ModeSpec` (its sections and how they are named) and
:class:`Mode` (what the teach loop asks of it). See :mod:`codistill.teacher.modes`.

:class:`ModeSpec` is defined in :mod:`codistill.teacher.templates` (which imports no mode) and
re-exported here.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

from codistill.teacher.templates import ModeSpec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from codistill.teacher.config import TeachConfig
    from codistill.teacher.parse import Parsed, ValidationRules
    from codistill.teacher.runner import ProblemRunner

__all__ = ["Mode", "ModeSpec", "RunContext", "aliases", "reject_attempt"]


def aliases(table: dict[str, list[str]]) -> dict[str, str]:
    """``{section: [heading names]}`` as ``{heading name: section}`` (:attr:`ModeSpec.aliases`)."""
    out = {}
    for key, names in table.items():
        for n in names:
            out[n] = key
    return out


@dataclass
class RunContext:
    """What a mode sees of one teach run: the config, the problems by id (full tests, for a judge),
    ``resources`` (closed when the run ends) and ``state`` (what :meth:`Mode.open` set up)."""

    cfg: TeachConfig
    problems: dict
    resources: ExitStack = field(default_factory=ExitStack)
    state: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.resources.close()


def reject_attempt(parsed: Parsed, entry: dict, reason: str) -> None:
    """Turn a parsed answer down after parsing (leakage, a failing judge): the answer and its
    attempt log entry become invalid with ``reason``."""
    parsed.valid = False
    parsed.reason = reason
    entry.update(valid=False, reason=reason)


class Mode:
    """A teacher mode. Subclasses set :attr:`spec` and override the hooks they need; the
    defaults describe a mode that shows the teacher the problem, parses headed sections, keeps the
    first valid answer and trains on the reference solution.

    Hooks in the order the teach loop calls them:

    * :meth:`template` — the packaged prompt template (``teacher/prompts/<name>.txt``);
    * :meth:`select_rows` — which data rows the mode teaches;
    * :meth:`prompt_fields` — the values of the mode's own placeholders (:attr:`ModeSpec.fields`)
      for a row: what the prompt shows beyond the problem and the reference (a student's attempt);
    * :meth:`open` — once per run, before the first teacher call (only when rows are left to ask):
      set up resources (a sandbox judge) in ``run.resources`` / ``run.state``;
    * :meth:`split` — an answer's sections (pure; cached answers are re-parsed for free), called by
      :func:`codistill.teacher.parse.parse_answer` between its common checks;
    * :meth:`check` — accept or :func:`reject_attempt` a parsed answer (leakage, the judge), adding its
      fields to the attempt's log entry;
    * :meth:`code` — the code of the training row built from an answer;
    * :meth:`enough` — whether the valid answers so far end the problem's attempts;
    * :meth:`finish` — add mode fields to the problem's record (``contexts.jsonl``).

    A mode that needs more than the attempt loop (a search with further teacher calls and a
    scorer model, :mod:`.reverse`) overrides :meth:`run_row`, which owns a whole row (the default
    runs the attempt loop above, ``runner.attempts(row)``); its settings are :attr:`options` (a
    pydantic model validating ``TeachConfig.mode_options``), what makes its records reusable on
    resume beyond the common settings is :meth:`run_key`, and :meth:`summarize` adds a block to
    the manifest (``mode_summary``).

    Whatever a hook writes into records, attempt logs or cache keys is part of the run directory's
    format: change it only with the version numbers that guard resumption.
    """

    spec: ModeSpec
    options: ClassVar[type[BaseModel] | None] = None  # the schema of TeachConfig.mode_options (None: none taken)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def template(self) -> tuple[str, str]:
        """``(text, source)`` of the mode's packaged template; ``source`` is recorded in every
        context and the manifest."""
        text = resources.files("codistill.teacher").joinpath("prompts", f"{self.name}.txt").read_text(encoding="utf-8")
        return text, f"codistill/teacher/prompts/{self.name}.txt"

    def select_rows(self, rows: list[dict]) -> list[dict]:
        """The rows of a ``codistill data`` folder (or a benchmark) this mode teaches."""
        return rows

    def prompt_fields(self, row: dict) -> dict[str, str]:
        """The values of :attr:`ModeSpec.fields` for ``row`` (default: the row's own keys of those
        names, as text). Part of every call's cache key, so an answer is never reused for another
        attempt shown to the teacher."""
        missing = [f for f in self.spec.fields if row.get(f) is None]
        if missing:
            raise ValueError(f"teacher mode {self.name!r} needs {', '.join(missing)} in row {row.get('id')!r}")
        return {f: str(row[f]) for f in self.spec.fields}

    def open(self, run: RunContext) -> None:
        """Set up what :meth:`check` needs for the run (closed by ``run.resources``)."""

    def split(self, text: str, rules: ValidationRules) -> Parsed:
        """Sections of a non-empty answer (invalid with a reason when its shape is wrong); the
        required sections and lengths are checked afterwards by ``parse_answer``."""
        from codistill.teacher.parse import Parsed, split_sections

        return Parsed(split_sections(text, self.spec.aliases), True)

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        """Judge a parsed answer beyond its shape: :func:`reject_attempt` it (``parsed`` may already be
        invalid) and add fields to ``entry`` (the attempt log). Returns the detail kept as the
        record's ``leakage_detail`` when this answer is chosen (None: none)."""
        return None

    def code(self, row: dict, parsed: Parsed) -> str | None:
        """The code of the training row made from this answer (default: the reference)."""
        return row.get("code")

    def enough(self, passing: list[dict], cfg: TeachConfig) -> bool:
        """True when the valid candidates found so far end the problem's attempts."""
        return True

    def finish(self, record: dict, passing: list[dict]) -> None:
        """Add mode fields to a finished problem's record (``passing``: every valid candidate)."""

    def settings(self, cfg: TeachConfig) -> BaseModel | None:
        """``cfg.mode_options`` validated by :attr:`options` (None for a mode without options)."""
        return None if self.options is None else self.options.model_validate(cfg.mode_options)

    def run_key(self, cfg: TeachConfig) -> dict | None:
        """What, besides the common settings, a finished record of this mode depends on (its
        options, extra prompt templates); part of the resume key. None: nothing (old keys stay valid)."""
        return None

    def run_row(self, runner: ProblemRunner, row: dict) -> dict:
        """One data row from start to record (called from the teach loop's worker threads). Default:
        the attempt loop (:meth:`codistill.teacher.runner.ProblemRunner.attempts`)."""
        return runner.attempts(row)

    def summarize(self, run: RunContext, records: list[dict]) -> dict | None:
        """A block for ``teach_manifest.json`` (``mode_summary``) over every finished record, or None.
        ``run.state`` holds what :meth:`open` set up only when rows were asked in this run."""
        return None
