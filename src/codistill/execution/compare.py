"""Trusted comparison of a program's outputs with expected outputs.

Runs in codistill's own process on *decoded wire values* (fresh built-in objects), never on
objects made by the untrusted program. The rules reproduce EvalPlus 0.3.1
(``evalplus/eval/__init__.py::unsafe_execute`` and ``_special_oracle.py``, Apache-2.0), so
verdicts agree with EvalPlus on HumanEval+ and MBPP+:

* exact ``==`` first;
* floats: if ``atol == 0`` and the expected value is a float or a list/tuple of floats, ``atol``
  becomes 1e-6 (and, as in EvalPlus, stays so for the task's later cases); a non-exact match
  then needs the same type, the same length, and ``np.allclose(out, exp, rtol=1e-7, atol)``;
* special oracles by name (``humaneval/find_zero``, ``mbpp/<entry_point>``).
"""

from __future__ import annotations

import math
from typing import Any

# EvalPlus _special_oracle.py lists (credit: EvalPlus, Apache-2.0).
MBPP_OUTPUT_NOT_NONE_TASKS = ["check_str", "text_match_three", "text_starta_endb"]
MBPP_OUTPUT_SET_EQ_TASKS = [
    "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
    "larg_nnum", "intersection_array", "find_dissimilar", "Diff",
]


def _poly(xs: list, x: float) -> float:
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_Area(base_edge, height):  # noqa: N802 - EvalPlus's name (Mbpp/581)
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance_nums(num1, num2):  # Mbpp/558
    a, b = str(num1), str(num2)
    n = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(n), b.zfill(n)))


def is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def child_transform(oracle: str | None) -> str | None:
    """Name of the output transform the child applies before encoding (see harness)."""
    if oracle and oracle.startswith("mbpp/") and oracle[5:] in MBPP_OUTPUT_NOT_NONE_TASKS:
        return "mbpp/not_none"
    return None


class CaseComparer:
    """Compares the cases of one task in order (EvalPlus's atol update carries across cases)."""

    def __init__(self, atol: float = 0.0, oracle: str | None = None):
        self.atol = float(atol)
        self.oracle = oracle or ""

    def __call__(self, inp: list, out: Any, exp: Any) -> bool:
        try:
            return self._match(inp, out, exp)
        except Exception:  # noqa: BLE001 - any failure to compare is a mismatch, as in EvalPlus
            return False

    def _match(self, inp: list, out: Any, exp: Any) -> bool:
        exact = out == exp
        name = self.oracle.split("/", 1)[1] if "/" in self.oracle else ""
        if self.oracle.startswith("mbpp/"):
            if name == "are_equivalent":
                exact = True
            elif name == "sum_div":
                exact = exact or out == 0
            elif name == "surface_Area":
                exact = exact or abs(out - _surface_Area(*inp)) <= self.atol
            elif name == "digit_distance_nums":
                exact = exact or out == _digit_distance_nums(*inp)
            elif name in MBPP_OUTPUT_SET_EQ_TASKS:
                exact = set(out) == set(exp)
            elif name in MBPP_OUTPUT_NOT_NONE_TASKS:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if self.oracle == "humaneval/find_zero":
            return abs(_poly(*inp, out)) <= self.atol
        if self.atol == 0 and is_floats(exp):
            self.atol = 1e-6
        if not exact and self.atol != 0:
            if type(out) is not type(exp):
                return False
            if isinstance(exp, (list, tuple)) and len(out) != len(exp):
                return False
            import numpy as np

            return bool(np.allclose(out, exp, rtol=1e-07, atol=self.atol))
        return bool(exact)


def stdout_matches(got: str, expected: str) -> bool:
    """Stdio comparison: per line, trailing whitespace ignored, trailing blank lines ignored."""

    def norm(s: str) -> list[str]:
        lines = [line.rstrip() for line in s.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    if norm(got) == norm(expected):
        return True
    # Token-level fallback (TACO/APPS judges compare whitespace-split tokens too).
    return got.split() == expected.split()
