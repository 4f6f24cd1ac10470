"""TACO / APPS format files (users bring the real data; no package ships it).

A file is a JSON array, JSONL, or a JSON object of records (optionally gzipped). Fields used:

* ``question`` -- the statement; ``starter_code`` -- optional code to complete;
* ``solutions`` -- a JSON *string* holding a list of reference programs (a list is accepted too);
* ``input_output`` -- a JSON string ``{"inputs": [...], "outputs": [...], "fn_name"?: str}``;
* ``difficulty``; ``problem_id`` (APPS) names the problem, else its index in the file is used.

Problems without ``fn_name`` are stdin/stdout problems (:class:`StdioTests`; an input or output
given as a list of lines is joined with newlines, as TACO's ``testing_util`` does). Problems with
``fn_name`` are call-based (:class:`CallTests`); when the starter code defines ``class Solution``
the function is ``Solution.<fn_name>``, called on a fresh instance (TACO does the same).

Call-based outputs: APPS/TACO store each expected return value wrapped in a list (``[[3], [7]]``
for returns 3 and 7), and their checker accepts ``out == exp`` or ``out == exp[0]``. We unwrap
here: an expected value that is a list of length 1 becomes its item (the unwrapped case indices
are in ``meta["unwrapped_outputs"]``). This matches TACO except for a function whose true answer
is itself a one-element list stored unwrapped (TACO would accept both forms; we only the item).
TACO also turns a returned tuple into a list before comparing; our judge compares types exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from codistill.execution import wire
from codistill.problems._common import LoadStats, read_records
from codistill.problems.schema import CallTests, Problem, StdioTests

TACO_LICENSE = "user-supplied file (TACO: Apache-2.0; APPS: MIT)"
_META_KEYS = ("url", "source", "name", "tags", "skill_types", "time_limit", "memory_limit",
              "raw_tags", "date", "Expected Time Complexity", "Expected Auxiliary Space")


def load_taco(
    path: str | Path | None = None,
    limit: int | None = None,
    *,
    data_dir=None,
    source: str = "taco",
    license: str = TACO_LICENSE,
    stats: LoadStats | None = None,
) -> list[Problem]:
    """Problems from a TACO/APPS-format file (see module docstring)."""
    if path is None:
        raise ValueError("the taco loader needs a file: load_benchmark('taco', path='train.jsonl')")
    path = Path(path)
    stats = stats or LoadStats(source)
    out: list[Problem] = []
    for i, rec in enumerate(read_records(path)):
        if limit is not None and len(out) >= limit:
            break
        stats.read += 1
        pid = f"{source}/{rec.get('problem_id', i)}"
        try:
            out.append(taco_problem(rec, pid, source=source, license=license))
        except _Skip as e:
            stats.skip(str(e), pid)
    stats.loaded = len(out)
    return out


class _Skip(Exception):
    pass


def _json_field(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise _Skip("unreadable JSON field") from e
    return value


def _text(x: Any) -> str:
    return "\n".join(str(i) for i in x) if isinstance(x, list) else str(x)


def taco_problem(rec: dict, pid: str, source: str = "taco", license: str = TACO_LICENSE) -> Problem:
    io = _json_field(rec.get("input_output"), {})
    if not isinstance(io, dict):
        raise _Skip("no tests")
    inputs, outputs = io.get("inputs") or [], io.get("outputs") or []
    if not inputs or len(inputs) != len(outputs):
        raise _Skip("no tests" if not inputs else "inputs and outputs differ in length")
    solutions = _json_field(rec.get("solutions"), [])
    if not isinstance(solutions, list):
        solutions = []
    starter = rec.get("starter_code") or ""
    fn = io.get("fn_name")
    meta: dict[str, Any] = {k: rec[k] for k in _META_KEYS if k in rec}
    if starter:
        meta["starter_code"] = starter
    if fn:
        if not all(isinstance(x, list) for x in inputs):
            raise _Skip("call inputs are not argument lists")
        unwrapped = [j for j, o in enumerate(outputs) if isinstance(o, list) and len(o) == 1]
        exp = [o[0] if j in set(unwrapped) else o for j, o in enumerate(outputs)]
        fn_name = f"Solution.{fn}" if re.search(r"^\s*class\s+Solution\b", starter, re.M) else fn
        tests = [CallTests(name="base", fn_name=fn_name, inputs=inputs, outputs=[wire.from_plain(o) for o in exp])]
        meta["unwrapped_outputs"] = unwrapped
        io_style, entry, fmt = "function", fn, "Use Call-Based format"
    else:
        tests = [StdioTests(name="base", inputs=[_text(x) for x in inputs], outputs=[_text(x) for x in outputs])]
        io_style, entry, fmt = "stdio", None, "Use Standard Input format"
    prompt = rec.get("question", "").strip()
    if starter.strip():
        prompt += "\n\n" + starter.rstrip() + "\n"
    prompt += f"\n\n{fmt}"
    diff = rec.get("difficulty")
    return Problem(
        id=pid,
        source=source,
        prompt=prompt,
        entry_point=entry,
        io_style=io_style,
        solutions=[s for s in solutions if isinstance(s, str)],
        tests=tests,
        difficulty=None if diff in (None, "") else str(diff),
        license=license,
        meta=meta,
    )
