"""``codistill teach``: ask a teacher model for a context per problem, parse, validate, keep.

Flow per problem row (``teach(config)``):

1. build the prompt from the mode's template (:mod:`codistill.teacher.templates`);
2. look the call up in the response cache, else ask the teacher (OpenAI-compatible server with
   ``concurrency`` requests in flight, or in-process llama.cpp); the client retries HTTP failures
   with backoff;
3. parse into sections and validate (:mod:`codistill.teacher.parse`); in explain/hierarchical
   mode also score leakage against the reference (:mod:`codistill.teacher.leakage`) and reject
   above ``leakage_threshold``; in solve mode judge the code in the sandbox and keep only passing
   samples (rejection sampling);
4. an invalid answer is retried (new seed; a greedy first try is retried at
   ``retry_temperature``) up to ``max_attempts`` calls, then recorded as a failure with its reason.

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
  as :func:`codistill.teacher.templates.render_context` documents; ``code`` is the reference
  (explain/hierarchical) or the passing teacher code (solve).
* ``teach_manifest.json`` — config, counts (valid, failures by reason, leakage rejections, cache
  hits, teacher calls), tokens, time, tokens/s, contexts/min, cost (when prices are given), and
  the leakage distribution.

Teacher errors (the server unreachable after the client's retries, an HTTP error, an empty
answer — :class:`EmptyAnswerError`, never cached, so an outage does not become permanent) do not
mark a problem as done: it is listed under ``teacher_errors``, the manifest says ``complete:
false`` and a re-run asks again. After ``max(8, 2 × concurrency)`` rows failed in a row the run
stops asking (the teacher is down). :func:`incomplete_error` turns such a manifest into the
error ``codistill teach`` (exit 1 when no row finished, 3 when some did) and ``codistill run``
(the stage is not complete) end with.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codistill.store import JsonlAppender, RunDirLock, atomic_write_json, read_jsonl, sha256_json, write_jsonl
from codistill.teacher import leakage as leak
from codistill.teacher.parse import PARSER_VERSION, ValidationRules, parse_answer, template_echo
from codistill.teacher.templates import MODES, PromptTemplate, load_template, render_context

__all__ = ["TeachConfig", "TeacherConfig", "TeachSampling", "teach", "load_rows", "ResponseCache",
           "TRAIN_KEYS", "EmptyAnswerError", "TeachIncompleteError", "incomplete_error"]

log = logging.getLogger(__name__)

TRAIN_KEYS = ("id", "prompt", "context", "code", "tests", "difficulty", "source")


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "llamacpp"] = Field("openai", description="OpenAI-compatible HTTP server, or "
                                                   "in-process llama.cpp (llama-cpp-python)")
    base_url: str = Field("http://127.0.0.1:8731/v1", description="server URL (codistill serve-teacher default)")
    model: str = Field("qwen2.5-coder-1.5b", description="model name sent to the server; for llamacpp a "
                       "packaged name or .gguf path. Part of the cache key.")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    concurrency: int = Field(4, ge=1, description="requests in flight (match the server's parallel slots)")
    timeout_s: float = Field(900.0, gt=0, description="seconds per request (CPU teachers are slow)")
    max_retries: int = Field(4, ge=0, description="HTTP retries per request (exponential backoff)")
    n_ctx: int = Field(4096, ge=256, description="llamacpp: context window")
    extra_body: dict = Field(default_factory=dict, description="extra JSON fields per request, e.g. "
                             "{\"cache_prompt\": false} for llama.cpp, {\"top_k\": 20} for vLLM")
    price_per_1k_prompt: float | None = Field(None, ge=0, description="cost per 1k prompt tokens (report only)")
    price_per_1k_completion: float | None = Field(None, ge=0, description="cost per 1k completion tokens")


class TeachSampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0, description="first attempt (0 = greedy)")
    retry_temperature: float = Field(0.7, ge=0, description="temperature of retries when the first is greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(768, ge=16)
    seed: int = Field(0, description="attempt k uses seed + k")


class TeachConfig(BaseModel):
    """Configuration of ``teach`` (``codistill teach``)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str = Field(..., description="run directory for contexts, cache, train set, manifest")
    mode: Literal["explain", "solve", "hierarchical"] = "explain"
    dataset: str | None = Field(None, description="a folder written by `codistill data` (rows.jsonl, problems.jsonl)")
    benchmark: str | None = Field(None, description="or a load_benchmark name (no verification/decontamination)")
    benchmark_kwargs: dict = Field(default_factory=dict)
    data_dir: str | None = None
    limit: int | None = Field(None, ge=0, description="first N rows only")
    ids: list[str] | None = Field(None, description="only these row ids")
    template: str | None = Field(None, description="a template file of your own (default: the mode's)")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sampling: TeachSampling = Field(default_factory=TeachSampling)
    validation: ValidationRules = Field(default_factory=ValidationRules)
    max_attempts: int = Field(3, ge=1, description="teacher calls per problem at most (invalid/leaking/"
                              "failing answers are retried); solve mode: the k of rejection sampling")
    keep_passing: int = Field(1, ge=1, description="solve: passing samples to keep per problem")
    leakage_threshold: float | None = Field(0.5, ge=0, le=1, description="reject contexts whose leakage "
                                            "score is above this (None: keep all, still scored)")
    leakage_n: int = Field(4, ge=1, description="token n-gram size of the leakage score")
    judge_timeout_s: float = Field(10.0, gt=0, description="solve: seconds per program")
    cache_dir: str | None = Field(None, description="response cache folder (default: <out_dir>/cache)")
    progress_every: int = Field(10, ge=1, description="log a progress line every N finished problems (and "
                                "at least every 30 s: rows done/total, rate, ETA)")
    order_seed: int | None = Field(None, description="process rows in a random order with this seed (so a "
                                   "partial run covers every source); outputs keep the dataset order")

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, name: str | None) -> str | None:
        if name is not None:
            from codistill.problems.loaders import check_benchmark_name

            check_benchmark_name(name)
        return name

    # where files go and how the teacher is reached: not what it is asked
    LOCATION_FIELDS: ClassVar[set[str]] = {"out_dir", "dataset", "cache_dir", "progress_every"}
    TRANSPORT_FIELDS: ClassVar[set[str]] = {"base_url", "concurrency", "timeout_s", "max_retries", "api_key_env"}

    def key(self) -> dict:
        """The stage's identity: what the teacher is asked and how answers are kept (the dataset
        enters a recipe's key through its content hash)."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        d["teacher"] = {k: v for k, v in d["teacher"].items() if k not in self.TRANSPORT_FIELDS}
        return d

    @model_validator(mode="after")
    def _one_source(self) -> "TeachConfig":
        if (self.dataset is None) == (self.benchmark is None):
            raise ValueError("give exactly one of dataset (a `codistill data` folder) or benchmark (a loader name)"
                             f"; got dataset={self.dataset!r}, benchmark={self.benchmark!r}")
        return self


class EmptyAnswerError(RuntimeError):
    """The teacher answered (HTTP 200) with no text: a symptom of a server in trouble. Such an
    answer is never cached, and the row is left to do (a teacher error), so the next run asks again."""


class TeachIncompleteError(RuntimeError):
    """Teacher errors left rows without a record. ``exit_code``: 1 when no row finished in this run
    (every teacher call failed), 3 when some did (a partial run); a re-run asks only the rest."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- rows


