"""Whether a correction's training rows can be trained at ``max_row_tokens`` (the correct stage's
setting; a recipe sets it to the correction arms' ``train.data.max_length``).

The trainer (:mod:`codistill.training.data`) never truncates a prompt and never cuts the code: it
drops a row whose prompt (rendered through the run's student format) + code section (with its
fences) + eos cannot fit ``max_length`` (with ``truncation: sections``, the default, the context
and the tests are shortened first). A lema row is prompted with the statement *and* the student's
failed attempt (:func:`codistill.correct.rows.lema_prompt`), its corrected-only twin with the
bare statement, so the trainer would drop lema rows whose twins it keeps: the two arms would train
on different corrections. With ``max_row_tokens`` set, the stage keeps an id in both variants or
in neither:

* **before the teacher is asked** (:meth:`RowFit.prompt_fits`, used by
  :func:`codistill.correct.attempts.failure_rows`): a failure whose lema prompt alone leaves no
  room for one token of code (and the eos) is never shown to the teacher (``failures_not_asked``:
  ``prompt_too_long``), and the next failure of its problem is taken;
* **after** (:meth:`RowFit.row_tokens`, used by :func:`codistill.correct.rows.write_rows`): a kept
  correction whose row of either variant needs more than ``max_row_tokens`` (counted as the
  trainer counts it: :func:`codistill.training.data.build_example` on the row with its context and
  tests left out, i.e. the prompt + the code section + eos) is left out of both variants and their
  mixes (``left_out_too_long`` in the manifest).

The counts use the student's tokenizer (the one given to the stage, else the student model's,
loaded on first use: nothing is loaded when no row is checked) and the training data settings the
run's format makes (:meth:`codistill.formats.StudentFormat.data_fields`), as the recipe's train
stage builds them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RowFit", "data_config"]

_UNBOUNDED = 1 << 30  # a max_length no row reaches: build_example then keeps every row, whole


def data_config(fmt, max_length: int):
    """The trainer's data settings for rows in the student format ``fmt`` (as the recipe's train
    stage sets them: the format's fields, its name and stop), at ``max_length``."""
    from codistill.training.config import DataConfig

    return DataConfig(**fmt.data_fields(), format_name=fmt.name, stop_after_code=fmt.stop_after_code,
                      max_length=max_length)


class RowFit:
    """The row-length checks of one run: the student format ``fmt``, ``max_tokens`` (the config's
    ``max_row_tokens``), and the student's tokenizer (``tokenizer``, else loaded from
    ``model``/``dtype`` on first use)."""

    def __init__(self, fmt, max_tokens: int, tokenizer: Any = None, model: str | None = None,
                 dtype: str = "float32"):
        self.fmt, self.max_tokens, self._tok, self.model, self.dtype = fmt, int(max_tokens), tokenizer, model, dtype
        self.config = data_config(fmt, self.max_tokens)
        self._whole = data_config(fmt, _UNBOUNDED)

    @classmethod
    def of(cls, cfg, fmt, tokenizer: Any = None) -> "RowFit | None":
        """The checks a correct config asks for (None: ``max_row_tokens`` unset, no check)."""
        if getattr(cfg, "max_row_tokens", None) is None:
            return None
        return cls(fmt, cfg.max_row_tokens, tokenizer, cfg.student.model, cfg.student.dtype)

    @property
    def tokenizer(self):
        if self._tok is None:
            from codistill.evaluation.run import load_tokenizer

            tok = load_tokenizer(self.model, self.dtype)
            if tok is None:
                raise ValueError(f"max_row_tokens counts the student's tokens, and no tokenizer could be loaded for "
                                 f"{self.model!r}: give a local student model, or leave max_row_tokens unset")
            self._tok = tok
        return self._tok

    def _eos(self) -> int:
        return int(self.config.append_eos and self.tokenizer.eos_token_id is not None)

    def prompt_tokens(self, prompt: str) -> int:
        """The prompt's tokens as the trainer renders and encodes it (never truncated)."""
        from codistill.training.data import format_prompt

        text, chat = format_prompt(self.tokenizer, prompt, self.config)
        return len(self.tokenizer(text, add_special_tokens=not chat)["input_ids"])

    def prompt_fits(self, prompt: str) -> bool:
        """Whether a row with this prompt could fit at all: the prompt, at least one token of code
        and the eos within ``max_tokens`` (a row over it is dropped by the trainer, whatever its code)."""
        return self.prompt_tokens(prompt) + 1 + self._eos() <= self.max_tokens

    def row_tokens(self, row: dict) -> int | None:
        """The fewest tokens the trainer needs for ``row`` (a training row: ``prompt``, ``code``):
        the prompt, the code section and the eos, with the context and tests left out (what its
        ``truncation: sections`` never cuts); None for a row without code (dropped either way)."""
        from codistill.training.data import build_example

        ex, _ = build_example({"id": row.get("id") or "", "prompt": row["prompt"], "code": row.get("code") or ""},
                              self.tokenizer, self._whole)
        return None if ex is None else len(ex.input_ids)

    def fits(self, row: dict) -> bool:
        """Whether the trainer keeps ``row`` at ``max_tokens`` (a row without code: True, it is
        dropped by the trainer in every variant alike)."""
        n = self.row_tokens(row)
        return n is None or n <= self.max_tokens
