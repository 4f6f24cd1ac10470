"""``explain`` (the paper): the teacher sees the problem AND the reference solution and explains it
in five sections (intent, steps, formulas, edge cases, built-ins), without code. Every answer is
scored for leakage against the reference (:mod:`codistill.metrics.leakage`); an answer above
``leakage_threshold`` is rejected. The training row's code is the reference."""

from __future__ import annotations

from codistill.metrics import leakage as leak
from codistill.teacher.modes.base import Mode, ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.parse import Parsed

__all__ = ["ExplainMode", "ShowsReference"]


class ShowsReference(Mode):
    """A mode whose prompt shows the reference solution: answers must not give it away."""

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        cfg = run.cfg
        if not parsed.valid:  # scored all the same, for the manifest's leakage distribution
            entry["leakage"] = leak.leakage_score(text, row["code"], public=row["prompt"], n=cfg.leakage_n)
            return None
        lk = leak.leakage(text, row["code"], public=row["prompt"], n=cfg.leakage_n)
        entry["leakage"] = lk["score"]
        if cfg.leakage_threshold is not None and lk["score"] > cfg.leakage_threshold:
            reject_attempt(parsed, entry, f"leakage {lk['score']:.2f} > {cfg.leakage_threshold}")
        return lk


class ExplainMode(ShowsReference):
    spec = ModeSpec(
        name="explain",
        needs_solution=True,
        sections=("intent", "steps", "formulas", "edge_cases", "builtins"),
        titles={"intent": "Intent", "steps": "Steps", "formulas": "Formulas",
                "edge_cases": "Edge cases", "builtins": "Built-ins"},
        required=("intent", "steps", "formulas", "edge_cases", "builtins"),
        aliases=aliases({
            "intent": ["intent", "problem intent", "goal", "purpose", "overview",
                       "understanding the problem", "problem understanding"],
            "steps": ["steps", "algorithm", "algorithm steps", "approach", "steps of the algorithm",
                      "step by step", "algorithm steps in plain words", "solution steps", "method"],
            "formulas": ["formulas", "formula", "key formulas", "math", "equations", "formulas and invariants",
                         "invariants", "recurrences", "mathematical formulas", "key formulas invariants or recurrences"],
            "edge_cases": ["edge cases", "edge case", "corner cases", "special cases", "edge cases and special inputs"],
            "builtins": ["built ins", "builtins", "built in functions", "library functions", "built ins used",
                         "functions used", "data structures", "built in functions and data structures",
                         "libraries", "builtin functions", "built ins and data structures"],
        }),
        stop=("\n### Problem", "\n### Reference solution"),
    )