def load_rows(cfg: TeachConfig) -> tuple[list[dict], dict]:
    """Rows (id, problem_id, prompt, code, tests, difficulty, source, entry_point) and problems by id."""
    from codistill.data.prepare import problem_rows
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
    if cfg.mode == "solve":
        rows = [r for r in rows if not r.get("alt")]  # solve does not depend on the reference
    if cfg.ids is not None:
        wanted = set(cfg.ids)
        rows = [r for r in rows if r["id"] in wanted]
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    if MODES[cfg.mode].needs_solution:
        missing = [r["id"] for r in rows if not r.get("code")]
        if missing:
            raise ValueError(f"mode {cfg.mode!r} shows the teacher the reference solution, but {len(missing)} rows "
                             f"have none (e.g. {missing[:3]}); use mode='solve' for them")
    return rows, problems


# --------------------------------------------------------------------------- cache


class ResponseCache:
    """Teacher answers by key, in an append-only JSONL file (thread-safe)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "responses.jsonl"
        self._d: dict[str, dict] = {}
        if self.path.exists():
            for r in read_jsonl(self.path, resumable=True):
                if (r.get("text") or "").strip():  # empty answers (outage symptoms) written by old versions
                    self._d[r["key"]] = r
        self._app: JsonlAppender | None = None
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> dict | None:
        with self._lock:
            r = self._d.get(key)
            if r is not None:
                self.hits += 1
            return r

    def put(self, rec: dict) -> None:
        with self._lock:
            if self._app is None:
                self._app = JsonlAppender(self.path)
            self._app.append(rec)
            self._d[rec["key"]] = rec

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


# --------------------------------------------------------------------------- teacher calls


class _Teacher:
    """A pool of generators, one per in-flight request, so each call's token usage is exact."""

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self._pool: queue.Queue | None = None
        self._all: list = []
        self._lock = threading.Lock()
        self.calls = 0

    def _gens(self) -> queue.Queue:
        with self._lock:
            if self._pool is None:
                from codistill.backends import make_generator

                c = self.cfg
                q: queue.Queue = queue.Queue()
                if c.backend == "openai":
                    for _ in range(c.concurrency):
                        g = make_generator("openai", base_url=c.base_url, model=c.model, api_key_env=c.api_key_env,
                                           concurrency=1, timeout=c.timeout_s, max_retries=c.max_retries,
                                           extra_body=c.extra_body)
                        q.put(g)
                        self._all.append(g)
                else:
                    g = make_generator("llamacpp", model=c.model, n_ctx=c.n_ctx)
                    q.put(g)
                    self._all.append(g)
                self._pool = q
            return self._pool

    def __call__(self, prompt: str, params) -> tuple[str, dict]:
        pool = self._gens()
        g = pool.get()
        try:
            before = g.usage.as_dict()
            t0 = time.perf_counter()
            text = g.generate([prompt], params)[0][0]
            secs = time.perf_counter() - t0
            after = g.usage.as_dict()
        finally:
            pool.put(g)
        with self._lock:
            self.calls += 1
        usage = {k: after[k] - before[k] for k in after}
        return text, {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                      "requests": usage["requests"], "retries": usage["retries"], "seconds": round(secs, 3)}

    def close(self) -> None:
        for g in self._all:
            g.close()


