"""Step 1 of an eval: answers for every unit, appended to ``generations.jsonl`` as they come.

Resumable: a unit that already has ``n_samples`` answers is not asked again. A server strategy
(:attr:`InferenceStrategy.concurrent`) is asked one unit at a time, ``2 x batch_size`` units in
flight, and each answer is written the moment it is complete: an interrupted call loses only the
answers still being generated, and no server slot idles while a batch's slowest answer finishes.
Seeds are those of batched generation (``seed + start`` of the unit's batch of ``batch_size``), so a
unit gets the same request either way. An in-process strategy answers whole batches (its speed
comes from batching) and an interrupted call loses the batch in flight. ``generation_log.jsonl``
gets one line per write (samples, new tokens, seconds, and each model's token usage since the
previous write: ``usage`` for the answering model, ``reasoner_usage`` for a pipeline's Reasoner --
:meth:`InferenceStrategy.usages`), written after its answers, so speed and usage are summed over
every call that generated into the run: after an interrupted and resumed eval the totals are those
of the answers kept (an answer lost to the interruption is asked again and counted once, when it
is written).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from codistill.evaluation.config import EvalConfig
from codistill.evaluation.strategies.base import InferenceStrategy, Unit
from codistill.store import JsonlAppender, read_jsonl

LOGGER = "codistill.evaluation.run"  # progress lines keep the name users filter on


def gen_key(task_id: str, prompt: str) -> str:
    return hashlib.sha256(f"{task_id}\0{prompt}".encode()).hexdigest()[:20]


def make_units(benches: dict[str, list], protocol) -> dict[str, Unit]:
    """One unit per distinct (task id, prompt) over all benchmarks."""
    units: dict[str, Unit] = {}
    for problems in benches.values():
        for p in problems:
            prompt = protocol.prompt(p)
            key = gen_key(p.id, prompt)
            if key not in units:
                units[key] = Unit(key=key, task_id=p.id, prompt=prompt, problem=p, stops=tuple(protocol.stops(p)))
    return units


def load_generations(out: Path) -> dict[str, list[dict]]:
    have: dict[str, list[dict]] = defaultdict(list)
    path = out / "generations.jsonl"
    if path.exists():
        for rec in read_jsonl(path, resumable=True):
            have[rec["gen_key"]].append(rec)
    return have


def generate_missing(cfg: EvalConfig, strategy: InferenceStrategy, units: dict[str, Unit],
                     have: dict[str, list[dict]], out: Path, tokenizer: Any, console, progress: bool,
                     mode_label: str, marks: dict | None = None) -> dict:
    """Ask ``strategy`` for every missing answer; returns ``{"new_tokens", "seconds"}`` of this call.
    ``marks``: fields written on every new row (a format eval's ``stop_rule``)."""
    from codistill.backends import SamplingParams

    todo = [u for k, u in units.items() if len(have[k]) < cfg.n_samples]
    n_tokens = 0
    gen_time = 0.0
    if not todo:
        console.print("All samples are already generated. Skipping generation.")
        return {"new_tokens": 0, "seconds": 0.0}
    console.print(f"generating: {len(todo)} of {len(units)} prompts × {cfg.n_samples} sample(s) "
                  f"({mode_label}, {'greedy' if cfg.temperature == 0 else f'T={cfg.temperature}'}, "
                  f"strategy {strategy.name})")
    from codistill.progress import PROGRESS_FILE, Progress

    usage = strategy.usage
    answered0 = usage.requests if usage is not None else 0

    def live() -> str:  # a server backend counts its answers as they come, inside a batch too
        n = usage.requests - answered0 if usage is not None else 0
        return f"{n} answers from the server" if n else ""

    models = {k: u for k, u in strategy.usages().items() if u is not None}

    # Work items: (start of the batch, its units). A server strategy gets one item per unit (the
    # batch's seed), 2 x batch_size in flight, each written as soon as it is answered; an in-process
    # one gets whole batches, one at a time. Usage and seconds: what the models spent between writes.
    concurrent = bool(getattr(strategy, "concurrent", False))
    step = max(1, cfg.batch_size)
    items = [(start, todo[start:start + step]) for start in range(0, len(todo), step)]
    if concurrent:
        items = [(start, [u]) for start, chunk in items for u in chunk]
    window = 2 * step if concurrent else 1
    order = {id(chunk[0]): i for i, (_, chunk) in enumerate(items)}
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="codistill-batch")
    pending: dict = {}  # future -> its units

    def submit() -> None:
        if items:
            start, chunk = items.pop(0)
            params = SamplingParams(n=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + start,
                                    stop_on_loop=cfg.stop_on_loop)
            pending[pool.submit(strategy.answer, chunk, params)] = chunk

    try:
        with JsonlAppender(out / "generations.jsonl") as app, JsonlAppender(out / "generation_log.jsonl") as logapp, \
                Progress("generate", len(units), unit="prompts", done=len(units) - len(todo),
                         logger=logging.getLogger(LOGGER), bar=None if progress else False, echo=progress,
                         describe=live, state=out / PROGRESS_FILE) as bar:
            tg = time.perf_counter()
            usage_before = usage.completion_tokens if tokenizer is None and usage is not None else None
            spent_before = {k: u.as_dict() for k, u in models.items()}
            for _ in range(window):
                submit()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                fut = min(done, key=lambda f: order[id(pending[f][0])])  # several at once: the earliest first
                chunk = pending.pop(fut)
                outs = fut.result()
                submit()
                now = time.perf_counter()
                dt, tg = now - tg, now
                spent_now = {k: u.as_dict() for k, u in models.items()}
                spent = {k: _minus(spent_now[k], spent_before[k]) for k in models}
                spent_before = spent_now
                gen_time += dt
                chunk_tokens = 0
                if usage_before is not None:  # no local tokenizer: the server's own token count
                    chunk_tokens, usage_before = usage.completion_tokens - usage_before, usage.completion_tokens
                n_new = 0
                for u, answers in zip(chunk, outs):
                    for i, ans in enumerate(answers[len(have[u.key]):cfg.n_samples], start=len(have[u.key])):
                        text = ans["completion_raw"]
                        if "n_tokens" in ans:  # the strategy counted what the model wrote (a prefilled answer)
                            ntok = ans["n_tokens"]
                        else:
                            ntok = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else None
                        chunk_tokens += ntok or 0
                        rec = {"gen_key": u.key, "task_id": u.task_id, "sample_index": i, "completion_raw": text,
                               **{k: v for k, v in ans.items() if k != "completion_raw"}, "n_tokens": ntok, **(marks or {})}
                        app.append(rec)
                        have[u.key].append(rec)
                        n_new += 1
                n_tokens += chunk_tokens
                # one line per batch, written after its generations: generation speed summed over every
                # (resumed) call, not just the last one, which may have generated nothing
                logapp.append({"samples": n_new, "new_tokens": chunk_tokens, "seconds": round(dt, 3), **spent})
                bar.advance(len(chunk), info=f"{n_tokens} tokens, {n_tokens / max(gen_time, 1e-9):.1f} tok/s")
    finally:  # an error or ^C: what is in flight is dropped (asked again on resume)
        items.clear()
        pool.shutdown(wait=False, cancel_futures=True)
    return {"new_tokens": n_tokens, "seconds": gen_time}


