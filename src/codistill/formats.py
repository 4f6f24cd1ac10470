"""The student's format: one declaration of how a problem is shown and how an answer is laid out,
used by ``codistill train`` to build examples and by ``codistill eval`` to prompt and read answers.

A trained student is judged the way it was taught: the trainer stores its format (and the token
lengths of its training targets) with the adapter, and ``eval`` refuses an adapter judged in
another format or with a token budget shorter than what it was trained to write (see
:func:`check_adapter`); each refusal names the two values and the setting that changes it.

A format has two halves:

* **prompt**: ``prompt_mode`` ``chat`` (the statement, through ``prompt_template``, as one user
  turn of the tokenizer's chat template, with ``system_prompt`` if given, and the generation
  prompt) or ``completion`` (the templated statement verbatim, ending in a newline);
  ``prompt_template`` is text holding ``{prompt}``, or the name of a packaged template
  (``bare``: the statement alone; ``evalplus``: EvalPlus's instruction prompt) or a file path.
  :func:`render_prompt` is the one place the text is made; training tokenizes it as is, and
  evaluation sends the same text to the backend as a raw completion prompt, so the prompt token
  ids match (tests/test_formats.py checks it on the packaged tokenizer).
* **layout**: ``sections``, in order, each a template with one of ``{context}``, ``{code}``,
  ``{tests}``, joined by ``section_separator`` (a section with an empty field is left out);
  ``stop_after_code``: at evaluation, generation stops where the section after the code would
  begin, once the code section is closed (so the tests a student learned to write cost no tokens
  at judging time, and a student that writes its tests before its code still gets to its code).

``standard`` is not a trained format but the zero-shot protocol (EvalPlus's instruction prompt
through the backend's chat API, any answer layout): the untouched base is judged under it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_SECTIONS = [
    "### Reasoning\n{context}",
    "### Code\n```python\n{code}\n```",
    "### Tests\n```python\n{tests}\n```",
]
SECTION_FIELDS = ("context", "code", "tests")
PACKAGED_TEMPLATES = {"bare": "{prompt}"}  # evalplus: templates/eval_chat.txt
STANDARD = "standard"
# Which stop rule a format's stop_strings() follow: 2 = a later section's header stops generation
# only once the code section is closed (1: anywhere). Part of a format eval's recipe key, so an eval
# made under rule 1 is run again and regenerates the answers rule 1 cut short (codistill.evaluation.restop).
STOP_RULE = 2


def _packaged_template(name: str) -> str | None:
    if name in PACKAGED_TEMPLATES:
        return PACKAGED_TEMPLATES[name]
    if name == "evalplus":
        return resources.files("codistill").joinpath("templates", "eval_chat.txt").read_text()
    return None


def section_problems(sections: list[str], name: str) -> list[str]:
    """What is wrong with an answer layout (empty when nothing): each section holds exactly one of
    {context}, {code}, {tests}, once; exactly one holds {code}; no field in two sections."""
    problems, fields = [], []
    for s in sections:
        used = [f for f in SECTION_FIELDS if "{" + f + "}" in s]
        if len(used) != 1 or s.count("{" + used[0] + "}") != 1:
            problems.append(f"section {s!r} must contain exactly one of {{context}}, {{code}}, {{tests}} once")
        fields += used
    if fields.count("code") != 1:
        problems.append(f"{name} must contain exactly one section with {{code}}")
    if len(set(fields)) != len(fields):
        problems.append("each of {context}, {code}, {tests} may appear in one section only")
    return problems


class StudentFormat(BaseModel):
    """How a student is prompted and how its answers are laid out (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", description="shown in reports (a packaged format's name, or yours)")
    prompt_mode: Literal["chat", "completion"] = Field("chat", description="chat: one user turn through the "
                                                       "tokenizer's chat template; completion: the text verbatim")
    prompt_template: str = Field("{prompt}", description="text with {prompt}, or a packaged template (bare, "
                                 "evalplus) or a template file; stored resolved (as text)")
    system_prompt: str | None = Field(None, description="chat: a system message (None keeps the template's default)")
    sections: list[str] = Field(default_factory=lambda: list(DEFAULT_SECTIONS),
                                description="the answer layout, in order: each section holds exactly one of "
                                "{context}, {code}, {tests}; exactly one holds {code}")
    section_separator: str = Field("\n\n", description="text between the sections that are present")
    stop_after_code: bool = Field(True, description="eval: stop generating where the section after the code begins")

    @field_validator("prompt_template")
    @classmethod
    def _resolve_template(cls, v: str) -> str:
        if "{prompt}" in v:
            return v
        packaged = _packaged_template(v)
        if packaged is not None:
            return packaged
        path = Path(v).expanduser()
        if path.is_file():
            text = path.read_text()
            if "{prompt}" not in text:
                raise ValueError(f"template file {path} has no {{prompt}} placeholder")
            return text
        raise ValueError(f"prompt_template {v[:60]!r} holds no {{prompt}} and is neither a packaged template "
                         f"({', '.join([*PACKAGED_TEMPLATES, 'evalplus'])}) nor a file")

    @model_validator(mode="after")
    def _check_sections(self) -> StudentFormat:
        problems = section_problems(self.sections, "sections")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- identity ------------------------------------------------------------------------
    def key(self) -> dict:
        """What makes two formats the same for a model (the name is only a label)."""
        return self.model_dump(exclude={"name"})

    def same_as(self, other: StudentFormat | dict | None) -> bool:
        if other is None:
            return False
        other = other if isinstance(other, StudentFormat) else StudentFormat.model_validate(other)
        return self.key() == other.key()

    # -- prompt --------------------------------------------------------------------------
    def render_prompt(self, tokenizer: Any, statement: str) -> tuple[str, bool]:
        """(prompt text, whether it went through the chat template)."""
        text = self.prompt_template.replace("{prompt}", statement)
        if self.prompt_mode == "completion":
            return (text if text.endswith("\n") else text + "\n"), False
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("format prompt_mode 'chat' but the tokenizer has no chat template: declare "
                             "prompt_mode: completion in the format")
        messages = [{"role": "user", "content": text}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True

    def prompt_ids(self, tokenizer: Any, statement: str) -> list[int]:
        """Token ids of the prompt: the chat template writes its own special tokens."""
        text, chat = self.render_prompt(tokenizer, statement)
        return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])

    # -- layout --------------------------------------------------------------------------
    def _code_index(self) -> int:
        return next(i for i, s in enumerate(self.sections) if "{code}" in s)

    def code_tail(self) -> str:
        """The text the code section ends with after the code (``"\\n```"``: its closing fence)."""
        return self.sections[self._code_index()].split("{code}")[1]

    def stop_strings(self) -> list[str]:
        """Where generation may stop at evaluation: the start of a section after the code, *once the
        code section is closed* -- each stop is the code section's end (its closing fence), the
        separator and the later section's header (``"\\n```\\n\\n### Tests"``). A model that writes a
        later section before its code (the tests straight after the reasoning) is not cut off
        there: it goes on, and may still write its code (stop rule 2, :data:`STOP_RULE`; rule 1
        stopped at the bare header, see :meth:`stop_strings_rule1`). The cut text ends with the
        code (its closing fence is part of the stop); the extractor reads an unclosed fence."""
        return [self.code_tail() + h for h in self.stop_strings_rule1()] if self.code_tail() else \
            self.stop_strings_rule1()

    def stop_strings_rule1(self) -> list[str]:
        """Stop rule 1 (runs before 2026-12-02): the separator and a later section's header, wherever
        they come, so a model that wrote its tests before its code was stopped before the code."""
        if not self.stop_after_code:
            return []
        out = []
        for s in self.sections[self._code_index() + 1:]:
            field = next(f for f in SECTION_FIELDS if "{" + f + "}" in s)
            first_line = s.split("{" + field + "}")[0].split("\n")[0]
            if first_line.strip():  # a header such as "### Tests"
                out.append(self.section_separator + first_line)
        return out

    def answer_prefix_end(self, target: str, code_span: tuple[int, int]) -> int:
        """Characters of a training target that generation must produce before it may stop:
        through the end of the code section when ``stop_after_code``, else all of it."""
        if not self.stop_after_code:
            return len(target)
        return code_span[1] + len(self.code_tail())

    def data_fields(self) -> dict:
        """The training DataConfig fields this format sets."""
        return {"prompt_mode": self.prompt_mode, "prompt_template": self.prompt_template,
                "system_prompt": self.system_prompt, "target_sections": list(self.sections),
                "section_separator": self.section_separator}

    def describe(self) -> str:
        tpl = "bare statement" if self.prompt_template == "{prompt}" else "templated statement"
        kinds = [next(f for f in SECTION_FIELDS if "{" + f + "}" in s) for s in self.sections]
        return f"{self.name}: {self.prompt_mode} prompt ({tpl}); answer {' → '.join(kinds)}" + (
            "; stops after the code" if self.stop_after_code and self._code_index() < len(kinds) - 1 else "")


FORMATS: dict[str, dict] = {
    # The paper's layout: reasoning, then code, then tests; the bare statement as the user turn.
    "paper": {"name": "paper"},
    # The same, ending right after the code block (the tests section as an ablation).
    "paper-no-tests": {"name": "paper-no-tests", "sections": DEFAULT_SECTIONS[:2]},
    # Code only (plain SFT on the reference solutions).
    "code-only": {"name": "code-only", "sections": DEFAULT_SECTIONS[1:2]},
}
DEFAULT_FORMAT = "paper"


def get_format(spec: str | dict | StudentFormat | None) -> StudentFormat:
    """A packaged format by name, a mapping (``{base: paper, ...overrides}`` or full fields), or
    the default (``paper``) for None."""
    if isinstance(spec, StudentFormat):
        return spec
    if spec is None:
        spec = DEFAULT_FORMAT
    if isinstance(spec, str):
        if spec not in FORMATS:
            raise ValueError(f"unknown format {spec!r}: packaged formats are {', '.join(FORMATS)} "
                             "(or give a mapping with prompt_mode, prompt_template, sections, ...)")
        return StudentFormat.model_validate(FORMATS[spec])
    if not isinstance(spec, dict):
        raise ValueError(f"a format is a packaged name or a mapping, not {type(spec).__name__}")
    spec = dict(spec)
    base = spec.pop("base", None)
    merged = {**(FORMATS[base] if base in FORMATS else {}), **spec}
    if base is not None and base not in FORMATS:
        raise ValueError(f"format base {base!r} unknown: packaged formats are {', '.join(FORMATS)}")
    return StudentFormat.model_validate(merged)


# ------------------------------------------------------------------ the adapter's record
FORMAT_FILE = "codistill_format.json"


def length_stats(values: list[int]) -> dict:
    """n, mean, p50, p90, p99 (nearest rank) and max of token counts."""
    import math

    v = sorted(values)
    if not v:
        return {"n": 0}

    def pct(q: float) -> int:
        return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]

    return {"n": len(v), "mean": round(sum(v) / len(v), 1), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "max": v[-1]}