# --------------------------------------------------------------------------- one problem


def _row_hash(row: dict) -> str:
    return sha256_json([row["id"], row["prompt"], row.get("code") or ""])[:16]


class _Runner:
    def __init__(self, cfg: TeachConfig, template: PromptTemplate, cache: ResponseCache, teacher: _Teacher,
                 problems: dict, judge=None):
        self.cfg, self.template, self.cache, self.teacher = cfg, template, cache, teacher
        self.problems = problems
        self.judge = judge

    def params(self, attempt: int):
        from codistill.backends import SamplingParams

        s = self.cfg.sampling
        temp = s.temperature if attempt == 0 or s.temperature > 0 else s.retry_temperature
        return SamplingParams(n=1, temperature=temp, top_p=s.top_p if temp > 0 else 1.0,
                              max_new_tokens=s.max_new_tokens, seed=s.seed + attempt,
                              stop=MODES[self.cfg.mode].stop)

    def key(self, row: dict, attempt: int) -> str:
        p = self.params(attempt)
        key = {"teacher": self.cfg.teacher.model, "template": self.template.sha256, "params": p.model_dump(),
               "row": row["id"], "row_hash": _row_hash(row), "attempt": attempt}
        if self.cfg.teacher.extra_body:  # may change answers (top_k, ...); absent keeps old keys valid
            key["extra_body"] = self.cfg.teacher.extra_body
        return sha256_json(key)

    def ask(self, row: dict, prompt: str, attempt: int) -> tuple[str, dict, bool]:
        k = self.key(row, attempt)
        hit = self.cache.get(k)
        if hit is not None:
            return hit["text"], hit["usage"], True
        text, usage = self.teacher(prompt, self.params(attempt))
        if not text.strip():
            # a server in trouble answers 200 with nothing; cached, that outage would be permanent
            raise EmptyAnswerError(f"the teacher answered with no text (attempt {attempt + 1}); not cached: "
                                   "the row is asked again on the next run")
        self.cache.put({"key": k, "id": row["id"], "attempt": attempt, "text": text, "usage": usage,
                        "teacher": self.cfg.teacher.model, "template": self.template.sha256})
        return text, usage, False

    def run(self, row: dict) -> dict:
        cfg = self.cfg
        prompt = self.template.render(row["prompt"], row.get("code"), row.get("entry_point"))
        tokens = {"prompt": 0, "completion": 0}
        seconds = 0.0
        tried: list[dict] = []
        passing: list[dict] = []
        final = None
        for attempt in range(cfg.max_attempts):
            text, usage, cached = self.ask(row, prompt, attempt)
            tokens["prompt"] += usage.get("prompt_tokens", 0)
            tokens["completion"] += usage.get("completion_tokens", 0)
            seconds += usage.get("seconds", 0.0)
            parsed = parse_answer(cfg.mode, text, cfg.validation)
            if parsed.valid:
                echo = template_echo(text, self.template.text, cfg.validation.template_echo_words)
                if echo is not None:
                    parsed.valid = False
                    parsed.reason = f"copies the template text ({echo!r})"
            entry = {"attempt": attempt, "cached": cached, "valid": parsed.valid, "reason": parsed.reason,
                     "completion_tokens": usage.get("completion_tokens", 0)}
            lk = None
            if parsed.valid and cfg.mode != "solve":
                lk = leak.leakage(text, row["code"], public=row["prompt"], n=cfg.leakage_n)
                entry["leakage"] = lk["score"]
                if cfg.leakage_threshold is not None and lk["score"] > cfg.leakage_threshold:
                    parsed.valid = False
                    parsed.reason = f"leakage {lk['score']:.2f} > {cfg.leakage_threshold}"
                    entry.update(valid=False, reason=parsed.reason)
            if parsed.valid and cfg.mode == "solve":
                verdict = self._judge(row, parsed.code)
                entry["judge"] = verdict["status"]
                if not verdict["passed"]:
                    parsed.valid = False
                    parsed.reason = f"judge: {verdict['status']}"
                    entry.update(valid=False, reason=parsed.reason)
            elif not parsed.valid and cfg.mode != "solve" and entry.get("leakage") is None:
                entry["leakage"] = leak.leakage_score(text, row["code"], public=row["prompt"], n=cfg.leakage_n)
            tried.append(entry)
            cand = {"sections": parsed.sections, "raw": text, "valid": parsed.valid, "reason": parsed.reason,
                    "leakage": lk, "code": parsed.code if cfg.mode == "solve" else row.get("code")}
            if parsed.valid:
                passing.append(cand)
                if cfg.mode != "solve" or len(passing) >= cfg.keep_passing:
                    break
            final = cand
        best = passing[0] if passing else final
        rec = {
            "id": row["id"], "problem_id": row.get("problem_id", row["id"]), "mode": cfg.mode,
            "sections": best["sections"], "context": render_context(best["sections"], cfg.mode),
            "raw": best["raw"], "code": best["code"], "valid": bool(passing),
            "reason": None if passing else best["reason"],
            "leakage": (best["leakage"] or {}).get("score") if best["leakage"] else tried[-1].get("leakage"),
            "leakage_detail": best["leakage"],
            "teacher": cfg.teacher.model, "template_hash": self.template.sha256,
            "template": self.template.source, "params": self.params(0).model_dump(),
            "parser_version": PARSER_VERSION, "attempts": len(tried), "attempt_log": tried,
            "tokens": tokens, "seconds": round(seconds, 3),
        }
        if cfg.mode == "solve" and len(passing) > 1:
            rec["alternatives"] = [{"sections": c["sections"], "code": c["code"], "raw": c["raw"]} for c in passing[1:]]
        return rec

    def _judge(self, row: dict, code: str | None) -> dict:
        if not code:
            return {"passed": False, "status": "no_code"}
        problem = self.problems.get(row.get("problem_id", row["id"]))
        if problem is None:
            raise KeyError(f"no problem record for {row['id']}: solve mode needs the tests")
        return self.judge.judge(problem, code)


