"""``RUN/run_manifest.json``: per stage its key, output hash, status, wall time and timestamps;
the hashes that make the keys; old stage folders set aside in ``RUN/.stale/``."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from codistill.recipe.spec import RECIPE_VERSION, Recipe
from codistill.store import atomic_write_json

log = logging.getLogger("codistill.recipe")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Manifest:
    def __init__(self, run: Path, recipe: Recipe):
        self.path = run / "run_manifest.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.update({"recipe_version": RECIPE_VERSION, "name": recipe.name, "smoke": recipe.smoke})
        self.data.setdefault("stages", {})
        self.data.setdefault("created", _now())
        self.data["versions"] = _versions()

    def get(self, stage: str) -> dict:
        return self.data["stages"].get(stage, {})

    def set(self, stage: str, **fields) -> None:
        """Update one stage's record: read-modify-write under a lock, so two runners working on
        different arms of one run directory (e.g. one per core) do not lose each other's updates."""
        import fcntl

        with open(self.path.with_name(".run_manifest.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                disk = json.loads(self.path.read_text())
                self.data["stages"] = {**disk.get("stages", {}), **{k: v for k, v in self.data["stages"].items()
                                                                     if k == stage}}
            self.data["stages"][stage] = {**self.data["stages"].get(stage, {}), **fields}
            self.data["updated"] = _now()
            atomic_write_json(self.path, self.data)


def _versions() -> dict:
    from codistill.store import package_versions

    return package_versions("codistill", "torch", "transformers", "peft", "accelerate", "xllamacpp", "datasets")


def _set_aside(run: Path, folder: Path, why: str) -> None:
    if not folder.exists():
        return
    dest = run / ".stale" / f"{folder.relative_to(run).as_posix().replace('/', '__')}-{int(time.time())}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(dest))
    log.warning("%s: %s; the old folder was moved to %s", folder.relative_to(run), why, dest)
