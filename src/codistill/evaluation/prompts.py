"""The protocol of an eval: which prompt each problem gets, where generation stops, how the
answer is read. Either the *standard* zero-shot protocol (the packaged or given prompt template,
through the backend's chat API or as a completion prompt) or a *student format*
(:mod:`codistill.formats`: the prompt text rendered here, exactly as training tokenized it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from codistill.evaluation.config import PACKAGED_TEMPLATE_SETS, EvalConfig
from codistill.problems.schema import Problem

STOPS_COMPLETION_CODE = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert"]
STOPS_COMPLETION_DOC = ["\nassert", '\n"""', "\nif __name__", "\nprint(", "\n```"]


def _template(cfg: EvalConfig, mode: str) -> str:
    """The prompt template: ``template_dir``'s file, else a packaged set's, else the default.

    The default chat template is EvalPlus's instruction prompt (the problem inside a fenced block).
    A model fine-tuned on bare problem statements (``codistill train``'s prompt) sees a different
    user turn there; ``template_dir="bare"`` shows it the statement alone, as in training.
    """
    name = f"eval_{mode}.txt"
    if cfg.template_dir:
        folder = Path(cfg.template_dir)
        if not folder.is_dir():
            if cfg.template_dir not in PACKAGED_TEMPLATE_SETS:
                raise ValueError(f"template_dir {cfg.template_dir!r} is neither a folder nor a packaged template set "
                                 f"({', '.join(PACKAGED_TEMPLATE_SETS)}); give a folder holding eval_chat.txt "
                                 "and/or eval_completion.txt")
            packaged = resources.files("codistill").joinpath("templates", cfg.template_dir, name)
            if packaged.is_file():
                return packaged.read_text()
        elif (folder / name).is_file():
            return (folder / name).read_text()
    return resources.files("codistill").joinpath("templates", name).read_text()


def render_prompt(problem: Problem, template: str) -> str:
    return template.replace("{prompt}", problem.prompt.strip() if "```" in template else problem.prompt)


def resolve_protocol(cfg: EvalConfig) -> tuple[Any, dict]:
    """(the student format or None for the standard protocol, the adapter check record); raises
    codistill.formats.ProtocolError when the adapter was trained in another format or to write
    more tokens than ``max_new_tokens`` (unless the matching override is set)."""
    from codistill.formats import FORMAT_FILE, ProtocolError, StudentFormat, check_adapter, get_format

    if cfg.format in (None, "standard"):
        fmt = None
    elif cfg.format == "adapter":
        path = Path(cfg.adapter or "") / FORMAT_FILE
        if not cfg.adapter or not path.is_file():
            raise ProtocolError(f"format 'adapter' needs an adapter with {FORMAT_FILE} (written by codistill train); "
                                f"{'no adapter given' if not cfg.adapter else f'{path} does not exist'}")
        fmt = StudentFormat.model_validate(json.loads(path.read_text())["format"])
    else:
        fmt = get_format(cfg.format)
    check = check_adapter(cfg.adapter, fmt, cfg.max_new_tokens, cfg.budget_margin,
                          allow_format_mismatch=cfg.allow_format_mismatch, allow_short_budget=cfg.allow_short_budget)
    return fmt, check


@dataclass
class Protocol:
    """What the backend is asked and how its answers are read, for one eval."""

    fmt: Any  # codistill.formats.StudentFormat, or None for the standard protocol
    check: dict  # the adapter check (codistill.formats.check_adapter)
    backend_mode: str  # the prompt_mode the backend is created with
    mode: str = "chat"  # "completion": answers continue the prompt (code extraction)
    template: str | None = None
    tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "Protocol":
        """Checked against the adapter before anything is loaded (raises ProtocolError)."""
        fmt, check = resolve_protocol(cfg)
        return cls(fmt=fmt, check=check, backend_mode="completion" if fmt is not None else cfg.prompt_mode)

    def bind(self, cfg: EvalConfig, generator: Any, tokenizer: Any) -> None:
        """Once the backend is loaded: the template (standard) or the tokenizer (format)."""
        self.tokenizer = tokenizer
        if self.fmt is not None:
            if tokenizer is None:
                raise ValueError(f"format {self.fmt.name!r} needs the model's tokenizer to render its prompts, and "
                                 f"none could be loaded for {cfg.model!r}")
            self.mode = "chat"  # answers are whole responses, not prompt continuations
        else:
            self.mode = getattr(generator, "prompt_mode", "chat" if cfg.prompt_mode != "completion" else "completion")
            self.template = _template(cfg, self.mode)

    def prompt(self, problem: Problem) -> str:
        if self.fmt is not None:
            return self.fmt.render_prompt(self.tokenizer, problem.prompt)[0]
        return render_prompt(problem, self.template)

    def stops(self, problem: Problem) -> list[str]:
        if self.fmt is not None:
            return self.fmt.stop_strings()
        if self.mode != "completion":
            return []
        return STOPS_COMPLETION_CODE if problem.code_prefix else STOPS_COMPLETION_DOC

    def record(self) -> dict:
        """results.json ``protocol``."""
        fmt = self.fmt
        return {"name": fmt.name if fmt is not None else "standard",
                "format": fmt.model_dump() if fmt is not None else None,
                "description": fmt.describe() if fmt is not None else
                "standard zero-shot: EvalPlus instruction prompt, any answer layout",
                "check": self.check}

    @property
    def prompt_mode(self) -> str:
        return self.mode if self.fmt is None else self.fmt.prompt_mode
