"""The CLI as a user runs it, and the cheap-import promise."""

from __future__ import annotations

import json
import subprocess
import sys

from codistill.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_judge_command_writes_verdicts_and_summary(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _write(samples, [
        {"task_id": "HumanEval/0", "completion": "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n", "tag": "good"},
        {"task_id": "HumanEval/0", "completion": "    return False\n", "tag": "wrong"},
        {"task_id": "HumanEval/1", "solution": "def separate_paren_groups(s):\n    return (\n", "tag": "syntax"},
    ])
    out = tmp_path / "verdicts.jsonl"
    rc = main(["judge", "--benchmark", "humaneval", "--samples", str(samples), "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tag"] for r in rows] == ["good", "wrong", "syntax"]
    assert [r["passed"] for r in rows] == [True, False, False]
    assert [r["status"] for r in rows] == ["pass", "fail", "syntax_error"]
    summary = json.loads((tmp_path / "verdicts.summary.json").read_text())
    assert summary["samples"] == 3 and summary["passed"] == 1 and summary["tasks"] == 2
    assert "judge: HumanEval" in capsys.readouterr().out


def test_judge_command_on_a_problems_file(tmp_path):
    problem = {"id": "toy/1", "source": "custom", "prompt": "add two numbers", "entry_point": "add",
               "tests": [{"kind": "call", "fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]}]}
    probs = tmp_path / "problems.jsonl"
    _write(probs, [problem])
    samples = tmp_path / "s.jsonl"
    _write(samples, [{"task_id": "toy/1", "solution": "def add(a, b):\n    return a + b\n"},
                     {"task_id": "toy/1", "solution": "def add(a, b):\n    return a * b\n"}])
    out = tmp_path / "v.jsonl"
    assert main(["judge", "--problems", str(probs), "--samples", str(samples), "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False]
    assert rows[1]["failure"]["case"] == 0 and rows[1]["failure"]["got"] == "2" and rows[1]["failure"]["expected"] == "3"


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    out = tmp_path / "v.jsonl"
    assert main(["judge", "--benchmark", "humaneval", "--samples", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert "samples file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    _write(bad, [{"completion": "x"}])
    assert main(["judge", "--benchmark", "humaneval", "--samples", str(bad), "--out", str(out)]) == 2
    assert "no 'task_id'" in capsys.readouterr().err
    assert main(["judge", "--benchmark", "nope", "--samples", str(bad), "--out", str(out)]) == 2
    assert "humaneval" in capsys.readouterr().err  # lists the valid names
    assert main(["judge", "--benchmark", "humaneval+", "--data-dir", str(tmp_path), "--samples", str(bad), "--out", str(out)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert not out.exists()


def test_import_is_cheap():
    code = ("import sys, codistill, codistill.cli, codistill.problems.loaders, codistill.execution.judge, "
            "codistill.metrics, codistill.backends, codistill.training, codistill.data, codistill.teacher, "
            "codistill.evaluation, codistill.models\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'datasets', 'peft', 'trl', 'tree_sitter', 'codebleu', 'numpy', 'scipy'))\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_command_runs_and_saves_an_adapter(tiny_llama_dir, tmp_path, capsys):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "train_examples.jsonl"
    out = tmp_path / "run"
    rc = main(["train", "--model", str(tiny_llama_dir), "--train-file", str(fixture), "--out", str(out),
               "--max-steps", "2", "--no-structure"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert (Path(summary["adapter_dir"]) / "adapter_config.json").exists()