def _minus(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def generation_totals(out: Path, samples: int) -> dict:
    """Tokens, seconds and model usage over every call that generated into this run
    (``generation_log.jsonl``).

    ``samples_timed`` < ``samples`` when some generations predate the log (or came from a call
    killed between writing its generations and its log line): the speed is then over those timed.
    ``usage`` (the answering model) and ``reasoner_usage`` (a pipeline's Reasoner, when it has
    one) are summed over the batches whose line records them; ``samples_priced`` counts those
    batches' samples, so ``samples_priced`` < ``samples`` means the usage is a lower bound (batches
    logged before per-batch usage was recorded, or a call killed between the two writes).
    """
    log_path = out / "generation_log.jsonl"
    lines = list(read_jsonl(log_path, resumable=True)) if log_path.exists() else []
    tok = sum(r.get("new_tokens") or 0 for r in lines)
    sec = sum(r.get("seconds") or 0.0 for r in lines)
    out_d = {"new_tokens": tok, "seconds": round(sec, 2), "tokens_per_s": round(tok / sec, 2) if sec else None,
             "samples_timed": sum(r.get("samples") or 0 for r in lines), "samples": samples}
    priced = [r for r in lines if isinstance(r.get("usage"), dict)]
    if priced:
        out_d["samples_priced"] = sum(r.get("samples") or 0 for r in priced)
        for key in ("usage", "reasoner_usage"):
            parts = [r[key] for r in priced if isinstance(r.get(key), dict)]
            if parts:
                fields = dict.fromkeys(k for p in parts for k in p)
                out_d[key] = {f: sum(int(p.get(f) or 0) for p in parts) for f in fields}
    return out_d
