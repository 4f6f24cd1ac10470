"""Finding and loading the run and arm directories a report is built from.

Inputs (each ``RUN_DIR``, optionally written ``LABEL=RUN_DIR``):

* a recipe run directory (has ``run_manifest.json`` or ``arms/``): every ``arms/<arm>/`` with
  ``eval/results.json`` + ``eval/tasks.jsonl`` is an arm, with its optional ``train/train_log.jsonl``
  and ``train/train_config.json``; an arm judged under a second protocol also has
  ``arms/<arm>/eval@<protocol>/``, an arm of its own named ``<arm>@<protocol>``. The run's
  ``data/manifest.json``, ``teach/teach_manifest.json``, ``teach/contexts.jsonl`` and ``recipe.yaml``
  are loaded when present. With a label, its arms are named ``LABEL/<arm>``.
* an arm directory (has ``eval/results.json``): one arm named after the directory (or the label).
* an eval run directory (has ``results.json`` + ``tasks.jsonl``, as ``codistill eval`` writes):
  one arm named after the directory, ``arm.json``'s ``"name"``, or the label.

A missing file is recorded in ``missing``, an unreadable one in ``notes``; neither raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Arm", "RunInfo", "QUESTIONS", "discover_arms"]

QUESTIONS = "mbpp-questions"  # tasks.jsonl rows carrying question-completion perplexity


@dataclass
class RunInfo:
    """A recipe run directory and its run-level files (each may be missing)."""

    path: Path
    label: str | None
    manifest: dict | None = None
    data_manifest: dict | None = None
    teach_manifest: dict | None = None
    leakage_valid: list[float] | None = None  # leakage of valid contexts.jsonl rows
    contexts_counts: dict | None = None
    recipe_text: str | None = None
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.label or self.path.name


@dataclass
class Arm:
    """One evaluated model: an eval directory's results and per-task rows, and its training log if any."""

    name: str
    source: Path
    eval_dir: Path | None
    train_dir: Path | None = None
    run: RunInfo | None = None
    results: dict | None = None
    rows: dict[str, dict[str, dict]] = field(default_factory=dict)  # benchmark -> task_id -> row
    ppl: list[float] = field(default_factory=list)
    train_rows: list[dict] = field(default_factory=list)
    val_rows: list[dict] = field(default_factory=list)
    train_config: dict | None = None
    train_summary: dict | None = None  # train_summary.json, once the training finished
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_eval(self) -> bool:
        return self.results is not None or bool(self.rows)

    def benchmarks(self) -> list[str]:
        names = list((self.results or {}).get("benchmarks", {}))
        return names + [b for b in self.rows if b not in names]


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _read_json(path: Path, missing: list[str], notes: list[str], base: Path) -> Any:
    if not path.is_file():
        missing.append(_rel(path, base))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{_rel(path, base)} could not be read ({type(e).__name__}: {e}); ignored")
        return None


def _read_rows(path: Path, missing: list[str], notes: list[str], base: Path) -> list[dict] | None:
    if not path.is_file():
        missing.append(_rel(path, base))
        return None
    import warnings

    from codistill.store import read_jsonl

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = list(read_jsonl(path, resumable=True))  # a run may be writing it
        for w in caught:
            notes.append(str(w.message))
        return rows
    except (OSError, ValueError) as e:
        notes.append(f"{_rel(path, base)} could not be read ({type(e).__name__}: {e}); ignored")
        return None


def _split_spec(spec: str | Path) -> tuple[str | None, Path]:
    """``LABEL=DIR`` -> (LABEL, DIR); a plain path (even one with '=' in it that exists) -> (None, path)."""
    if isinstance(spec, Path):
        return None, spec
    s = str(spec)
    if "=" in s and not Path(s).exists():
        label, _, path = s.partition("=")
        if label and "/" not in label and path:
            return label, Path(path)
    return None, Path(s)


def _load_eval(arm: Arm, base: Path) -> None:
    d = arm.eval_dir
    if d is None:
        return
    arm.results = _read_json(d / "results.json", arm.missing, arm.notes, base)
    rows = _read_rows(d / "tasks.jsonl", arm.missing, arm.notes, base)
    for r in rows or []:
        bench, tid = r.get("benchmark"), r.get("task_id")
        if bench is None or tid is None:
            continue
        if bench == QUESTIONS or ("question_ppl" in r and "passed" not in r):
            v = r.get("question_ppl")
            if isinstance(v, (int, float)) and math.isfinite(v):
                arm.ppl.append(float(v))
            continue
        arm.rows.setdefault(bench, {})[str(tid)] = r