# --------------------------------------------------------------------------- the stage


def _run_key(cfg: TeachConfig, template: PromptTemplate) -> str:
    """What makes a finished record reusable on resume (the parser version is checked separately)."""
    return sha256_json({"mode": cfg.mode, "teacher": cfg.teacher.model, "template": template.sha256,
                        "sampling": cfg.sampling.model_dump(), "validation": cfg.validation.model_dump(),
                        "max_attempts": cfg.max_attempts, "keep_passing": cfg.keep_passing,
                        "leakage": [cfg.leakage_threshold, cfg.leakage_n, leak.LEAKAGE_VERSION]})


def teach(config: TeachConfig | dict) -> dict:
    """Generate, validate and store teacher contexts; returns the manifest (see module docstring)."""
    cfg = config if isinstance(config, TeachConfig) else TeachConfig.model_validate(config)
    if cfg.mode == "solve" and cfg.teacher.backend == "llamacpp" and cfg.teacher.concurrency > 1:
        log.info("llamacpp runs one request at a time; concurrency is ignored")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out / ".teach.lock"):
        return _teach(cfg, out)


def _exclusive(path: Path) -> RunDirLock:
    """The run directory's lock (``path`` = ``<out_dir>/.teach.lock``): two ``teach`` processes on
    one ``out_dir`` would ask the teacher twice for the same problems."""
    return RunDirLock(Path(path).parent, "teach")


