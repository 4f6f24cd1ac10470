"""``codistill data``: turn raw problems into a verified, decontaminated training set.

Stages, in order, each counted per source in ``manifest.json`` (``counts``) and every removal
written to ``removed.jsonl`` with its reason:

1. **load** any loader (``codeio``, ``mbpp:train``, ``leetcode``, ``taco`` with ``path=``, ...);
2. **solution**: problems without a reference solution are dropped unless the source says
   ``allow_no_solution`` (LeetCode: usable only for solve-mode teaching, ``teach.fallback_mode``);
   those kept cannot be verified (step 5 has no oracle to run) and are counted per source as
   ``no_reference_kept_for_solve``, with the manifest's ``unverified`` block saying so; one whose
   tests take their expected outputs from a reference is dropped (``no_oracle``). Steps 3-4 apply
   to them as to every problem (statement + tests; statement);
3. **token budget**: statement + solution + rendered tests must fit ``max_tokens`` (default 2000)
   with the student's tokenizer (``qwen2.5-coder-0.5b``; any tokenizer folder works; ``whitespace``
   is a crude fallback meant for tests);
4. **decontamination** against eval sets (:mod:`codistill.data.decontam`): removed ids with the
   matched eval id, the check (statement/solution) and the score;
5. **verification**: every reference solution is judged in the sandbox against the problem's tests;
   failing solutions are dropped, problems left with none are removed (``reference_failed``).
   Verdicts are appended to ``verify.jsonl`` as they come, so an interrupted run resumes there;
6. **cap**: the first ``max_problems`` survivors per source (file order);
7. **augmentation** (the paper): a problem with several correct, distinct solutions yields up to
   ``alternatives`` extra rows, each with another solution (``<id>#alt<k>``).

Outputs in ``out_dir``: ``rows.jsonl`` + ``rows.parquet`` + ``dataset/`` (``datasets``
``save_to_disk``) with rows ``{"id", "problem_id", "prompt", "code", "tests", "difficulty", "source",
"entry_point", "alt"}`` (``tests`` is readable test text: asserts, or call cases rendered as asserts,
or stdin/stdout pairs); ``problems.jsonl`` (the kept :class:`Problem` records, full tests, for the
judge and the teacher); ``removed.jsonl``; ``manifest.json`` (config, counts, hashes). A re-run with
the same config finds a complete manifest with the same config hash and returns it untouched.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codistill.data.decontam import DecontamConfig, EvalIndex, statement_text
from codistill.problems.rows import problem_rows, render_tests  # re-exported (moved there)
from codistill.problems.schema import Problem
from codistill.store import JsonlAppender, atomic_write_json, read_jsonl, replace_dir, sha256_file, sha256_json, write_jsonl

__all__ = ["PrepareConfig", "SourceSpec", "prepare_dataset", "render_tests", "load_tokenizer", "problem_rows",
           "PREPARE_VERSION"]

log = logging.getLogger(__name__)
PREPARE_VERSION = 1
NO_REFERENCE = "no_reference_kept_for_solve"  # the count of kept problems without a reference, per source


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="load_benchmark name: codeio, codeio-hq, mbpp:train, leetcode, taco, ...")
    limit: int | None = Field(None, ge=0, description="load at most this many raw problems (file order)")
    max_problems: int | None = Field(None, ge=0, description="keep at most this many after all filters")
    allow_no_solution: bool = Field(False, description="keep problems without a reference, unverified (for solve mode: "
                                   "teach.fallback_mode)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra loader arguments (taco: path=...)")

    @field_validator("name")
    @classmethod
    def _known_source(cls, name: str) -> str:
        from codistill.problems.loaders import check_benchmark_name

        check_benchmark_name(name)
        return name


class PrepareConfig(BaseModel):
    """Configuration of ``prepare_dataset`` (``codistill data``)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str = Field(..., description="output folder (a run directory)")
    sources: list[SourceSpec] = Field(..., min_length=1, description="where the problems come from")
    data_dir: str | None = Field(None, description="benchmark data folder (default: codistill's setting)")
    tokenizer: str = Field("qwen2.5-coder-0.5b", description="student tokenizer: packaged model name, HF "
                           "folder, or 'whitespace' (a crude fallback for tests)")
    max_tokens: int = Field(2000, ge=1, description="statement + solution + tests must fit this many tokens")
    max_test_cases: int = Field(5, ge=1, description="call/stdio cases rendered into the 'tests' text")
    verify: bool = Field(True, description="judge every reference solution in the sandbox")
    verify_timeout_s: float = Field(10.0, gt=0, description="seconds per assert/stdio program when verifying")
    sandbox_workers: int | None = Field(None, ge=1, description="sandbox worker processes (default: CPU cores)")
    alternatives: int = Field(1, ge=0, description="extra rows per problem with other correct solutions")
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)

    def key(self) -> str:
        return sha256_json([PREPARE_VERSION, self.model_dump(exclude={"out_dir", "sandbox_workers"})])


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(spec: str):
    """A callable ``text -> token count``. ``whitespace`` splits on whitespace."""
    if spec == "whitespace":
        return lambda text: len(text.split())
    from transformers import AutoTokenizer

    from codistill import models

    path = models.resolve_model(spec) if spec in models.MODELS or spec.endswith(".gguf") else Path(spec)
    tok = AutoTokenizer.from_pretrained(str(path))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _norm_code(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


# --------------------------------------------------------------------------- the stages


class _Counts:
    def __init__(self) -> None:
        self.by_source: dict[str, dict[str, int]] = {}

    def add(self, source: str, stage: str, n: int = 1) -> None:
        d = self.by_source.setdefault(source, {})
        d[stage] = d.get(stage, 0) + n

    def total(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.by_source.values():
            for k, v in d.items():
                out[k] = out.get(k, 0) + v
        return out


def _verify(problems: list[Problem], cfg: PrepareConfig, out: Path, want: int | None) -> dict[str, list[bool]]:
    """Judge reference solutions (resumable through verify.jsonl); returns id -> pass per solution.
    Stops early once ``want`` problems have a passing solution."""
    path = out / "verify.jsonl"
    done: dict[str, list[bool]] = {}
    keys = {p.id: sha256_json(p.model_dump()) for p in problems}
    if path.exists():
        for r in read_jsonl(path, resumable=True):
            if keys.get(r["id"]) == r.get("key"):
                done[r["id"]] = r["passed"]
    good = sum(1 for p in problems if any(done.get(p.id, [])))
    todo = [p for p in problems if p.id not in done]
    if not todo or (want is not None and good >= want):
        return done
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig

    sb = SandboxConfig(timeout_s=max(10.0, cfg.verify_timeout_s))
    if cfg.sandbox_workers:
        sb = SandboxConfig(timeout_s=sb.timeout_s, workers=cfg.sandbox_workers)
    jc = JudgeConfig(sandbox=sb, timeout_s=cfg.verify_timeout_s)
    chunk = max(8, 2 * sb.workers)
    with Judge(jc) as judge, JsonlAppender(path) as app:
        for i in range(0, len(todo), chunk):
            if want is not None and good >= want:
                break
            part = todo[i:i + chunk]
            samples = [{"task_id": p.id, "solution": s, "k": k} for p in part for k, s in enumerate(p.solutions)]
            by_id = {p.id: p for p in part}
            verdicts = judge.judge_samples(by_id, samples, progress=False) if samples else []
            res: dict[str, list[bool]] = {p.id: [False] * len(p.solutions) for p in part}
            why: dict[str, str] = {}
            for v in verdicts:
                res[v["task_id"]][v["k"]] = bool(v["passed"])
                if not v["passed"]:
                    f = v.get("failure") or {}
                    detail = f.get("error") or (f"expected {f.get('expected')!s}, got {f.get('got')!s}"
                                                if "expected" in f else "")
                    why.setdefault(v["task_id"], f"{v['status']}: {detail}"[:300])
            for p in part:
                app.append({"id": p.id, "key": keys[p.id], "passed": res[p.id], "why": why.get(p.id)})
                done[p.id] = res[p.id]
                good += any(res[p.id])
    return done


def prepare_dataset(config: PrepareConfig | dict) -> dict:
    """Run the stages (see module docstring); returns the manifest. Idempotent and resumable."""
    cfg = config if isinstance(config, PrepareConfig) else PrepareConfig.model_validate(config)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    key = cfg.key()
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("config_key") == key and old.get("complete") and (out / "rows.jsonl").exists():
            log.info("data already prepared in %s (same config): nothing to do", out)
            return {**old, "skipped": True}
    t0 = time.time()
    counts = _Counts()
    removed: list[dict] = []

    def drop(p: Problem, stage: str, reason: str, **extra) -> None:
        counts.add(label, f"removed_{stage}")
        removed.append({"id": p.id, "source": label, "stage": stage, "reason": reason, **extra})

    from codistill.problems.loaders import load_benchmark

    count_tokens = load_tokenizer(cfg.tokenizer)
    index = EvalIndex.build(cfg.decontam, cfg.data_dir) if cfg.decontam.enabled else None
    kept_rows: list[dict] = []
    kept_problems: list[Problem] = []
    seen: set[str] = set()
    for src in cfg.sources:
        label = src.name
        problems = load_benchmark(src.name, data_dir=cfg.data_dir, limit=src.limit, **src.kwargs)
        counts.add(label, "loaded", len(problems))
        stage_ok: list[Problem] = []
        for p in problems:
            if p.id in seen:
                drop(p, "duplicate", "id seen in an earlier source")
                continue
            seen.add(p.id)
            if not p.solutions and not src.allow_no_solution:
                drop(p, "no_solution", "no reference solution (allow_no_solution=False)")
                continue
            if not p.tests:
                drop(p, "no_tests", "no tests")
                continue
            if not p.solutions and _needs_reference(p):
                drop(p, "no_oracle", "no reference solution, and its tests take their expected outputs from one")
                continue
            tests_text = render_tests(p, cfg.max_test_cases)
            fits = [s for s in p.solutions
                    if count_tokens(p.prompt + "\n" + s + "\n" + tests_text) <= cfg.max_tokens]
            if p.solutions and not fits:
                n = count_tokens(p.prompt + "\n" + p.solutions[0] + "\n" + tests_text)
                drop(p, "token_budget", f"{n} tokens > {cfg.max_tokens}", tokens=n)
                continue
            if not p.solutions and count_tokens(p.prompt + "\n" + tests_text) > cfg.max_tokens:
                drop(p, "token_budget", f"statement + tests > {cfg.max_tokens} tokens")
                continue
            p = p.model_copy(update={"solutions": fits})
            if index is not None:
                m = index.match(statement_text(p), p.solutions)
                if m is not None:
                    drop(p, "decontam", f"{m.kind} overlap with {m.eval_id}", **m.as_dict())
                    continue
            stage_ok.append(p)
        counts.add(label, "after_filters", len(stage_ok))
        with_sol = [p for p in stage_ok if p.solutions]
        if cfg.verify and with_sol:
            passed = _verify(with_sol, cfg, out, src.max_problems)
        else:
            passed = {p.id: [True] * len(p.solutions) for p in with_sol}
        survivors: list[Problem] = []
        for p in stage_ok:
            if src.max_problems is not None and len(survivors) >= src.max_problems:
                counts.add(label, "over_cap")
                continue
            if p.solutions:
                if p.id not in passed:  # verification stopped early: enough problems already
                    counts.add(label, "over_cap")
                    continue
                ok = [s for s, good in zip(p.solutions, passed[p.id]) if good]
                counts.add(label, "solutions_failed", len(p.solutions) - len(ok))
                if not ok:
                    drop(p, "reference_failed", "no reference solution passes its tests in the sandbox")
                    continue
                p = p.model_copy(update={"solutions": ok})
            else:  # nothing to verify: its tests are the only judge, of the teacher's code (solve mode)
                counts.add(label, NO_REFERENCE)
            survivors.append(p)
        counts.add(label, "kept_problems", len(survivors))
        n_rows = 0
        for p in survivors:
            distinct: list[str] = []
            for s in p.solutions:
                if _norm_code(s) not in {_norm_code(d) for d in distinct}:
                    distinct.append(s)
            chosen = distinct[: 1 + cfg.alternatives]
            rows = problem_rows(p, chosen, cfg.max_test_cases)
            counts.add(label, "alternative_rows", len(rows) - 1)
            kept_rows.extend(rows)
            kept_problems.append(p)
            n_rows += len(rows)
        counts.add(label, "rows", n_rows)

    write_jsonl(out / "rows.jsonl", kept_rows)
    write_jsonl(out / "problems.jsonl", [p.model_dump() for p in kept_problems])
    write_jsonl(out / "removed.jsonl", removed)
    _write_datasets(out, kept_rows)
    by_stage: dict[str, list[str]] = {}
    for r in removed:
        by_stage.setdefault(r["stage"], []).append(r["id"])
    manifest = {
        "stage": "data",
        "complete": True,
        "config_key": key,
        "config": cfg.model_dump(),
        "counts": {"total": counts.total(), "by_source": counts.by_source,
                   "rows": len(kept_rows), "problems": len(kept_problems)},
        **_unverified(counts),
        "removed": {k: {"count": len(v), "ids": v[:50]} for k, v in by_stage.items()},
        "decontam_eval_sets": index.sizes if index is not None else {},
        "hashes": {"rows.jsonl": sha256_file(out / "rows.jsonl"),
                   "problems.jsonl": sha256_file(out / "problems.jsonl")},
        "versions": _versions(),
        "seconds": round(time.time() - t0, 2),
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def _needs_reference(p: Problem) -> bool:
    """Whether a test suite of ``p`` takes its expected outputs from the reference (``outputs=None``)."""
    from codistill.problems.schema import CallTests, StdioTests

    return any(isinstance(s, (CallTests, StdioTests)) and s.outputs is None for s in p.tests)


def _unverified(counts: _Counts) -> dict:
    """The manifest's ``unverified`` block when some kept problems have no reference solution."""
    by_source = {src: d[NO_REFERENCE] for src, d in counts.by_source.items() if d.get(NO_REFERENCE)}
    if not by_source:
        return {}
    return {"unverified": {
        "problems": sum(by_source.values()), "by_source": by_source,
        "why": "no reference solution, kept for solve mode (allow_no_solution): nothing was run to verify these "
               "problems; their tests (expected outputs from the source) judge the teacher's code instead, and a row "
               "is trained on only when that code passes. Token budget (statement + tests) and decontamination "
               "(statement) applied as to every problem."}}


def _write_datasets(out: Path, rows: list[dict]) -> None:
    """``rows.parquet`` and ``dataset/`` (``save_to_disk``) when ``datasets`` is installed."""
    try:
        import datasets
    except ImportError:
        log.warning("datasets is not installed: wrote rows.jsonl only (pip install datasets)")
        return
    import shutil
    import tempfile

    ds = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({k: [] for k in
                                                                                    ("id", "prompt", "code", "tests")})
    tmp = Path(tempfile.mkdtemp(prefix=".dataset.", dir=out))
    try:
        ds.save_to_disk(str(tmp))
        ds.to_parquet(str(tmp / "rows.parquet.tmp"))
        (tmp / "rows.parquet.tmp").replace(out / "rows.parquet")
        replace_dir(tmp, out / "dataset")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _versions() -> dict:
    from codistill.store import package_versions

    return package_versions("codistill", "datasets", "transformers")


def _parse_source(text: str, taco_path: str | None) -> dict:
    """A source in the short form ``codistill data --source`` takes, as a SourceSpec mapping:
    ``codeio:300:120`` -> name codeio, limit 300, max_problems 120; ``mbpp:train::80`` keeps the split."""
    parts = text.split(":")
    nums: list[str] = []
    while parts and (parts[-1].isdigit() or parts[-1] == "") and len(parts) > 1:
        nums.insert(0, parts.pop())
    spec: dict = {"name": ":".join(parts)}
    if nums and nums[0]:
        spec["limit"] = int(nums[0])
    if len(nums) > 1 and nums[1]:
        spec["max_problems"] = int(nums[1])
    if spec["name"] == "leetcode":
        spec["allow_no_solution"] = True
    if spec["name"] == "taco":
        if not taco_path:
            raise SystemExit("a taco source needs --taco-path FILE")
        spec["kwargs"] = {"path": taco_path}
    return spec


if __name__ == "__main__":  # python -m codistill.data.prepare: the `codistill data` verb
    import sys

    from codistill.cli import main

    sys.exit(main(["data", *sys.argv[1:]]))
