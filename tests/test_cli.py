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


# ------------------------------------------------------------------------------ clear errors


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


def test_malformed_jsonl_inputs_are_errors_naming_file_and_line(tmp_path, capsys):
    out = tmp_path / "v.jsonl"
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "solution": "x"}\n["HumanEval/1", "y"]\n')
    assert main(["judge", "--benchmark", "humaneval", "--samples", str(samples), "--out", str(out)]) == 2
    assert f"{samples}:2: expected a JSON object" in _err_line(capsys)
    # a malformed last line (no newline) of an input is an error, not a silently dropped sample
    samples.write_text('{"task_id": "HumanEval/0", "solution": "x"}\n{"task_id": "HumanEval/1", "sol')
    assert main(["judge", "--benchmark", "humaneval", "--samples", str(samples), "--out", str(out)]) == 2
    assert f"{samples}:2: not valid JSON" in _err_line(capsys)
    problems = tmp_path / "p.jsonl"
    problems.write_text('"just a string"\n')
    assert main(["judge", "--problems", str(problems), "--samples", str(samples), "--out", str(out)]) == 2
    assert f"{problems}:1: expected a JSON object" in _err_line(capsys)
    assert not out.exists()


def _eval_args(out, *extra) -> list[str]:
    return ["eval", "--model", "m", "--benchmark", "humaneval", "--limit", "1", "--out", str(out), "--no-progress",
            *extra]


def test_eval_settings_are_checked_before_anything_loads(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(_eval_args(out, "--backend", "openai", "--backend-option", "base_url=http://x/v1",
                           "--backend-option", "concurency=4")) == 2
    err = _err_line(capsys)
    assert "unknown backend option 'concurency' for backend 'openai'; allowed: " in err and "concurrency" in err
    assert main(_eval_args(out, "--backend", "openai")) == 2
    assert "needs the backend option base_url" in _err_line(capsys)
    assert main(_eval_args(out, "--backend-option", "num_threads")) == 2
    assert "write KEY=VALUE" in _err_line(capsys)
    assert main(_eval_args(out, "--backend", "vlm")) == 2
    assert "unknown backend 'vlm'; choose one of hf, openai" in _err_line(capsys)
    assert main([*_eval_args(out), "--benchmark", "humaneavl"]) == 2
    assert "unknown benchmark 'humaneavl'" in _err_line(capsys)
    assert main(_eval_args(out, "--backend-option", "batch_size=2")) == 2
    assert "'batch_size' of backend 'hf' is set by codistill itself" in _err_line(capsys)
    assert not out.exists()


def _dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_line_naming_url_attempts_and_what_to_check(tmp_path, capsys):
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    rc = main(_eval_args(tmp_path / "e", "--backend", "openai", "--backend-option", f"base_url={url}",
                         "--backend-option", "max_retries=2", "--backend-option", "backoff=0.01"))
    assert rc == 1
    err = _err_line(capsys)
    assert err.startswith(f"codistill eval: POST {url}/chat/completions failed after 3 attempts")
    assert "Connection refused" in err and f"Check that an OpenAI-compatible server is running and reachable at {url}" in err


def test_two_evals_on_one_directory(tmp_path, capsys):
    out = tmp_path / "e"
    code = ("import sys, time; from codistill.store import RunDirLock\n"
            "with RunDirLock(sys.argv[1], 'eval'):\n    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_eval_args(out)) == 1
        err = _err_line(capsys)
        assert err.startswith(f"codistill eval: another eval run (pid {holder.pid} on ")
        assert f"is using {out}" in err
        assert not (out / "config.json").exists()  # the second one wrote nothing
        assert main(["--verbose", *_eval_args(out)]) == 1  # the cause is kept for --verbose
        err = capsys.readouterr().err
        assert "Traceback" in err and "RunDirBusyError" in err
    finally:
        holder.kill()
        holder.wait()


def test_an_unexpected_error_keeps_its_traceback(monkeypatch, capsys):
    import codistill.cli as cli

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "cmd_benchmarks", broken)
    assert cli.main(["benchmarks"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "codistill benchmarks: unexpected error (a bug?): TypeError: a bug" in err
