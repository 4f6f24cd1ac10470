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
    # default: ../shared/data beside the current folder (a layout of our own, so the test does not
    # depend on where this checkout was cloned)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    assert data_dir() == (tmp_path / "shared" / "data").resolve()


def test_missing_data_file_names_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        data_file("nope.jsonl", tmp_path)
    with pytest.raises(DataNotFoundError, match="CODISTILL_DATA_DIR"):
        data_dir(tmp_path / "absent")


def test_appender_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2')  # killed mid-write
    with pytest.warns(UserWarning):  # codistill's own append-only files: skipped, then truncated
        assert [r["a"] for r in read_jsonl(path, resumable=True)] == [1]
    with pytest.raises(ValueError, match=r"x.jsonl:2: not valid JSON .*the last line, without its newline"):
        list(read_jsonl(path))  # an input file: an error, not a silently dropped record
    with JsonlAppender(path) as app:
        app.append({"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 3]


def test_every_line_must_be_a_json_object(tmp_path):
    path = tmp_path / "x.jsonl"
    for line, kind in (("[1, 2]", "an array"), ('"s"', "a string"), ("3", "a number"), ("null", "null")):
        path.write_text('{"a": 1}\n' + line + "\n")
        for resumable in (False, True):
            with pytest.raises(ValueError, match=f"x.jsonl:2: expected a JSON object .* got {kind}"):
                list(read_jsonl(path, resumable=resumable))


def test_run_dir_lock_names_the_holder(tmp_path):
    import os

    from codistill.store import RunDirBusyError, RunDirLock

    with RunDirLock(tmp_path / "run", "eval"):
        with pytest.raises(RunDirBusyError, match=rf"another eval run \(pid {os.getpid()} on .*started .*\) is "
                                                  rf"using {tmp_path / 'run'}: wait"):
            with RunDirLock(tmp_path / "run", "eval"):
                pass
        with RunDirLock(tmp_path / "run", "teach"):  # another stage's lock is independent
            pass
    with RunDirLock(tmp_path / "run", "eval"):  # released
        pass


def test_malformed_middle_line_is_an_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        list(read_jsonl(path))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"k": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_replace_dir_puts_a_finished_folder_in_place(tmp_path):
    from codistill.store import replace_dir

    dest = tmp_path / "adapter"
    new = tmp_path / ".tmp-1"
    new.mkdir()
    (new / "a").write_text("1")
    assert replace_dir(new, dest) == dest and (dest / "a").read_text() == "1" and not new.exists()
    newer = tmp_path / ".tmp-2"
    newer.mkdir()
    (newer / "b").write_text("2")
    replace_dir(newer, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["b"]  # the old folder is gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # nothing left beside it
