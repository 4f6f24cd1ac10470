"""Where codistill reads benchmark data and keeps its caches.

Data directory, first match wins:
1. an explicit argument (the CLI's ``--data-dir``),
2. the environment variable ``CODISTILL_DATA_DIR``,
3. ``../shared/data`` relative to the current directory or to the project checkout, when it exists.
Files there are only ever read, never copied.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CODISTILL_DATA_DIR"
CACHE_ENV = "CODISTILL_CACHE_DIR"

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DataNotFoundError(FileNotFoundError):
    """A data file codistill needs is not where the settings say."""


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Resolve the data directory (see module docstring); raise with instructions if absent."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("--data-dir", Path(explicit)))
    elif os.environ.get(DATA_ENV):
        candidates.append((DATA_ENV, Path(os.environ[DATA_ENV])))
    else:
        candidates.append(("default", Path.cwd() / ".." / "shared" / "data"))
        candidates.append(("default", _PROJECT_ROOT / ".." / "shared" / "data"))
    for _, path in candidates:
        if path.is_dir():
            return path.resolve()
    origin, path = candidates[0]
    raise DataNotFoundError(
        f"data directory not found: {path} (from {origin}). Point codistill at the folder that "
        f"holds HumanEvalPlus.jsonl.gz, mbpp.jsonl, ... with --data-dir DIR or {DATA_ENV}=DIR."
    )


def data_file(name: str, explicit_dir: str | os.PathLike | None = None) -> Path:
    """Path of one file in the data directory, with a clear error when it is missing."""
    path = data_dir(explicit_dir) / name
    if not path.is_file():
        raise DataNotFoundError(
            f"{name} not found in data directory {path.parent}. Put the file there or choose "
            f"another directory with --data-dir DIR or {DATA_ENV}=DIR."
        )
    return path


def cache_dir(sub: str = "") -> Path:
    """codistill's cache (ground-truth outputs, assembled models, bridge matrices)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "codistill")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
