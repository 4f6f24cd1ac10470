"""``codistill teach``: ask a teacher model for a context per problem, parse, validate, keep.

Flow per problem row (``teach(config)``):

1. build the prompt from the mode's template (:mod:`codistill.teacher.templates`);
2. look the call up in the response cache, else ask the teacher (OpenAI-compatible server with
   ``concurrency`` requests in flight, or in-process llama.cpp); the client retries HTTP failures
   with backoff;
3. parse into sections and validate (:mod:`codistill.teacher.parse`), then let the mode judge the
   answer (:mod:`codistill.teacher.modes`): explain/hierarchical score leakage against the
   reference (:mod:`codistill.metrics.leakage`) and reject above ``leakage_threshold``; solve
   judges the code in the sandbox and keeps only passing samples (rejection sampling);
4. an invalid answer is retried (new seed; a greedy first try is retried at
   ``retry_temperature``) up to ``max_attempts`` calls, then recorded as a failure with its reason.

One mode per row: ``mode`` for every row, except that with ``fallback_mode`` (``solve``) the rows
without a reference solution (LeetCode) are taught in that mode, with its packaged template and
required sections and every other setting of the run (:meth:`TeachConfig.fallback_config`): their
records, cache keys and resume keys are those a run in that mode would make. Each record names its
``mode``; the manifest counts rows, valid records and training rows per mode (``counts.by_mode``).

Files in ``out_dir``:

* ``contexts.jsonl`` — append-only, one record per problem row as soon as it is finished: id, mode,
  sections, raw text, teacher, template hash, params, leakage, valid, reason, attempts (with a log
  of every attempt), tokens, seconds. The last record of an id wins. A resumed run skips ids whose
  record has the same template hash, teacher, params, validation rules and parser/leakage
  versions; other records are redone from the cache (the teacher is not asked again).
* ``cache/responses.jsonl`` — the teacher's raw answers keyed by sha256 of (teacher model, template
  text hash, sampling params of the attempt, row id + content hash, attempt number); the parser
  is not part of the key. ``cache_dir`` shares one cache between runs.
* ``train.jsonl`` + ``train_dataset/`` (``datasets``) — the trainer's input, exactly the keys
  ``{"id", "prompt", "context", "code", "tests", "difficulty", "source"}``; ``context`` is laid out
  as :func:`codistill.teacher.templates.render_context` documents (by the record's mode); ``code`` is
  the reference (explain/hierarchical) or the passing teacher code (solve, and the rows a
  ``fallback_mode`` solve taught).
* ``teach_manifest.json`` — config, counts (valid, failures by reason, leakage rejections, cache
  hits, teacher calls), tokens, time, tokens/s, contexts/min, cost (when prices are given), and
  the leakage distribution; ``mode_summary`` when the mode adds one (:meth:`~codistill.teacher.
  modes.Mode.summarize`; ``reverse``: PPL before/after, ΔPPL, leakage, their correlation).

Teacher errors (the server unreachable after the client's retries, an HTTP error, an empty
answer — :class:`EmptyAnswerError`, never cached, so an outage does not become permanent) do not
mark a problem as done: it is listed under ``teacher_errors``, the manifest says ``complete:
false`` and a re-run asks again. After ``max(8, 2 × concurrency)`` rows failed in a row the run
stops asking (the teacher is down). :func:`incomplete_error` turns such a manifest into the
error ``codistill teach`` (exit 1 when no row finished, 3 when some did) and ``codistill run``
(the stage is not complete) end with.

Where the pieces are: this module runs the stage (rows in, records out, resume, progress lines);
:mod:`~codistill.teacher.config` (settings), :mod:`~codistill.teacher.modes` (one module per mode),
:mod:`~codistill.teacher.runner` (one problem row's attempts), :mod:`~codistill.teacher.client` (the
teacher, one client per run), :mod:`~codistill.teacher.cache`, :mod:`~codistill.teacher.outputs`
(train set, manifest, teacher errors), :mod:`~codistill.teacher.command` (the command line).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from codistill.metrics import leakage as leak
from codistill.store import JsonlAppender, RunDirLock, atomic_write_json, read_jsonl, sha256_json, write_jsonl
from codistill.teacher.cache import ResponseCache
from codistill.teacher.client import EmptyAnswerError, TeacherClient
from codistill.teacher.config import TeachConfig, TeacherConfig, TeachSampling
from codistill.teacher.modes import RunContext, get_mode
from codistill.teacher.outputs import (
    TRAIN_KEYS,
    TeachIncompleteError,
    build_manifest,
    describe_teacher_errors,
    incomplete_error,
    mode_counts,
    train_rows,
    write_dataset,
)
from codistill.teacher.parse import PARSER_VERSION
from codistill.teacher.pool import ask_rows
from codistill.teacher.runner import ProblemRunner
from codistill.teacher.templates import PromptTemplate, load_template

__all__ = ["TeachConfig", "TeacherConfig", "TeachSampling", "teach", "load_rows", "ResponseCache",
           "TRAIN_KEYS", "EmptyAnswerError", "TeachIncompleteError", "incomplete_error", "describe_teacher_errors"]

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- rows


def load_rows(cfg: TeachConfig) -> tuple[list[dict], dict]:
    """Rows (id, problem_id, prompt, code, tests, difficulty, source, entry_point) and problems by id."""
    from codistill.problems.rows import problem_rows
    from codistill.problems.schema import Problem

    if (cfg.dataset is None) == (cfg.benchmark is None):
        raise ValueError("give exactly one of dataset (a `codistill data` folder) or benchmark (a loader name)")
    if cfg.dataset is not None:
        d = Path(cfg.dataset)
        if not (d / "rows.jsonl").exists():
            raise FileNotFoundError(f"{d} has no rows.jsonl: run `codistill data` first or pass benchmark=")
        rows = list(read_jsonl(d / "rows.jsonl"))
        problems = {p["id"]: Problem.model_validate(p) for p in read_jsonl(d / "problems.jsonl")}
    else:
        from codistill.problems.loaders import load_benchmark

        ps = load_benchmark(cfg.benchmark, data_dir=cfg.data_dir, **cfg.benchmark_kwargs)
        problems = {p.id: p for p in ps}
        rows = [r for p in ps for r in problem_rows(p, p.solutions[:1])]
    rows = _select_rows(cfg, rows)
    if cfg.ids is not None:
        wanted = set(cfg.ids)
        rows = [r for r in rows if r["id"] in wanted]
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    if get_mode(cfg.mode).spec.needs_solution:
        missing = [r["id"] for r in rows if cfg.row_mode(r) == cfg.mode and not r.get("code")]
        if missing:
            raise ValueError(f"mode {cfg.mode!r} shows the teacher the reference solution, but {len(missing)} rows "
                             f"have none (e.g. {missing[:3]}); use mode='solve' for them, or fallback_mode='solve' "
                             "to teach only those in solve mode")
    return rows, problems


def _select_rows(cfg: TeachConfig, rows: list[dict]) -> list[dict]:
    """The rows the run teaches, in dataset order: each mode selects among the rows it teaches
    (:meth:`~codistill.teacher.modes.Mode.select_rows`; with ``fallback_mode``, the rows without a
    reference are that mode's)."""
    if cfg.fallback_mode is None:
        return get_mode(cfg.mode).select_rows(rows)
    keep: set[int] = set()
    for name in (cfg.mode, cfg.fallback_mode):
        keep.update(id(r) for r in get_mode(name).select_rows([r for r in rows if cfg.row_mode(r) == name]))
    return [r for r in rows if id(r) in keep]


# --------------------------------------------------------------------------- the stage


def _run_key(cfg: TeachConfig, template: PromptTemplate) -> str:
    """What makes a finished record reusable on resume (the parser version is checked separately);
    a mode adds what its records depend on beyond these (:meth:`~codistill.teacher.modes.Mode.run_key`)."""
    key = {"mode": cfg.mode, "teacher": cfg.teacher.model, "template": template.sha256,
           "sampling": cfg.sampling.model_dump(), "validation": cfg.validation.model_dump(),
           "max_attempts": cfg.max_attempts, "keep_passing": cfg.keep_passing,
           "leakage": [cfg.leakage_threshold, cfg.leakage_n, leak.LEAKAGE_VERSION]}
    extra = get_mode(cfg.mode).run_key(cfg)
    if extra is not None:  # absent for modes without: their keys stay as they were
        key["mode_key"] = extra
    return sha256_json(key)


def teach(config: TeachConfig | dict) -> dict:
    """Generate, validate and store teacher contexts; returns the manifest (see module docstring)."""
    cfg = config if isinstance(config, TeachConfig) else TeachConfig.model_validate(config)
    if cfg.teacher.backend == "llamacpp" and cfg.teacher.concurrency > 1:
        log.info("llamacpp runs one request at a time; concurrency is ignored")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out / ".teach.lock"):
        return _teach(cfg, out)


