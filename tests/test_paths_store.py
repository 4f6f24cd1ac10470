"""Data-directory resolution and interruption-safe files."""

from __future__ import annotations

import json

import pytest

from codistill.paths import DATA_ENV, DataNotFoundError, data_dir, data_file
from codistill.store import JsonlAppender, atomic_write_json, read_jsonl


def test_data_dir_precedence(tmp_path, monkeypatch):
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir()
    env.mkdir()
    monkeypatch.setenv(DATA_ENV, str(env))
    assert data_dir(flag) == flag.resolve()  # the CLI flag wins
    assert data_dir() == env.resolve()  # then the environment variable
    monkeypatch.delenv(DATA_ENV)
    assert (data_dir() / "HumanEvalPlus.jsonl.gz").exists()  # default ../shared/data


def test_missing_data_file_names_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        data_file("nope.jsonl", tmp_path)
    with pytest.raises(DataNotFoundError, match="CODISTILL_DATA_DIR"):
        data_dir(tmp_path / "absent")


def test_appender_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2')  # killed mid-write
    with pytest.warns(UserWarning):
        assert [r["a"] for r in read_jsonl(path)] == [1]
    with JsonlAppender(path) as app:
        app.append({"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 3]


def test_malformed_middle_line_is_an_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        list(read_jsonl(path))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"k": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
