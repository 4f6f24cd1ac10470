"""``codistill eval``: generate -> judge -> metrics, resumable, in one run directory.

Run directory layout::

    RUN_DIR/config.json          resolved EvalConfig
    RUN_DIR/generations.jsonl    one line per generated sample (append-only; resume counts it)
    RUN_DIR/<bench>/samples.jsonl   EvalPlus format: task_id, solution (+ completion_raw, ...)
    RUN_DIR/<bench>/verdicts.jsonl  judge output (every sample field + passed, status, ...)
    RUN_DIR/tasks.jsonl          per task and benchmark: program, verdict, n, c, pass@1,
                                 syntax/dataflow match, question-completion perplexity
    RUN_DIR/token_nll.jsonl      per-token negative log-likelihood along greedy solutions
    RUN_DIR/results.json         all metrics, config, versions, data hashes, timings

Prompts that are the same for two benchmarks (HumanEval and HumanEval+) are generated once.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from codistill.problems.schema import Problem
from codistill.store import JsonlAppender, atomic_write_json, read_jsonl, sha256_json, write_jsonl

DEFAULT_BENCHMARKS = ["humaneval", "humaneval+", "mbpp", "mbpp+"]
# The paper evaluates MBPP on its test split (task ids 11-510).
BENCHMARK_ALIASES = {"mbpp": "mbpp:test"}
EVAL_LABELS = {"mbpp": "MBPP test split (500)"}
STOPS_COMPLETION_CODE = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert"]
STOPS_COMPLETION_DOC = ["\nassert", '\n"""', "\nif __name__", "\nprint(", "\n```"]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="packaged short name, local HF folder, GGUF file, or server model name")
    adapter: str | None = Field(None, description="peft LoRA adapter folder, applied without merging")
    backend: str = Field("hf", description="hf | llama-server | openai | llamacpp (see codistill.backends)")
    backend_options: dict = Field(default_factory=dict, validate_default=True,
                                  description="extra backend arguments (base_url, concurrency, ...)")
    benchmarks: list[str] = Field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    n_samples: int = Field(1, ge=1, description="samples per task (pass@k for k <= n)")
    temperature: float = Field(0.0, ge=0, description="0 = greedy (the paper's setting)")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    seed: int = 0
    limit: int | None = Field(None, ge=1, description="first K tasks of each benchmark")
    batch_size: int = Field(8, ge=1)
    prompt_mode: Literal["auto", "chat", "completion"] = "auto"
    template_dir: str | None = Field(None, description="folder with eval_chat.txt / eval_completion.txt to override, "
                                     "or a packaged set: 'bare' = the problem statement alone as the user turn, "
                                     "as the training data shows it")
    dtype: str = "float32"
    perplexity: bool = Field(True, description="question-completion perplexity on MBPP test questions")
    perplexity_prefix: float = Field(0.1, gt=0, lt=1, description="fraction of question tokens given as context")
    token_nll: bool = Field(True, description="per-token NLL along greedy solutions (paper Fig. 2)")
    data_dir: str | None = None
    judge_timeout_s: float = Field(3.0, gt=0)
    workers: int | None = Field(None, ge=1)
    format: str | dict | None = Field(None, description="the protocol: None or 'standard' = zero-shot (EvalPlus "
                                      "instruction prompt through the backend's chat, any answer layout); a student "
                                      "format (packaged name such as 'paper', or a mapping; see codistill.formats); "
                                      "'adapter' = the format the adapter was trained in")
    budget_margin: int = Field(32, ge=0, description="tokens over the 99th percentile of the adapter's training "
                               "targets that max_new_tokens must leave (the budget guard)")
    allow_format_mismatch: bool = Field(False, description="judge an adapter in a format it was not trained in "
                                        "(recorded in results.json)")
    allow_short_budget: bool = Field(False, description="judge an adapter with max_new_tokens under its training "
                                     "targets' length (recorded in results.json)")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        if v in (None, "standard", "adapter"):
            return v
        from codistill.formats import get_format

        get_format(v)
        return v

    # Checked here, so that `codistill run` refuses a bad eval section before its first stage
    # and `codistill eval` before loading a model. Field by field, so every problem shows at once.
    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str, info: ValidationInfo) -> str:
        from codistill.backends import backend_kind

        kind = backend_kind(v)
        if info.data.get("adapter") and kind not in ("hf", "llama-server"):
            raise ValueError(f"backend {v!r} cannot apply a LoRA adapter here: use backend hf, or llama-server "
                             "(converts the adapter to GGUF), or serve the adapter yourself")
        return v

    @field_validator("backend_options")
    @classmethod
    def _known_backend_options(cls, v: dict, info: ValidationInfo) -> dict:
        from codistill.backends import backend_kind, check_backend_options

        if "backend" in info.data:  # else the backend itself is wrong (reported on its own)
            kind = backend_kind(info.data["backend"])
            check_backend_options(kind, v, _SET_BY_EVAL.get(kind, ("model",)))
        return v

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, names: list[str]) -> list[str]:
        from codistill.problems.loaders import check_benchmark_name

        if not names:
            raise ValueError("no benchmarks given")
        for name in names:
            check_benchmark_name(BENCHMARK_ALIASES.get(name, name))
        return names

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in ("float32", "bfloat16", "float16"):
            raise ValueError("choose float32, bfloat16 or float16")
        return v

    @field_validator("template_dir")
    @classmethod
    def _template_dir_exists(cls, v: str | None) -> str | None:
        if v and v not in PACKAGED_TEMPLATE_SETS and not Path(v).is_dir():
            raise ValueError(f"neither a folder nor a packaged template set ({', '.join(PACKAGED_TEMPLATE_SETS)})")
        return v