def _exclusive(path: Path) -> RunDirLock:
    """The run directory's lock (``path`` = ``<out_dir>/.teach.lock``): two ``teach`` processes on
    one ``out_dir`` would ask the teacher twice for the same problems."""
    return RunDirLock(Path(path).parent, "teach")


def _finished(ctx_path: Path, run_keys: dict[str, str], row_mode) -> dict[str, dict]:
    """Records of ``contexts.jsonl`` a resumed run keeps (the run key of the mode the row is taught
    in now, ``row_mode(id)``, and the same parser version; the last record of an id wins; an
    incomplete last line is skipped)."""
    done: dict[str, dict] = {}
    if ctx_path.exists():
        for r in read_jsonl(ctx_path, resumable=True):
            if r.get("run_key") == run_keys.get(row_mode(r["id"])) and r.get("parser_version") == PARSER_VERSION:
                done[r["id"]] = r
    return done


class _Taught:
    """The modes of a run: ``mode`` and, with ``fallback_mode``, the one rows without a reference are
    taught in; per mode its config (:meth:`TeachConfig.fallback_config`), template and run key."""

    def __init__(self, cfg: TeachConfig):
        self.cfg = cfg
        self.configs = {cfg.mode: cfg}
        fb = cfg.fallback_config()
        if fb is not None:
            self.configs[fb.mode] = fb
        self.templates = {m: load_template(m, c.template) for m, c in self.configs.items()}
        self.keys = {m: _run_key(c, self.templates[m]) for m, c in self.configs.items()}
        # the manifest's run key: the mode's alone when it is the only one (keys of older runs stay valid)
        self.run_key = self.keys[cfg.mode] if fb is None else sha256_json(self.keys)

    def runners(self, cache, client, run: RunContext, todo: list[dict]) -> dict[str, ProblemRunner]:
        """A :class:`ProblemRunner` per mode; each mode with rows to do is opened (:meth:`Mode.open`)."""
        out = {}
        for m, c in self.configs.items():
            mode = get_mode(m)
            if any(self.cfg.row_mode(r) == m for r in todo):
                mode.open(run)
            out[m] = ProblemRunner(c, mode, self.templates[m], cache, client, run)
        return out


