"""One problem row of a teach run: ask the teacher (or the cache), parse, let the mode judge the
answer, retry until the mode has enough valid answers or ``max_attempts`` calls were made, and
build the row's record for ``contexts.jsonl``."""

from __future__ import annotations

from codistill.store import sha256_json
from codistill.teacher.cache import ResponseCache
from codistill.teacher.client import EmptyAnswerError, TeacherClient
from codistill.teacher.config import TeachConfig
from codistill.teacher.modes import Mode, RunContext
from codistill.teacher.parse import PARSER_VERSION, parse_answer, template_echo
from codistill.teacher.templates import PromptTemplate, render_context

__all__ = ["ProblemRunner", "row_hash"]


def row_hash(row: dict, fields: dict | None = None) -> str:
    """What a cached answer was an answer to: the row's id, statement and reference, and the
    values of the mode's own prompt fields when it has any (:meth:`Mode.prompt_fields`; modes
    without them keep the keys they always had)."""
    parts = [row["id"], row["prompt"], row.get("code") or ""]
    return sha256_json(parts + [fields] if fields else parts)[:16]


class ProblemRunner:
    """``run(row) -> record``; thread-safe (the cache and the client are)."""

    def __init__(self, cfg: TeachConfig, mode: Mode, template: PromptTemplate, cache: ResponseCache,
                 client: TeacherClient, run: RunContext):
        self.cfg, self.mode, self.template, self.cache, self.client = cfg, mode, template, cache, client
        self.run_ctx = run

    def params(self, attempt: int):
        """Sampling params of attempt ``attempt`` (a greedy first try is retried at ``retry_temperature``)."""
        from codistill.backends import SamplingParams

        s = self.cfg.sampling
        temp = s.temperature if attempt == 0 or s.temperature > 0 else s.retry_temperature
        return SamplingParams(n=1, temperature=temp, top_p=s.top_p if temp > 0 else 1.0,
                              max_new_tokens=s.max_new_tokens, seed=s.seed + attempt, stop=self.mode.spec.stop)

    def key(self, row: dict, attempt: int) -> str:
        """The cache key of an attempt (see :mod:`codistill.teacher.cache`)."""
        p = self.params(attempt)
        key = {"teacher": self.cfg.teacher.model, "template": self.template.sha256, "params": p.model_dump(),
               "row": row["id"], "row_hash": row_hash(row, self.mode.prompt_fields(row)), "attempt": attempt}
        if self.cfg.teacher.extra_body:  # may change answers (top_k, ...); absent keeps old keys valid
            key["extra_body"] = self.cfg.teacher.extra_body
        return sha256_json(key)

    def ask(self, row: dict, prompt: str, attempt: int) -> tuple[str, dict, bool]:
        """``(text, usage, cached)`` of an attempt: from the cache, else from the teacher (then cached)."""
        k = self.key(row, attempt)
        hit = self.cache.get(k)
        if hit is not None:
            return hit["text"], hit["usage"], True
        text, usage = self.client(prompt, self.params(attempt))
        if not text.strip():
            # a server in trouble answers 200 with nothing; cached, that outage would be permanent
            raise EmptyAnswerError(f"the teacher answered with no text (attempt {attempt + 1}); not cached: "
                                   "the row is asked again on the next run")
        self.cache.put({"key": k, "id": row["id"], "attempt": attempt, "text": text, "usage": usage,
                        "teacher": self.cfg.teacher.model, "template": self.template.sha256})
        return text, usage, False

    def run(self, row: dict) -> dict:
        """The row's record, as its mode makes it (:meth:`codistill.teacher.modes.Mode.run_row`;
        by default :meth:`attempts`)."""
        return self.mode.run_row(self, row)

    def attempts(self, row: dict) -> dict:
        """The attempt loop: ask, parse, let the mode judge, retry until the mode has enough valid
        answers or ``max_attempts`` calls were made; the row's record."""
        cfg, mode = self.cfg, self.mode
        prompt = self.template.render(row["prompt"], row.get("code"), row.get("entry_point"),
                                      fields=mode.prompt_fields(row))
        tokens = {"prompt": 0, "completion": 0}
        seconds = 0.0
        tried: list[dict] = []  # the attempt log
        passing: list[dict] = []  # valid candidates
        final = None
        for attempt in range(cfg.max_attempts):
            text, usage, cached = self.ask(row, prompt, attempt)
            tokens["prompt"] += usage.get("prompt_tokens", 0)
            tokens["completion"] += usage.get("completion_tokens", 0)
            seconds += usage.get("seconds", 0.0)
            parsed = parse_answer(cfg.mode, text, cfg.validation)
            if parsed.valid:
                echo = template_echo(text, self.template.text, cfg.validation.template_echo_words)
                if echo is not None:
                    parsed.reject(f"copies the template text ({echo!r})")
            entry = {"attempt": attempt, "cached": cached, "valid": parsed.valid, "reason": parsed.reason,
                     "completion_tokens": usage.get("completion_tokens", 0)}
            detail = mode.check(self.run_ctx, row, text, parsed, entry)
            tried.append(entry)
            cand = {"sections": parsed.sections, "raw": text, "valid": parsed.valid, "reason": parsed.reason,
                    "leakage": detail, "code": mode.code(row, parsed)}
            if parsed.valid:
                passing.append(cand)
                if mode.enough(passing, cfg):
                    break
            final = cand
        best = passing[0] if passing else final
        rec = {
            "id": row["id"], "problem_id": row.get("problem_id", row["id"]), "mode": cfg.mode,
            "sections": best["sections"], "context": render_context(best["sections"], cfg.mode),
            "raw": best["raw"], "code": best["code"], "valid": bool(passing),
            "reason": None if passing else best["reason"],
            "leakage": (best["leakage"] or {}).get("score") if best["leakage"] else tried[-1].get("leakage"),
            "leakage_detail": best["leakage"],
            "teacher": cfg.teacher.model, "template_hash": self.template.sha256,
            "template": self.template.source, "params": self.params(0).model_dump(),
            "parser_version": PARSER_VERSION, "attempts": len(tried), "attempt_log": tried,
            "tokens": tokens, "seconds": round(seconds, 3),
        }
        mode.finish(rec, passing)
        return rec