# What run_eval passes to each backend itself (so not allowed in backend_options).
_SET_BY_EVAL = {"hf": ("model", "adapter", "batch_size", "prompt_mode", "dtype"),
                "llama-server": ("model", "adapter", "prompt_mode")}
PACKAGED_TEMPLATE_SETS = ("bare",)


def _template(cfg: EvalConfig, mode: str) -> str:
    """The prompt template: ``template_dir``'s file, else a packaged set's, else the default.

    The default chat template is EvalPlus's instruction prompt (the problem inside a fenced block).
    A model fine-tuned on bare problem statements (``codistill train``'s prompt) sees a different
    user turn there; ``template_dir="bare"`` shows it the statement alone, as in training.
    """
    name = f"eval_{mode}.txt"
    if cfg.template_dir:
        folder = Path(cfg.template_dir)
        if not folder.is_dir():
            if cfg.template_dir not in PACKAGED_TEMPLATE_SETS:
                raise ValueError(f"template_dir {cfg.template_dir!r} is neither a folder nor a packaged template set "
                                 f"({', '.join(PACKAGED_TEMPLATE_SETS)}); give a folder holding eval_chat.txt "
                                 "and/or eval_completion.txt")
            packaged = resources.files("codistill").joinpath("templates", cfg.template_dir, name)
            if packaged.is_file():
                return packaged.read_text()
        elif (folder / name).is_file():
            return (folder / name).read_text()
    return resources.files("codistill").joinpath("templates", name).read_text()


def render_prompt(problem: Problem, template: str) -> str:
    return template.replace("{prompt}", problem.prompt.strip() if "```" in template else problem.prompt)


def _gen_key(task_id: str, prompt: str) -> str:
    return hashlib.sha256(f"{task_id}\0{prompt}".encode()).hexdigest()[:20]


def _versions() -> dict:
    from codistill.store import package_versions

    return package_versions("codistill", "torch", "transformers", "peft", "codebleu")