def _teach(cfg: TeachConfig, out: Path) -> dict:
    template = load_template(cfg.mode, cfg.template)
    rows, problems = load_rows(cfg)
    run_key = _run_key(cfg, template)
    ctx_path = out / "contexts.jsonl"
    done: dict[str, dict] = {}
    if ctx_path.exists():
        for r in read_jsonl(ctx_path, resumable=True):
            if r.get("run_key") == run_key and r.get("parser_version") == PARSER_VERSION:
                done[r["id"]] = r
    todo = [r for r in rows if r["id"] not in done]
    if cfg.order_seed is not None:
        import random

        random.Random(cfg.order_seed).shuffle(todo)
    cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
    teacher = _Teacher(cfg.teacher)
    judge_cm = None
    judge = None
    if cfg.mode == "solve" and todo:
        from codistill.execution.judge import Judge, JudgeConfig

        judge_cm = Judge(JudgeConfig(timeout_s=cfg.judge_timeout_s))
        judge = judge_cm.__enter__()
    runner = _Runner(cfg, template, cache, teacher, problems, judge)
    errors: dict[str, str] = {}
    new = 0
    fresh = 0  # finished with at least one teacher call in this run (the rest came from the cache)
    t0 = time.time()
    log.info("teach %s: %d rows, %d already done, %d to do", cfg.mode, len(rows), len(rows) - len(todo), len(todo))
    tc = cfg.teacher
    if todo and tc.backend == "openai":
        log.info("teacher %s at %s: %d in flight, %.0f s per request, %d retries", tc.model, tc.base_url,
                 tc.concurrency, tc.timeout_s, tc.max_retries)
    try:
        if todo:
            lock = threading.Lock()
            workers = 1 if cfg.teacher.backend == "llamacpp" else cfg.teacher.concurrency
            stop_after = max(_STOP_AFTER_FAILED_ROWS, 2 * workers)
            streak = 0  # rows failed in a row: the teacher is down, asking the rest would only wait
            from codistill.progress import Progress

            prog = Progress("teach", len(rows), unit="rows", done=len(rows) - len(todo), every_n=cfg.progress_every,
                            logger=log, describe=lambda: f"teacher calls {teacher.calls}, cache hits {cache.hits}"
                            + (f", errors {len(errors)}" if errors else ""))
            with JsonlAppender(ctx_path) as app, ThreadPoolExecutor(workers, thread_name_prefix="teach") as ex, prog:
                futs = {ex.submit(runner.run, r): r for r in todo}
                for fut in as_completed(futs):
                    row = futs[fut]
                    if fut.cancelled():
                        continue
                    try:
                        rec = fut.result()
                    except Exception as e:  # noqa: BLE001 - a teacher outage must not lose finished work
                        errors[row["id"]] = f"{type(e).__name__}: {e}"[:300]
                        log.warning("teacher error on %s: %s", row["id"], errors[row["id"]])
                        prog.advance()
                        streak += 1
                        if streak == stop_after:
                            n = sum(f.cancel() for f in futs)
                            log.error("the last %d rows all failed: the teacher looks unavailable; %d rows not "
                                      "asked (they stay to do)", streak, n)
                        continue
                    streak = 0
                    rec["run_key"] = run_key
                    with lock:
                        app.append(rec)
                        done[rec["id"]] = rec
                        new += 1
                        fresh += any(not a.get("cached") for a in rec["attempt_log"])
                    prog.advance()
    finally:
        wall = time.time() - t0
        teacher.close()
        cache.close()
        if judge_cm is not None:
            judge_cm.__exit__(None, None, None)
    records = [done[r["id"]] for r in rows if r["id"] in done]
    train_rows = _train_rows(records, {r["id"]: r for r in rows}, cfg.mode)
    if new or not (out / "train.jsonl").exists():
        write_jsonl(out / "train.jsonl", train_rows)
        _write_dataset(out / "train_dataset", train_rows)
    manifest = _manifest(cfg, template, rows, records, train_rows, teacher, cache, errors, new, fresh, wall,
                         run_key, out / "teach_manifest.json")
    atomic_write_json(out / "teach_manifest.json", manifest)
    if errors:
        log.warning("%s", describe_teacher_errors(manifest))
    return manifest