def _teach(cfg: TeachConfig, out: Path) -> dict:
    taught = _Taught(cfg)
    rows, problems = load_rows(cfg)
    run_key = taught.run_key
    row_mode = {r["id"]: cfg.row_mode(r) for r in rows}
    ctx_path = out / "contexts.jsonl"
    done = _finished(ctx_path, taught.keys, row_mode.get)
    todo = [r for r in rows if r["id"] not in done]
    if cfg.order_seed is not None:
        import random

        random.Random(cfg.order_seed).shuffle(todo)
    cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
    client = TeacherClient(cfg.teacher)  # one per run, closed below
    run = RunContext(cfg=cfg, problems=problems)
    runners = taught.runners(cache, client, run, todo)
    errors: dict[str, str] = {}
    counts = {"new": 0, "fresh": 0}  # fresh: finished with a teacher call in this run (the rest: the cache)
    t0 = time.time()
    log.info("teach %s: %d rows, %d already done, %d to do", cfg.mode, len(rows), len(rows) - len(todo), len(todo))
    if cfg.fallback_mode is not None:
        n_fb = sum(1 for m in row_mode.values() if m == cfg.fallback_mode)
        log.info("%d rows have no reference solution: taught in %s mode", n_fb, cfg.fallback_mode)
    tc = cfg.teacher
    if todo and tc.backend == "openai":
        log.info("teacher %s at %s: %d in flight, %.0f s per request, %d retries", tc.model, tc.base_url,
                 tc.concurrency, tc.timeout_s, tc.max_retries)
    try:
        if todo:
            _ask(cfg, rows, todo, runners, ctx_path, taught.keys, done, errors, counts)
    finally:
        wall = time.time() - t0
        client.close()
        cache.close()
        run.close()
    records = [done[r["id"]] for r in rows if r["id"] in done]
    train = train_rows(records, {r["id"]: r for r in rows}, cfg.mode)
    if counts["new"] or not (out / "train.jsonl").exists():
        write_jsonl(out / "train.jsonl", train)
        write_dataset(out / "train_dataset", train)
    manifest = build_manifest(cfg, taught.templates[cfg.mode], rows, records, train, client, cache, errors,
                              counts["new"], counts["fresh"], wall, run_key, out / "teach_manifest.json")
    if cfg.fallback_mode is not None:
        manifest["templates"] = {m: {"source": t.source, "sha256": t.sha256} for m, t in taught.templates.items()}
        manifest["counts"]["by_mode"] = mode_counts(cfg, rows, records, train)
    for m in taught.configs:  # each mode summarizes the records it made
        mine = records if m == cfg.mode and cfg.fallback_mode is None else [r for r in records if r.get("mode") == m]
        summary = get_mode(m).summarize(run, mine)
        if summary is not None:
            manifest["mode_summary" if m == cfg.mode else f"mode_summary_{m}"] = summary
    atomic_write_json(out / "teach_manifest.json", manifest)
    if errors:
        log.warning("%s", describe_teacher_errors(manifest))
    return manifest