def run_eval(cfg: EvalConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Generate, judge and score; resumes from whatever ``out_dir`` already holds. One process at a
    time per ``out_dir`` (a second gets :class:`codistill.store.RunDirBusyError`): two would
    generate every sample twice."""
    from codistill.store import RunDirLock

    with RunDirLock(out_dir, "eval"):
        return _run_eval(cfg, out_dir, progress)


def _log():
    import logging

    return logging.getLogger(__name__)


def _run_eval(cfg: EvalConfig, out_dir: str | Path, progress: bool) -> dict:
    from rich.console import Console

    from codistill.backends import SamplingParams, make_generator
    from codistill.commands import summarize
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig
    from codistill.problems.loaders import BENCHMARK_LABELS, load_benchmark

    console = Console(emoji=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the protocol, checked against the adapter before anything is loaded (codistill.formats)
    fmt, check = resolve_protocol(cfg)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        keys = ("model", "adapter", "backend", "temperature", "top_p", "max_new_tokens", "prompt_mode", "seed",
                "dtype", "format", "template_dir")
        defaults = {"backend": "hf", "dtype": "float32"}
        changed = [k for k in keys if old.get(k, defaults.get(k)) != getattr(cfg, k)]
        if changed:
            raise ValueError(f"{out} holds a run with different settings ({', '.join(changed)}); "
                             "use another --out directory or delete it to start over")
    atomic_write_json(cfg_path, cfg.model_dump())
    timings: dict[str, float] = {}

    # problems --------------------------------------------------------------------------
    benches: dict[str, list[Problem]] = {}
    data_hashes = {}
    for name in cfg.benchmarks:
        problems = load_benchmark(BENCHMARK_ALIASES.get(name, name), data_dir=cfg.data_dir, limit=cfg.limit)
        benches[name] = problems
        data_hashes[name] = sha256_json([p.model_dump(exclude={"meta"}) for p in problems])

    # generation -------------------------------------------------------------------------
    t0 = time.perf_counter()
    backend = cfg.backend.lower().replace("_", "-")
    # a student format renders its prompts itself (the same text training tokenized): the backend
    # gets them as raw completion prompts
    backend_mode = "completion" if fmt is not None else cfg.prompt_mode
    if backend in ("hf", "transformers", "huggingface"):
        gen = make_generator(cfg.backend, model=cfg.model, adapter=cfg.adapter, batch_size=cfg.batch_size,
                             prompt_mode=backend_mode, dtype=cfg.dtype, **cfg.backend_options)
    elif backend in ("llama-server", "llamacpp-server"):
        gen = make_generator(cfg.backend, model=cfg.model, adapter=cfg.adapter, prompt_mode=backend_mode,
                             **cfg.backend_options)
    else:
        if cfg.adapter:
            raise ValueError(f"backend {cfg.backend!r} cannot apply a LoRA adapter here: use --backend hf, or "
                             "--backend llama-server (converts the adapter to GGUF), or serve the adapter yourself")
        gen = make_generator(cfg.backend, model=cfg.model, **cfg.backend_options)
    timings["load_model_s"] = time.perf_counter() - t0
    tok = getattr(gen, "tokenizer", None) or _student_tokenizer(cfg)
    if fmt is not None:
        if tok is None:
            raise ValueError(f"format {fmt.name!r} needs the model's tokenizer to render its prompts, and none "
                             f"could be loaded for {cfg.model!r}")
        mode = "chat"  # for code extraction: answers are whole responses, not prompt continuations

        def prompt_of(p: Problem) -> str:
            return fmt.render_prompt(tok, p.prompt)[0]
    else:
        mode = getattr(gen, "prompt_mode", "chat" if cfg.prompt_mode != "completion" else "completion")
        template = _template(cfg, mode)

        def prompt_of(p: Problem) -> str:
            return render_prompt(p, template)

    units: dict[str, dict] = {}  # gen_key -> {task_id, prompt, problem}
    for name, problems in benches.items():
        for p in problems:
            prompt = prompt_of(p)
            units.setdefault(_gen_key(p.id, prompt), {"task_id": p.id, "prompt": prompt, "problem": p})
    gen_path = out / "generations.jsonl"
    have: dict[str, list[dict]] = defaultdict(list)
    if gen_path.exists():
        for rec in read_jsonl(gen_path, resumable=True):
            have[rec["gen_key"]].append(rec)
    todo = [(k, u) for k, u in units.items() if len(have[k]) < cfg.n_samples]
    log_path = out / "generation_log.jsonl"
    n_tokens = 0
    gen_time = 0.0
    if todo:
        console.print(f"generating: {len(todo)} of {len(units)} prompts × {cfg.n_samples} sample(s) "
                      f"({mode} mode, {'greedy' if cfg.temperature == 0 else f'T={cfg.temperature}'})")
        from codistill.progress import Progress

        usage = getattr(gen, "usage", None)
        answered0 = usage.requests if usage is not None else 0

        def live() -> str:  # a server backend counts its answers as they come, inside a chunk too
            n = usage.requests - answered0 if usage is not None else 0
            return f"{n} answers from the server" if n else ""

        with JsonlAppender(gen_path) as app, JsonlAppender(log_path) as logapp, Progress(
            "generate", len(todo), unit="prompts", logger=_log(), bar=None if progress else False, echo=progress,
            describe=live,
        ) as bar:
            step = max(1, cfg.batch_size)
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                stops = []
                for _, u in chunk:
                    stops.extend(fmt.stop_strings() if fmt is not None else _stops(u["problem"], mode))
                params = SamplingParams(n=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                        max_new_tokens=cfg.max_new_tokens, stop=tuple(dict.fromkeys(stops)),
                                        seed=cfg.seed + start)
                tg = time.perf_counter()
                usage_before = gen.usage.completion_tokens if tok is None and hasattr(gen, "usage") else None
                outs = gen.generate([u["prompt"] for _, u in chunk], params)
                dt = time.perf_counter() - tg
                gen_time += dt
                chunk_tokens = 0
                if usage_before is not None:  # no local tokenizer: the server's own token count
                    chunk_tokens = gen.usage.completion_tokens - usage_before
                n_new = 0
                for (key, u), comps in zip(chunk, outs):
                    for i, text in enumerate(comps[len(have[key]):cfg.n_samples], start=len(have[key])):
                        ntok = len(tok(text, add_special_tokens=False)["input_ids"]) if tok is not None else None
                        chunk_tokens += ntok or 0
                        rec = {"gen_key": key, "task_id": u["task_id"], "sample_index": i, "completion_raw": text,
                               "n_tokens": ntok}
                        app.append(rec)
                        have[key].append(rec)
                        n_new += 1
                n_tokens += chunk_tokens
                # one line per chunk, written after its generations: generation speed summed over every
                # (resumed) call, not just the last one, which may have generated nothing
                logapp.append({"samples": n_new, "new_tokens": chunk_tokens, "seconds": round(dt, 3)})
                bar.advance(len(chunk), info=f"{n_tokens} tokens, {n_tokens / max(gen_time, 1e-9):.1f} tok/s")
    else:
        console.print("All samples are already generated. Skipping generation.")
    timings["generate_s"] = gen_time

    # judge ------------------------------------------------------------------------------
    from codistill.evaluation.extract import build_program

    jcfg = JudgeConfig(timeout_s=cfg.judge_timeout_s,
                       sandbox=SandboxConfig(**({"workers": cfg.workers} if cfg.workers else {})))
    results: dict = {"benchmarks": {}, "config": cfg.model_dump(), "versions": _versions(), "data_hashes": data_hashes,
                     "prompt_mode": mode if fmt is None else fmt.prompt_mode,
                     "protocol": {"name": fmt.name if fmt is not None else "standard",
                                  "format": fmt.model_dump() if fmt is not None else None,
                                  "description": fmt.describe() if fmt is not None else
                                  "standard zero-shot: EvalPlus instruction prompt, any answer layout",
                                  "check": check}}
    task_rows: list[dict] = []
    tj = time.perf_counter()
    with Judge(jcfg) as judge:
        for name, problems in benches.items():
            bdir = out / name.replace(":", "_")
            samples = []
            for p in problems:
                key = _gen_key(p.id, prompt_of(p))
                for rec in sorted(have[key], key=lambda r: r["sample_index"])[:cfg.n_samples]:
                    raw = rec["completion_raw"]
                    program = build_program(raw, p.code_prefix, p.entry_point, mode)
                    n_tok = rec.get("n_tokens")
                    samples.append({"task_id": p.id, "solution": program, "completion_raw": raw,
                                    "sample_index": rec["sample_index"], "n_tokens": n_tok,
                                    "hit_cap": None if n_tok is None else n_tok >= cfg.max_new_tokens - CAP_SLACK,
                                    "has_code": has_code(raw, p.entry_point, mode)})
            write_jsonl(bdir / "samples.jsonl", samples)
            byid = {p.id: p for p in problems}
            verdicts = judge.judge_samples(byid, samples, progress=progress, label=f"judge {name}", logger=_log())
            write_jsonl(bdir / "verdicts.jsonl", verdicts)
            label = EVAL_LABELS.get(name) or BENCHMARK_LABELS.get(name, name)
            summary = summarize(verdicts, label)
            summary.update(_structure_metrics(byid, verdicts))
            summary.update(answer_rates(samples))
            results["benchmarks"][name] = summary
            task_rows.extend(_task_rows(name, byid, verdicts))
    timings["judge_s"] = time.perf_counter() - tj

    # perplexity -------------------------------------------------------------------------
    # scoring needs the model's logits: a server backend hands over to transformers on the same
    # weights (the HF folder is the GGUF de-quantized), after its server is stopped
    scorer = gen if hasattr(gen, "score") and hasattr(gen, "tokenizer") else None  # a transformers backend
    if scorer is None and (cfg.perplexity or cfg.token_nll) and backend in ("llama-server", "llamacpp-server", "llamacpp"):
        gen.close()
        scorer = make_generator("hf", model=cfg.model, adapter=cfg.adapter, batch_size=cfg.batch_size,
                                prompt_mode=cfg.prompt_mode, dtype=cfg.dtype)
        results["scorer"] = {"backend": "hf", "dtype": cfg.dtype}
    if cfg.perplexity and scorer is not None:
        from codistill.evaluation.perplexity import question_completion_perplexity

        tp = time.perf_counter()
        mbpp = load_benchmark("mbpp:test", data_dir=cfg.data_dir, limit=cfg.limit)
        texts = [p.meta.get("text") or p.prompt for p in mbpp]
        ppl = question_completion_perplexity(scorer, texts, prefix=cfg.perplexity_prefix, batch_size=cfg.batch_size)
        for p, v in zip(mbpp, ppl):
            task_rows.append({"benchmark": "mbpp-questions", "task_id": p.id, "question_ppl": v})
        finite = sorted(v for v in ppl if v is not None and math.isfinite(v))
        results["question_perplexity"] = {
            "n": len(finite), "mean": sum(finite) / len(finite) if finite else None,
            "median": finite[len(finite) // 2] if finite else None, "prefix_fraction": cfg.perplexity_prefix,
        }
        timings["perplexity_s"] = time.perf_counter() - tp
    if cfg.token_nll and cfg.temperature == 0 and scorer is not None and hasattr(scorer, "score"):
        tn = time.perf_counter()
        _token_nll(scorer, units, have, out / "token_nll.jsonl", cfg.batch_size)
        timings["token_nll_s"] = time.perf_counter() - tn

    write_jsonl(out / "tasks.jsonl", task_rows)
    results["generation"] = _generation_totals(log_path, sum(len(v) for v in have.values()))
    results["generation"]["this_call"] = {"new_tokens": n_tokens, "seconds": round(gen_time, 2),
                                          "usage": gen.usage.as_dict() if hasattr(gen, "usage") else None}
    results["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    atomic_write_json(out / "results.json", results)
    gen.close()
    if scorer is not None and scorer is not gen:
        scorer.close()
    return results


CAP_SLACK = 2  # a completion re-tokenised may count a token or two off what the model generated


def resolve_protocol(cfg: EvalConfig):
    """(the student format or None for the standard protocol, the adapter check record); raises
    codistill.formats.ProtocolError when the adapter was trained in another format or to write
    more tokens than ``max_new_tokens`` (unless the matching override is set)."""
    from codistill.formats import FORMAT_FILE, ProtocolError, StudentFormat, check_adapter, get_format

    if cfg.format in (None, "standard"):
        fmt = None
    elif cfg.format == "adapter":
        path = Path(cfg.adapter or "") / FORMAT_FILE
        if not cfg.adapter or not path.is_file():
            raise ProtocolError(f"format 'adapter' needs an adapter with {FORMAT_FILE} (written by codistill train); "
                                f"{'no adapter given' if not cfg.adapter else f'{path} does not exist'}")
        fmt = StudentFormat.model_validate(json.loads(path.read_text())["format"])
    else:
        fmt = get_format(cfg.format)
    check = check_adapter(cfg.adapter, fmt, cfg.max_new_tokens, cfg.budget_margin,
                          allow_format_mismatch=cfg.allow_format_mismatch, allow_short_budget=cfg.allow_short_budget)
    return fmt, check


def _student_tokenizer(cfg: EvalConfig):
    """The model's tokenizer (for counting answer tokens and rendering a format's prompts), or
    None when there is none to load (a remote model)."""
    try:
        from transformers import AutoTokenizer

        from codistill.models import resolve_model

        return AutoTokenizer.from_pretrained(str(resolve_model(cfg.model, dtype=cfg.dtype)))
    except Exception as e:  # noqa: BLE001 - counting is optional for a model with no local files
        _log().warning("no tokenizer for %s (%s): cap-hit rates are not measured", cfg.model, e)
        return None


def has_code(answer: str, entry_point: str | None, mode: str) -> bool:
    """Whether an answer holds code the judge can run: code that defines the entry point, or (no
    entry point) a non-empty program that parses."""
    from codistill.evaluation.extract import _defines, _parses, extract_code

    if mode == "completion" and not answer.lstrip().startswith("```"):
        return bool(answer.strip())
    code = extract_code(answer, entry_point)
    if entry_point:
        return _defines(code, entry_point)
    return bool(code.strip()) and _parses(code)


def answer_rates(samples: list[dict]) -> dict:
    """Share of answers that hit the token cap and share with no extractable code."""
    n = len(samples)
    counted = [s["hit_cap"] for s in samples if s.get("hit_cap") is not None]
    return {"cap_hit_rate": (sum(counted) / len(counted)) if counted else None,
            "no_code_rate": (sum(not s.get("has_code", True) for s in samples) / n) if n else None,
            "answers": n}


def _generation_totals(log_path: Path, samples: int) -> dict:
    """Tokens and seconds over every call that generated into this run (``generation_log.jsonl``).

    ``samples_timed`` < ``samples`` when some generations predate the log (or came from a call
    killed between writing its generations and its log line): the speed is then over those timed.
    """
    lines = list(read_jsonl(log_path, resumable=True)) if log_path.exists() else []
    tok = sum(r.get("new_tokens") or 0 for r in lines)
    sec = sum(r.get("seconds") or 0.0 for r in lines)
    return {"new_tokens": tok, "seconds": round(sec, 2), "tokens_per_s": round(tok / sec, 2) if sec else None,
            "samples_timed": sum(r.get("samples") or 0 for r in lines), "samples": samples}


def _stops(problem: Problem, mode: str) -> list[str]:
    if mode != "completion":
        return []
    return STOPS_COMPLETION_CODE if problem.code_prefix else STOPS_COMPLETION_DOC


def _structure_metrics(problems: dict[str, Problem], verdicts: list[dict]) -> dict:
    """Average CodeBLEU syntax / dataflow match of each task's first sample vs its reference."""
    from codistill.metrics.codebleu import pair_syntax_dataflow

    syn, dfl = [], []
    for v in verdicts:
        if v.get("sample_index", 0) != 0:
            continue
        ref = problems[v["task_id"]].solutions[0] if problems[v["task_id"]].solutions else None
        if not ref:
            continue
        m = pair_syntax_dataflow(ref, v["solution"])
        v["syntax_match"], v["dataflow_match"] = m["syntax_match"], m["dataflow_match"]
        syn.append(m["syntax_match"])
        if m["dataflow_match"] is not None:
            dfl.append(m["dataflow_match"])
    return {"syntax_match": sum(syn) / len(syn) if syn else None,
            "dataflow_match": sum(dfl) / len(dfl) if dfl else None,
            "n_dataflow_tasks": len(dfl)}