def required_budget(stats: dict, margin: int) -> int | None:
    return None if not stats.get("n") else int(stats["p99"]) + int(margin)


class ProtocolError(ValueError):
    """An eval that would judge a model in a format it was not trained in, or with too few tokens."""


def check_adapter(adapter: str | Path | None, fmt: StudentFormat | None, max_new_tokens: int, margin: int,
                  allow_format_mismatch: bool = False, allow_short_budget: bool = False,
                  where: str = "eval") -> dict:
    """Compare an eval's format and budget with what the adapter was trained on.

    Returns a record for results.json (``format_check``); raises :class:`ProtocolError` on a
    mismatch unless its override is set (the record then says the override was used)."""
    import json

    rec: dict = {"adapter_format": None, "eval_format": fmt.name if fmt else STANDARD, "overrides": []}
    if not adapter:
        return rec
    path = Path(adapter) / FORMAT_FILE
    if not path.is_file():
        rec["note"] = f"{path.name} not found: the adapter's training format is unknown (not trained by codistill?)"
        return rec
    info = json.loads(path.read_text())
    trained = StudentFormat.model_validate(info["format"])
    rec["adapter_format"] = trained.name
    if fmt is None or not trained.same_as(fmt):
        got = "the standard zero-shot protocol (EvalPlus instruction prompt)" if fmt is None else f"format {fmt.name!r}"
        msg = (f"the adapter {adapter} was trained in format {trained.name!r} ({trained.describe()}), but this "
               f"{where} would judge it under {got}. Evaluate it in its own format (recipe: the top-level "
               f"`format:` section; codistill eval: --format adapter), or set "
               "allow_format_mismatch (--allow-format-mismatch) to judge it this way on purpose")
        if not allow_format_mismatch:
            raise ProtocolError(msg)
        rec["overrides"].append("allow_format_mismatch")
    stats = info.get("generation_tokens") or {}
    need = required_budget(stats, margin)
    rec.update({"generation_tokens": stats, "required_budget": need, "max_new_tokens": max_new_tokens})
    if need is not None and max_new_tokens < need:
        msg = (f"max_new_tokens={max_new_tokens} is shorter than what the adapter {adapter} was trained to write "
               f"before it may stop: 99th percentile of its training targets = {stats['p99']} tokens (+ margin "
               f"{margin} = {need}). Raise --max-new-tokens (recipe: eval.max_new_tokens) to at least {need}, or "
               "set allow_short_budget (--allow-short-budget) to judge it with the short budget on purpose")
        if not allow_short_budget:
            raise ProtocolError(msg)
        rec["overrides"].append("allow_short_budget")
    return rec