def _load_train(arm: Arm, base: Path) -> None:
    d = arm.train_dir
    if d is None or not d.is_dir():
        return
    missing: list[str] = []
    rows = _read_rows(d / "train_log.jsonl", missing, arm.notes, base) or []
    for r in rows:
        if "step" not in r:
            continue
        (arm.val_rows if r.get("split") == "val" else arm.train_rows).append(r)
    arm.train_config = _read_json(d / "train_config.json", missing, arm.notes, base)
    if (d / "train_summary.json").is_file():
        arm.train_summary = _read_json(d / "train_summary.json", missing, arm.notes, base)
    arm.missing.extend(missing)


def _load_run(run: RunInfo, base: Path) -> None:
    p = run.path
    run.manifest = _read_json(p / "run_manifest.json", run.missing, run.notes, base)
    run.data_manifest = _read_json(p / "data" / "manifest.json", run.missing, run.notes, base)
    run.teach_manifest = _read_json(p / "teach" / "teach_manifest.json", run.missing, run.notes, base)
    ctx = _read_rows(p / "teach" / "contexts.jsonl", run.missing, run.notes, base)
    if ctx is not None:
        valid = [r for r in ctx if r.get("valid")]
        run.contexts_counts = {"rows": len(ctx), "valid": len(valid)}
        run.leakage_valid = [float(r["leakage"]) for r in valid
                             if isinstance(r.get("leakage"), (int, float)) and math.isfinite(r["leakage"])]
    recipe = p / "recipe.yaml"
    if recipe.is_file():
        run.recipe_text = recipe.read_text(encoding="utf-8", errors="replace")
    else:
        run.missing.append(_rel(recipe, base))


def discover_arms(run_dirs: list[str | Path]) -> tuple[list[Arm], list[RunInfo]]:
    """The arms (loaded) and recipe runs behind the inputs; raises on duplicate arm names."""
    arms: list[Arm] = []
    runs: list[RunInfo] = []
    for spec in run_dirs:
        label, path = _split_spec(spec)
        if not path.is_dir():
            raise FileNotFoundError(f"not a directory: {path}")
        base = path.parent
        if (path / "run_manifest.json").is_file() or (path / "arms").is_dir():
            run = RunInfo(path=path, label=label)
            _load_run(run, base)
            runs.append(run)
            arms_dir = path / "arms"
            if not arms_dir.is_dir():
                run.notes.append(f"{_rel(arms_dir, base)} does not exist: no arm has been run yet")
                continue
            for d in sorted(x for x in arms_dir.iterdir() if x.is_dir()):
                name = f"{label}/{d.name}" if label else d.name
                # an arm judged under a second protocol has arms/<arm>/eval@<protocol> too: a row of its own
                extra = sorted(x for x in d.iterdir() if x.is_dir() and x.name.startswith("eval@"))
                if (d / "eval").is_dir() or (d / "results.json").is_file() or not extra:
                    eval_dir = d / "eval" if (d / "eval").is_dir() or not (d / "results.json").is_file() else d
                    arm = Arm(name=name, source=path, eval_dir=eval_dir, train_dir=d / "train", run=run)
                    _load_eval(arm, base)
                    _load_train(arm, base)
                    arms.append(arm)
                for x in extra:
                    arm = Arm(name=f"{name}@{x.name.split('@', 1)[1]}", source=path, eval_dir=x,
                              train_dir=d / "train", run=run)
                    _load_eval(arm, base)
                    _load_train(arm, base)
                    arms.append(arm)
        elif (path / "eval" / "results.json").is_file():
            arm = Arm(name=label or path.name, source=path, eval_dir=path / "eval", train_dir=path / "train")
            _load_eval(arm, base)
            _load_train(arm, base)
            arms.append(arm)
        elif (path / "results.json").is_file() or (path / "tasks.jsonl").is_file():
            name = label
            if name is None and (path / "arm.json").is_file():
                try:
                    name = json.loads((path / "arm.json").read_text()).get("name")
                except (OSError, ValueError, AttributeError):
                    name = None
            arm = Arm(name=str(name or path.resolve().name), source=path, eval_dir=path)
            _load_eval(arm, base)
            arms.append(arm)
        else:
            raise FileNotFoundError(
                f"{path} is neither a recipe run (run_manifest.json or arms/), an arm (eval/results.json) "
                "nor an eval run (results.json + tasks.jsonl)")
    seen: dict[str, list[Arm]] = {}
    for a in arms:
        seen.setdefault(a.name, []).append(a)
    dups = {n: v for n, v in seen.items() if len(v) > 1}
    if dups:
        desc = "; ".join(f"'{n}' from " + ", ".join(str(a.eval_dir or a.source) for a in v) for n, v in dups.items())
        raise ValueError(
            f"duplicate arm names: {desc}. Arm names must be unique across the inputs: give an input a label "
            "(LABEL=RUN_DIR names a plain eval run LABEL and prefixes a recipe run's arms with LABEL/), "
            "or set {\"name\": ...} in an eval run's arm.json")
    return arms, runs