def _task_rows(name: str, problems: dict[str, Problem], verdicts: list[dict]) -> list[dict]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for v in verdicts:
        by_task[v["task_id"]].append(v)
    rows = []
    for tid, vs in by_task.items():
        first = min(vs, key=lambda v: v.get("sample_index", 0))
        rows.append({
            "benchmark": name, "task_id": tid, "program": first["solution"], "passed": first["passed"],
            "status": first["status"], "failure": first.get("failure"), "n": len(vs), "c": sum(v["passed"] for v in vs),
            "pass@1": sum(v["passed"] for v in vs) / len(vs),
            "syntax_match": first.get("syntax_match"), "dataflow_match": first.get("dataflow_match"),
        })
    return rows


def _token_nll(gen, units: dict, have: dict, path: Path, batch_size: int) -> None:
    done = {r["gen_key"] for r in read_jsonl(path, resumable=True)} if path.exists() else set()
    todo = [(k, u) for k, u in units.items() if k not in done and have.get(k)]
    with JsonlAppender(path) as app:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            comps = [min(have[k], key=lambda r: r["sample_index"])["completion_raw"] for k, _ in chunk]
            scores = gen.score([u["prompt"] for _, u in chunk], comps)
            for (k, u), lp in zip(chunk, scores):
                app.append({"gen_key": k, "task_id": u["task_id"], "nll": [round(-x, 4) for x in lp]})