_STOP_AFTER_FAILED_ROWS = 8  # at least; twice the rows in flight when that is more


def describe_teacher_errors(manifest: dict) -> str | None:
    """One paragraph on a teach run's teacher errors (None when there were none): how many rows
    got no answer, the distinct errors (most frequent first, with an example row), and what stays."""
    from collections import Counter

    errors: dict[str, str] = manifest.get("teacher_errors") or {}
    if not errors:
        return None
    c = manifest["counts"]
    by_msg = Counter(errors.values())
    example = {}
    for rid, msg in errors.items():
        example.setdefault(msg, rid)
    shown = "; ".join(f"{example[m]}{f' (and {k - 1} more)' if k > 1 else ''}: {m.rstrip('.')}"
                      for m, k in by_msg.most_common(3))
    if len(by_msg) > 3:
        shown += f"; {len(by_msg) - 3} other errors"
    new = (manifest.get("this_run") or {}).get("new_contexts", 0)
    not_asked = c["remaining"] - len(errors)
    text = (f"{len(errors)} of {c['rows']} rows got no answer from the teacher"
            f"{' (every teacher call of this run failed)' if not new else ''}: {shown}. "
            f"{c['finished']} rows are finished and kept ({c['valid']} valid, {c['train_rows']} training rows)")
    if not_asked > 0:
        text += f"; {not_asked} more were not asked (the run stopped asking after repeated failures)"
    return text + "."


def incomplete_error(manifest: dict, resume: str) -> TeachIncompleteError | None:
    """The error to raise when a teach run left rows to do (None when it finished them all).
    ``resume``: the command that continues the run (it asks only the rows left to do)."""
    c = manifest["counts"]
    if manifest.get("complete") or not c.get("remaining"):
        return None
    why = describe_teacher_errors(manifest) or f"{c['remaining']} of {c['rows']} rows are left to do."
    teacher = manifest.get("config", {}).get("teacher", {})
    new = (manifest.get("this_run") or {}).get("new_contexts", 0)
    hint = ""
    if not new and teacher.get("backend", "openai") == "openai":
        hint = f" Check that the teacher server at {teacher.get('base_url')} is up and answering."
    return TeachIncompleteError(f"teach is not complete: {why}{hint} To ask the teacher again for the rows left "
                                f"to do (finished ones are kept), run {resume} again.",
                                exit_code=1 if not new else 3)