def _ask(cfg: TeachConfig, rows: list[dict], todo: list[dict], runners: dict[str, ProblemRunner], ctx_path: Path,
         run_keys: dict[str, str], done: dict, errors: dict, counts: dict) -> None:
    """Run every row left to do, ``concurrency`` at a time, each by the runner of its mode
    (:meth:`TeachConfig.row_mode`); each record is appended to ``contexts.jsonl`` as soon as its row
    is finished. A row whose teacher call failed goes to ``errors`` (it stays to do); see
    :func:`codistill.teacher.pool.ask_rows`."""
    from codistill.progress import PROGRESS_FILE, Progress

    client, cache = runners[cfg.mode].client, runners[cfg.mode].cache
    workers = 1 if cfg.teacher.backend == "llamacpp" else cfg.teacher.concurrency
    prog = Progress("teach", len(rows), unit="rows", done=len(rows) - len(todo), every_n=cfg.progress_every,
                    logger=log, state=Path(ctx_path).parent / PROGRESS_FILE, describe=lambda: f"teacher calls {client.calls}, cache hits {cache.hits}"
                    + (f", errors {len(errors)}" if errors else ""))
    with JsonlAppender(ctx_path) as app, prog:
        def record(row: dict, rec: dict) -> None:
            rec["run_key"] = run_keys[cfg.row_mode(row)]
            app.append(rec)
            done[rec["id"]] = rec
            counts["new"] += 1
            counts["fresh"] += any(not a.get("cached") for a in rec["attempt_log"])

        ask_rows(lambda row: runners[cfg.row_mode(row)].run(row), todo, workers, record, errors, prog.advance, log,
                 "rows", "teach")


# --------------------------------------------------------------------------- command line
# `python -m codistill.teacher.teach ARGS` is `codistill teach ARGS`


if __name__ == "__main__":
    import sys

    from codistill.cli import main as cli_main

    sys.exit(cli_main(["teach", *sys.argv[1:]]))
