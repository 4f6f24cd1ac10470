"""Step 3 of an eval: what needs the model's logits — question-completion perplexity on the MBPP
test questions, and per-token negative log-likelihood along greedy solutions (paper Fig. 2).

A backend that cannot score (a llama.cpp server) hands over to transformers on the same weights
(the HF folder is the GGUF de-quantized), after its server is stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from codistill.evaluation.config import EvalConfig
from codistill.store import JsonlAppender, read_jsonl


def scorer_for(cfg: EvalConfig, gen, results: dict, prompt_mode: str = "auto"):
    """The generator to score with (``gen`` itself when it can), or None when nothing is asked.
    ``prompt_mode``: the one the prompts were made for (a format's prompts are already rendered)."""
    from codistill.backends import make_generator

    if not (cfg.perplexity or cfg.token_nll):
        return None
    if gen.capabilities.score:
        return gen
    if not gen.capabilities.local_weights:
        return None  # a remote server: no logits here
    gen.close()
    results["scorer"] = {"backend": "hf", "dtype": cfg.dtype}
    return make_generator("hf", model=cfg.model, adapter=cfg.adapter, batch_size=cfg.batch_size,
                          prompt_mode=prompt_mode, dtype=cfg.dtype)


def score_all(cfg: EvalConfig, scorer, units: dict, have: dict, out: Path, results: dict, task_rows: list,
              timings: dict) -> None:
    from codistill.problems.loaders import load_benchmark

    if scorer is None:
        return
    if cfg.perplexity:
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
    if cfg.token_nll and cfg.temperature == 0:
        tn = time.perf_counter()
        _token_nll(scorer, units, have, out / "token_nll.jsonl", cfg.batch_size)
        timings["token_nll_s"] = time.perf_counter() - tn


def _token_nll(gen, units: dict, have: dict, path: Path, batch_size: int) -> None:
    done = {r["gen_key"] for r in read_jsonl(path, resumable=True)} if path.exists() else set()
    todo = [(k, u) for k, u in units.items() if k not in done and have.get(k)]
    with JsonlAppender(path) as app:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            comps = [min(have[k], key=lambda r: r["sample_index"])["completion_raw"] for k, _ in chunk]
            scores = gen.score([u.prompt for _, u in chunk], comps)
            for (k, u), lp in zip(chunk, scores):
                app.append({"gen_key": k, "task_id": u.task_id, "nll": [round(-x, 4) for x in lp]})
