"""Each stage config owns its identity (key()): what changes the result is in, what only changes
speed, logging or file locations is out."""

from __future__ import annotations


def test_train_key():
    from codistill.training.config import TrainConfig

    a = TrainConfig(model="m")
    same = TrainConfig(model="m", num_threads=1, eval_every=7, save_every=3, output_dir="elsewhere",
                       data={"train_file": "other.jsonl"})
    assert a.key() == same.key()
    assert a.key() != TrainConfig(model="m", optim={"lr": 1e-3}).key()
    assert a.key() != TrainConfig(model="m", data={"max_length": 512}).key()


def test_teach_key():
    from codistill.teacher.teach import TeachConfig

    base = {"out_dir": "o", "dataset": "d", "teacher": {"base_url": "http://a/v1", "model": "t"}}
    a = TeachConfig.model_validate(base)
    b = TeachConfig.model_validate({**base, "out_dir": "p", "progress_every": 3,
                                    "teacher": {"base_url": "http://b/v1", "model": "t", "concurrency": 9}})
    assert a.key() == b.key()
    assert a.key() != TeachConfig.model_validate({**base, "mode": "solve"}).key()
    assert a.key() != TeachConfig.model_validate({**base, "teacher": {"base_url": "http://a/v1", "model": "u"}}).key()


def test_eval_key():
    from codistill.evaluation.config import EvalConfig

    a = EvalConfig(model="m")
    assert a.key() == EvalConfig(model="m", workers=1, batch_size=2, adapter="x").key()
    assert a.key() != EvalConfig(model="m", max_new_tokens=1024).key()
    assert a.key() != EvalConfig(model="m", format="paper").key()
    assert a.compat_key() == EvalConfig(model="m", benchmarks=["humaneval"], limit=3).compat_key()
    assert EvalConfig(model="m", dtype="bfloat16").changed_generation_settings(a.model_dump()) == ["dtype"]
