"""``codistill eval``: generate → judge → score, resumable, in one run directory.

The steps, each in its own module:

* the protocol (:mod:`.prompts`): the prompt each problem gets, where generation stops, how the
  answer is read — the standard zero-shot protocol or a student format — checked against the
  adapter before anything is loaded (:func:`codistill.formats.check_adapter`);
* generation (:mod:`.generate`) through an inference strategy (:mod:`.strategies`: ``direct``);
* judging (:mod:`.judging`) in the sandbox, with CodeBLEU structure metrics and answer rates;
* scoring (:mod:`.score`): question-completion perplexity and per-token NLL.

Run directory layout::

    RUN_DIR/config.json          resolved EvalConfig
    RUN_DIR/generations.jsonl    one line per generated sample (append-only; resume counts it)
    RUN_DIR/generations.superseded.jsonl  answers an earlier stop rule cut short, set aside and
                                 asked again (:mod:`.restop`)
    RUN_DIR/generation_log.jsonl one line per generation batch: samples, tokens, seconds, each
                                 model's usage (summed over every call in results.json generation)
    RUN_DIR/<bench>/samples.jsonl   EvalPlus format: task_id, solution (+ completion_raw, ...)
    RUN_DIR/<bench>/verdicts.jsonl  judge output (every sample field + passed, status, ...)
    RUN_DIR/tasks.jsonl          per task and benchmark: program, verdict, n, c, pass@1,
                                 syntax/dataflow match, question-completion perplexity
    RUN_DIR/token_nll.jsonl      per-token negative log-likelihood along greedy solutions
    RUN_DIR/results.json         all metrics, config, protocol, versions, data hashes, timings

Prompts that are the same for two benchmarks (HumanEval and HumanEval+) are generated once.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from codistill.evaluation.config import (  # noqa: F401 - the public names of this module
    _SET_BY_EVAL,
    BENCHMARK_ALIASES,
    DEFAULT_BENCHMARKS,
    EVAL_LABELS,
    PACKAGED_TEMPLATE_SETS,
    EvalConfig,
)
from codistill.evaluation.generate import LOGGER, gen_key, generate_missing, generation_totals, load_generations, make_units
from codistill.evaluation.judging import CAP_SLACK, answer_rates, has_code, judge_all  # noqa: F401
from codistill.evaluation.prompts import Protocol, _template, render_prompt, resolve_protocol  # noqa: F401
from codistill.evaluation.restop import superseded_count, supersede_stale
from codistill.formats import STOP_RULE
from codistill.store import atomic_write_json, sha256_json, write_jsonl


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


def make_backend(cfg: EvalConfig, protocol: Protocol):
    """The generator, given exactly the settings eval owns for its kind (``_SET_BY_EVAL``)."""
    from codistill.backends import backend_kind, make_generator

    kind = backend_kind(cfg.backend)
    owned = {"model": cfg.model, "adapter": cfg.adapter, "batch_size": cfg.batch_size,
             "prompt_mode": protocol.backend_mode, "dtype": cfg.dtype}
    kwargs = {k: owned[k] for k in _SET_BY_EVAL.get(kind, ("model",))}
    options = dict(cfg.backend_options)
    if protocol.fmt is not None:  # a format's prompts are rendered here: raw completion prompts
        options.pop("prompt_mode", None)
        kwargs["prompt_mode"] = "completion"
    return make_generator(cfg.backend, **kwargs, **options)


def load_tokenizer(model: str, dtype: str = "float32"):
    """A model's tokenizer (for counting answer tokens and rendering a format's prompts), or None
    when there is none to load (a remote model)."""
    try:
        from transformers import AutoTokenizer

        from codistill.models import tokenizer_path

        return AutoTokenizer.from_pretrained(str(tokenizer_path(model)))  # never converts a GGUF model's weights
    except Exception as e:  # noqa: BLE001 - counting is optional for a model with no local files
        logging.getLogger(LOGGER).warning("no tokenizer for %s (%s): cap-hit rates are not measured", model, e)
        return None


def _run_eval(cfg: EvalConfig, out_dir: str | Path, progress: bool) -> dict:
    from rich.console import Console

    from codistill.evaluation.score import score_all, scorer_for
    from codistill.evaluation.strategies import make_strategy
    from codistill.problems.loaders import load_benchmark

    console = Console(emoji=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol = Protocol.from_config(cfg)  # raises before anything is loaded
    cfg_path = out / "config.json"
    if cfg_path.exists():
        changed = cfg.changed_generation_settings(json.loads(cfg_path.read_text()))
        if changed:
            raise ValueError(f"{out} holds a run with different settings ({', '.join(changed)}); "
                             "use another --out directory or delete it to start over")
    atomic_write_json(cfg_path, cfg.model_dump())
    timings: dict[str, float] = {}

    benches: dict[str, list] = {}
    data_hashes = {}
    for name in cfg.benchmarks:
        problems = load_benchmark(BENCHMARK_ALIASES.get(name, name), data_dir=cfg.data_dir, limit=cfg.limit)
        benches[name] = problems
        data_hashes[name] = sha256_json([p.model_dump(exclude={"meta"}) for p in problems])

    # generate ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    gen = make_backend(cfg, protocol)
    timings["load_model_s"] = time.perf_counter() - t0
    tok = gen.tokenizer if gen.capabilities.tokenizer else load_tokenizer(cfg.model, cfg.dtype)
    protocol.bind(cfg, gen, tok)
    strategy = make_strategy(cfg.strategy, generator=gen, cfg=cfg, protocol=protocol, tokenizer=tok)
    units = make_units(benches, protocol)
    have = load_generations(out)
    restopped = supersede_stale(out, have, protocol, cfg, console)  # answers an earlier stop rule cut short
    mode_label = f"{protocol.mode} mode" if protocol.fmt is None else f"format {protocol.fmt.name}"
    marks = {"stop_rule": STOP_RULE} if protocol.fmt is not None else None
    this_call = generate_missing(cfg, strategy, units, have, out, tok, console, progress, mode_label, marks)
    timings["generate_s"] = this_call["seconds"]

    # judge ------------------------------------------------------------------------------
    results: dict = {"benchmarks": {}, "config": cfg.model_dump(), "versions": _versions(), "data_hashes": data_hashes,
                     "prompt_mode": protocol.prompt_mode, "protocol": protocol.record()}
    tj = time.perf_counter()
    results["benchmarks"], task_rows = judge_all(cfg, benches, lambda p: gen_key(p.id, protocol.prompt(p)), have,
                                                 protocol, out, progress)
    timings["judge_s"] = time.perf_counter() - tj

    # score ------------------------------------------------------------------------------
    scorer = scorer_for(cfg, gen, results, protocol.backend_mode)
    score_all(cfg, scorer, units, have, out, results, task_rows, timings)

    write_jsonl(out / "tasks.jsonl", task_rows)
    results["generation"] = generation_totals(out, sum(len(v) for v in have.values()))
    usage = strategy.usage
    results["generation"]["this_call"] = {"new_tokens": this_call["new_tokens"], "seconds": round(this_call["seconds"], 2),
                                          "usage": usage.as_dict() if usage is not None else None}
    if hasattr(strategy, "record"):
        results["pipeline"] = strategy.record(results["generation"])
    if protocol.fmt is not None:  # the stop rule, and the answers an earlier rule cut short that were asked again
        results["stop_rule"] = {"rule": STOP_RULE, "stops": protocol.fmt.stop_strings(),
                                "superseded": superseded_count(out), "superseded_this_call": restopped}
    results["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    atomic_write_json(out / "results.json", results)
    strategy.close()
    gen.close()
    if scorer is not None and scorer is not gen:
        scorer.close()
    return results
