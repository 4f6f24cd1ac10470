"""The correct stage's two variants keep the same ids by construction (codistill.correct.fit): the
trainer drops a row whose prompt + code cannot fit ``max_length`` and never truncates a prompt, and
a lema prompt carries the student's attempt, so without a check it would drop lema rows whose
corrected-only twins it keeps. With ``max_row_tokens`` (a recipe: the correction arms'
``train.data.max_length``, the smaller of the two), a failure whose lema prompt alone could not fit
is never shown to the teacher (``prompt_too_long``), and a kept correction whose row could not fit
is left out of both variants and both mixes (``left_out_too_long``), counted as the trainer counts
(training/data.py's own functions). Unset: the rows and the key as before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from _student_teacher import ScriptedStudent, canned_teacher, toy_problem, write_dataset
from codistill.correct import CorrectConfig, correct
from codistill.correct.fit import RowFit, data_config
from codistill.correct.rows import FILES, MIX_FILES, lema_prompt
from codistill.formats import get_format
from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.outputs import TRAIN_KEYS

FORMAT = {"base": "paper", "prompt_mode": "completion"}
LIMIT = 320  # max_row_tokens of the tests (checked against the rows below)


def _wrong(pid: str, body: str, notes: int = 0) -> str:
    return (f"### Reasoning\nCompute it.\n\n### Code\n```python\ndef {pid}(n):\n    return {body}\n```"
            + "".join(f"\n# a long note on the attempt, line {i}" for i in range(notes)))


def _correction(pid: str, code: str, notes: int = 0) -> str:
    body = code + "".join(f"\n    # a long comment in the corrected program, line {i}" for i in range(notes))
    return (f"## Incorrect step\nThe return.\n\n## Explanation of the error\nIt computes something else.\n\n"
            f"## Corrected solution\nReturn what the statement asks.\n\n## Corrected code\n```python\n"
            f"def {pid}(n):\n{body}\n```\n")


# inc: an attempt whose lema prompt alone is over LIMIT; dbl: a short attempt, a correction whose code is
# long (prompt fits, prompt + code does not); half: fits
STUDENT = {"inc": [_wrong("inc", "n + 2", notes=60)], "dbl": [_wrong("dbl", "n * n")], "half": [_wrong("half", "n")]}
TEACHER = {"inc": _correction("inc", "    return n + 1"), "dbl": _correction("dbl", "    return n * 2", notes=18),
           "half": _correction("half", "    return n // 2")}
PROBLEMS = [toy_problem("inc", [[1]], [2]), toy_problem("dbl", [[3]], [6]), toy_problem("half", [[4]], [2])]


class Scripted(ScriptedStudent):
    answers = STUDENT


@pytest.fixture()
def teacher():
    with canned_teacher(STUDENT, TEACHER) as t:
        yield t


def _cfg(tmp_path: Path, url: str, **kw) -> CorrectConfig:
    cd = tmp_path / "teach" / "train.jsonl"
    if not cd.exists():
        write_jsonl(cd, [{k: f"{k} {i}" if k != "id" else f"cd{i}" for k in TRAIN_KEYS} for i in range(2)])
    base = dict(dataset=write_dataset(tmp_path / "data", PROBLEMS), student={"model": "scripted", "format": FORMAT},
                sampling={"n": 1}, teacher={"base_url": url, "max_retries": 0, "timeout_s": 30},
                teacher_sampling={"seed": 1, "max_new_tokens": 600}, context_data=str(cd))
    return CorrectConfig.model_validate({**base, **kw})


def _trainer_keeps(rows: list[dict], tok, max_length: int) -> list[str]:
    """The ids the trainer keeps at max_length (training/data.py, the run's format)."""
    from codistill.training.data import build_examples

    examples, _ = build_examples(rows, tok, data_config(get_format(FORMAT), max_length))
    return [e.id for e in examples]


def test_row_tokens_are_the_trainers_verdict(smollm2_tok):
    """row_tokens is the least the trainer needs: at it the row is kept (context and tests cut), one
    under it dropped; prompt_fits is a bound no row under it can beat. Chat and completion alike."""
    from codistill.training.data import build_example

    row = {"id": "x#fix0", "prompt": lema_prompt("[[x]] Write x(n).", STUDENT["inc"][0]),
           "context": "### Incorrect step\n" + "why\n" * 50, "code": "def x(n):\n    return n\n",
           "tests": "assert x(1) == 1\n" * 30, "difficulty": None, "source": "toy"}
    for spec in ("paper", FORMAT):
        fmt = get_format(spec)
        need = RowFit(fmt, 10_000, smollm2_tok).row_tokens(row)
        assert need is not None
        ex, why = build_example(row, smollm2_tok, data_config(fmt, need))
        assert ex is not None and ex.truncated and len(ex.input_ids) == need, why
        assert build_example(row, smollm2_tok, data_config(fmt, need - 1)) == (None, "too_long")
        fit = RowFit(fmt, need, smollm2_tok)
        assert fit.fits(row) and not RowFit(fmt, need - 1, smollm2_tok).fits(row)
        assert fit.prompt_fits(row["prompt"])
        n_prompt = fit.prompt_tokens(row["prompt"])
        assert not RowFit(fmt, n_prompt + 1, smollm2_tok).prompt_fits(row["prompt"])  # the eos and one code token
        assert RowFit(fmt, n_prompt + 2, smollm2_tok).prompt_fits(row["prompt"])


def test_an_id_that_cannot_fit_is_left_out_of_both_variants(tmp_path, teacher, smollm2_tok):
    fmt = get_format(FORMAT)
    fit = RowFit(fmt, LIMIT, smollm2_tok)
    statement = {p.id: p.prompt for p in PROBLEMS}
    # the cases are what they say: inc's lema prompt alone is over; dbl's prompt fits, its row does not
    assert not fit.prompt_fits(lema_prompt(statement["inc"], STUDENT["inc"][0]))
    assert fit.prompt_fits(lema_prompt(statement["dbl"], STUDENT["dbl"][0]))
    dbl_code = TEACHER["dbl"].split("```python\n")[1].split("```")[0]
    assert fit.fits({"prompt": statement["dbl"], "code": dbl_code})
    assert not fit.fits({"prompt": lema_prompt(statement["dbl"], STUDENT["dbl"][0]), "code": dbl_code})

    out = tmp_path / "run"
    student = Scripted()
    m = correct(_cfg(tmp_path, teacher.url, max_row_tokens=LIMIT), out, generator=student, tokenizer=smollm2_tok)
    c = m["counts"]
    # inc: never shown to the teacher; dbl: asked, kept, then left out of both variants
    assert not any("[[inc]]" in p for p in teacher.prompts) and len(teacher.prompts) == 2
    assert c["failures_not_asked"]["prompt_too_long"] == 1 and c["failures"] == 2 and c["kept"] == 2
    assert c["left_out_too_long"] == 1 and c["train_rows"] == {"lema": 1, "corrected-only": 1} and m["complete"]
    assert m["rows"]["fit"]["left_out_too_long"] == ["dbl#fix0"] and m["rows"]["fit"]["max_row_tokens"] == LIMIT
    assert m["config"]["max_row_tokens"] == LIMIT
    lema, only = (list(read_jsonl(out / FILES[v])) for v in ("lema", "corrected-only"))
    assert [r["id"] for r in lema] == [r["id"] for r in only] == ["half#fix0"]
    mixes = [list(read_jsonl(out / MIX_FILES[v])) for v in ("lema", "corrected-only")]
    assert [r["id"] for r in mixes[0]] == [r["id"] for r in mixes[1]] == ["cd0", "cd1", "half#fix0"]
    assert m["mix"]["corrections_available"] == 1
    # the trainer keeps every row of both variants at the limit
    assert _trainer_keeps(lema, smollm2_tok, LIMIT) == _trainer_keeps(only, smollm2_tok, LIMIT) == ["half#fix0"]

    # unset, in the same folder: the stored attempts and corrections are reused (no student call), inc
    # is asked for the first time, and every kept correction makes a row in both variants, as before
    again = Scripted()
    m2 = correct(_cfg(tmp_path, teacher.url), out, generator=again)
    assert again.calls == [] and len(teacher.prompts) == 3 and "[[inc]]" in teacher.prompts[-1]
    assert "prompt_too_long" not in m2["counts"]["failures_not_asked"] and "fit" not in m2["rows"]
    assert m2["counts"]["left_out_too_long"] == 0 and m2["config"]["max_row_tokens"] is None
    lema2, only2 = (list(read_jsonl(out / FILES[v])) for v in ("lema", "corrected-only"))
    assert [r["id"] for r in lema2] == [r["id"] for r in only2] == ["inc#fix0", "dbl#fix0", "half#fix0"]
    assert lema2[2] == lema[0] and only2[2] == only[0]  # the row that fits is the same either way
    # ... which is the problem the setting solves: at the limit the trainer would keep the corrected-only
    # rows of inc and dbl and drop their lema twins
    assert _trainer_keeps(lema2, smollm2_tok, LIMIT) == ["half#fix0"]
    assert _trainer_keeps(only2, smollm2_tok, LIMIT) == ["inc#fix0", "dbl#fix0", "half#fix0"]


def test_a_limit_every_prompt_exceeds_asks_the_teacher_nothing(tmp_path, teacher, smollm2_tok):
    m = correct(_cfg(tmp_path, teacher.url, max_row_tokens=16), tmp_path / "run", generator=Scripted(),
                tokenizer=smollm2_tok)
    c = m["counts"]
    assert teacher.prompts == [] and c["failures_not_asked"]["prompt_too_long"] == 3 and c["failures"] == 0
    assert m["complete"] and m["cost"]["teacher"]["total_tokens"] == 0 and c["train_rows"] == {"lema": 0,
                                                                                                "corrected-only": 0}


def test_left_unset_the_key_is_unchanged():
    base = {"dataset": "d", "student": {"model": "m"}}
    key = CorrectConfig.model_validate(base).key()
    assert "max_row_tokens" not in key
    assert CorrectConfig.model_validate({**base, "max_row_tokens": None}).key() == key
    assert CorrectConfig.model_validate({**base, "max_row_tokens": 1024}).key() == {**key, "max_row_tokens": 1024}
    with pytest.raises(ValueError):
        CorrectConfig.model_validate({**base, "max_row_tokens": 8})


def _recipe(correct=None, lema_train=None, only_train=None, kinds=("cd+lema", "cd+corrected-only")):
    from codistill.recipe import load_recipe

    rec = load_recipe("paper-small")
    arms = {"cd": SimpleNamespace(kind="trained", train=None)}
    for name, kind, train in zip(("lema", "only"), kinds, (lema_train, only_train)):
        arms[name] = SimpleNamespace(kind=kind, train=train)
    return SimpleNamespace(eval=rec.eval, teach=rec.teach, train=rec.train, data_dir=rec.data_dir, serve=rec.serve,
                           student_format=rec.student_format, arms=arms, correct=correct)


def test_a_recipe_sets_max_row_tokens_from_the_correction_arms():
    from codistill.correct.recipe import correct_dict
    from codistill.recipe import load_recipe

    def limit(*a, **kw):
        return correct_dict(_recipe(*a, **kw), Path("run"))[0]["max_row_tokens"]

    assert correct_dict(load_recipe("paper-small"), Path("run"))[0]["max_row_tokens"] == 1024  # train.data.max_length
    assert limit() == 1024
    assert limit(lema_train={"data": {"max_length": 768}}) == 768  # the two arms differ: the smaller
    assert limit(only_train={"data": {"max_length": 512}}) == 512
    assert limit(only_train={"data": {"max_length": 2048}}) == 1024
    assert limit({"max_row_tokens": 900}) == 900 and limit({"max_row_tokens": None}) is None  # the section wins
    assert limit(kinds=("trained", "trained")) is None  # no correction arm
    from codistill.recipe.spec import Recipe

    sec = Recipe.model_fields["correct"].annotation.model_validate({"max_row_tokens": None})
    assert correct_dict(_recipe(sec), Path("run"))[0]["max_row_tokens"] is None  # a written null, typed section


def test_max_row_tokens_changes_the_key_not_the_compat_key(tmp_path, monkeypatch):
    import codistill.correct.stage as stage
    from codistill.correct.recipe import run_correct
    from codistill.recipe.manifest import _hash

    seen = []

    def fake_correct(cfg, out):
        seen.append(cfg)
        for name in MIX_FILES.values():
            write_jsonl(Path(out) / name, [{"id": name}])
        return {"complete": True, "counts": {"problems": 1, "failures": 1, "kept": 1, "dropped": 0},
                "cost": {"teacher": {"total_tokens": 1}}, "mix": None}

    monkeypatch.setattr(stage, "correct", fake_correct)
    calls = []

    def keyed(name, key, folder, fn, output_hash, compat=None):
        fn()
        calls.append((key, compat))
        return output_hash()

    teacher = {"teacher": {"base_url": "http://t/v1"}}
    for section in (teacher, {**teacher, "max_row_tokens": None}, {**teacher, "max_row_tokens": 512}):
        r = SimpleNamespace(recipe=_recipe(section), run=tmp_path, hashes={"data": "d", "teach": "t"}, keyed=keyed)
        run_correct(r)
    assert [c.max_row_tokens for c in seen] == [1024, None, 512]
    keys, compats = zip(*calls)
    assert len(set(keys)) == 3 and len(set(compats)) == 1
    # the compat key of a config without the setting is what it was before the setting existed
    assert compats[0] == _hash(["correct", seen[1].key(), "d", "t"])