def _train_rows(records: list[dict], rows_by_id: dict, mode: str) -> list[dict]:
    out = []
    for rec in records:
        if not rec.get("valid"):
            continue
        row = rows_by_id[rec["id"]]
        variants = [(rec["id"], rec["sections"], rec["code"])]
        for k, alt in enumerate(rec.get("alternatives") or [], 1):
            variants.append((f"{rec['id']}#s{k}", alt["sections"], alt["code"]))
        for rid, sections, code in variants:
            out.append({"id": rid, "prompt": row["prompt"], "context": render_context(sections, mode),
                        "code": code, "tests": row.get("tests", ""), "difficulty": row.get("difficulty"),
                        "source": row.get("source")})
    return out


def _write_dataset(path: Path, rows: list[dict]) -> None:
    try:
        import datasets
    except ImportError:
        return
    import shutil
    import tempfile

    data = {k: [r[k] for r in rows] for k in TRAIN_KEYS}
    ds = datasets.Dataset.from_dict(data)
    tmp = Path(tempfile.mkdtemp(prefix=".train_dataset.", dir=path.parent))
    try:
        ds.save_to_disk(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest(cfg, template, rows, records, train_rows, teacher, cache, errors, new, fresh, wall, run_key,
              path) -> dict:
    from collections import Counter

    prev = json.loads(path.read_text()) if path.exists() else {}
    valid = [r for r in records if r.get("valid")]
    reasons = Counter(r.get("reason") or "?" for r in records if not r.get("valid"))
    reasons_grouped = Counter(("leakage" if (r or "").startswith("leakage") else (r or "?").split(" (")[0])
                              for r in reasons.elements())
    attempts_rejected = Counter()
    for r in records:
        for a in r.get("attempt_log", []):
            if not a.get("valid"):
                why = a.get("reason") or "?"
                attempts_rejected["leakage" if why.startswith("leakage") else why.split(" (")[0]] += 1
    tok_p = sum(r["tokens"]["prompt"] for r in records)
    tok_c = sum(r["tokens"]["completion"] for r in records)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0}
    for g in teacher._all:
        for k, v in g.usage.as_dict().items():
            usage[k] += v
    this_run = {"teacher_calls": teacher.calls, "cache_hits": cache.hits, "new_contexts": new,
                "from_teacher": fresh, "from_cache_only": new - fresh, "wall_seconds": round(wall, 2), **usage,
                "completion_tokens_per_s": round(usage["completion_tokens"] / wall, 3) if wall > 0 else None,
                "contexts_per_min": round(60 * fresh / wall, 3) if wall > 0 and fresh else 0.0}
    runs = prev.get("runs", []) + [this_run] if (prev.get("run_key") == run_key) else [this_run]
    tc = cfg.teacher
    cost = None
    if tc.price_per_1k_prompt is not None or tc.price_per_1k_completion is not None:
        cost = round(tok_p / 1000 * (tc.price_per_1k_prompt or 0) + tok_c / 1000 * (tc.price_per_1k_completion or 0), 6)
    leak_scores = [r["leakage"] for r in records if r.get("leakage") is not None]
    attempt_leaks = [a["leakage"] for r in records for a in r.get("attempt_log", []) if a.get("leakage") is not None]
    teacher_seconds = sum(r.get("seconds", 0.0) for r in records)
    return {
        "stage": "teach",
        "complete": len(records) == len(rows) and not errors,
        "run_key": run_key,
        "config": cfg.model_dump(),
        "template": {"source": template.source, "sha256": template.sha256},
        "parser_version": PARSER_VERSION,
        "counts": {"rows": len(rows), "finished": len(records), "valid": len(valid),
                   "invalid": len(records) - len(valid), "train_rows": len(train_rows),
                   "teacher_errors": len(errors), "remaining": len(rows) - len(records),
                   "invalid_by_reason": dict(reasons_grouped),
                   "rejected_attempts_by_reason": dict(attempts_rejected),
                   "attempts_total": sum(r.get("attempts", 0) for r in records),
                   "first_attempt_valid": sum(1 for r in valid if r.get("attempts") == 1)},
        "teacher_errors": errors,
        "tokens": {"prompt": tok_p, "completion": tok_c, "total": tok_p + tok_c,
                   "mean_completion_per_valid_context": round(tok_c / len(valid), 1) if valid else None},
        "time": {"teacher_seconds_sum": round(teacher_seconds, 1),
                 "completion_tokens_per_teacher_second": round(tok_c / teacher_seconds, 3) if teacher_seconds else None},
        "cost": cost,
        "leakage": {"final": leak.summarize(leak_scores, cfg.leakage_threshold),
                    "all_attempts": leak.summarize(attempt_leaks, cfg.leakage_threshold)},
        "this_run": this_run,
        "runs": runs,
    }


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> dict:
    """``python -m codistill.teacher.teach`` (the flags ``codistill teach`` should have)."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="codistill teach", description="Generate teacher contexts (resumable).",
        epilog="Exit status: 0 every row finished; 1 no row finished because every teacher call failed (or "
               "another error); 2 bad input or settings; 3 some rows finished, others got teacher errors. "
               "Rows left to do are asked again by the same command.")
    ap.add_argument("--config", help="YAML/JSON file with a TeachConfig; flags override it")
    ap.add_argument("--out", dest="out_dir", help="run directory")
    ap.add_argument("--mode", choices=list(MODES))
    ap.add_argument("--dataset", help="folder written by `codistill data`")
    ap.add_argument("--benchmark", help="or a benchmark name (e.g. leetcode for solve mode)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--template", help="your own template file")
    ap.add_argument("--backend", choices=["openai", "llamacpp"])
    ap.add_argument("--base-url")
    ap.add_argument("--model", help="teacher model name (server alias, or GGUF for llamacpp)")
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--timeout", type=float, dest="timeout_s",
                    help="seconds per teacher request (default 900: CPU teachers are slow)")
    ap.add_argument("--retries", type=int, dest="max_retries",
                    help="retries of a failed request, with exponential backoff (default 4); each is logged")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--max-attempts", type=int, help="teacher calls per problem at most (solve: k)")
    ap.add_argument("--keep-passing", type=int)
    ap.add_argument("--leakage-threshold", type=float)
    ap.add_argument("--cache-dir")
    ap.add_argument("--order-seed", type=int, help="process rows in a random order (outputs keep dataset order)")
    ap.add_argument("--price-per-1k-prompt", type=float)
    ap.add_argument("--price-per-1k-completion", type=float)
    a = ap.parse_args(argv)
    data: dict = {}
    if a.config:
        import yaml

        data = yaml.safe_load(Path(a.config).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{a.config}: a teach config is a mapping of TeachConfig fields")
    top = {"out_dir": a.out_dir, "mode": a.mode, "dataset": a.dataset, "benchmark": a.benchmark, "limit": a.limit,
           "template": a.template, "max_attempts": a.max_attempts, "keep_passing": a.keep_passing,
           "leakage_threshold": a.leakage_threshold, "cache_dir": a.cache_dir, "order_seed": a.order_seed}
    data.update({k: v for k, v in top.items() if v is not None})
    t = data.setdefault("teacher", {})
    for k, v in {"backend": a.backend, "base_url": a.base_url, "model": a.model, "concurrency": a.concurrency,
                 "timeout_s": a.timeout_s, "max_retries": a.max_retries, "price_per_1k_prompt": a.price_per_1k_prompt,
                 "price_per_1k_completion": a.price_per_1k_completion}.items():
        if v is not None:
            t[k] = v
    s = data.setdefault("sampling", {})
    for k, v in {"max_new_tokens": a.max_new_tokens, "temperature": a.temperature}.items():
        if v is not None:
            s[k] = v
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    m = teach(TeachConfig.model_validate(data))
    print(json.dumps({"counts": m["counts"], "tokens": m["tokens"], "this_run": m["this_run"],
                      "leakage": m["leakage"]["final"]}))
    err = incomplete_error(m, "the same `codistill teach` command")
    if err is not None:
        raise err
    return m


if __name__ == "__main__":
    import sys

    from codistill.cli import main as cli_main

    sys.exit(cli_main(["teach", *sys.argv[1:]]))
