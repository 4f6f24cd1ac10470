"""Teacher throughput: concurrency 1 vs 8 against a local llama.cpp server, then a warm cache.

No arguments. Uses the local llama.cpp server on the packaged teacher (qwen2.5-coder-1.5b): the
one at ``http://127.0.0.1:8731`` (``codistill serve-teacher``'s default) when it is healthy and
has at least 8 parallel slots, else it starts one (xllamacpp, 8 slots) on a free port and stops it
at the end. The same 16 explain-mode prompts (the first 16 MBPP train problems with their
reference solutions; 48 new tokens each, greedy) go through ``teach`` three times:

1. concurrency 1 (cold cache),
2. concurrency 8 (its own cold cache),
3. concurrency 8 again with run 2's cache: must make zero teacher calls.

llama.cpp's prompt cache is switched off per request (``cache_prompt: false``) so that run 2 does
not reuse prompt prefixes left in the slots by run 1. Timings are wall-clock on a shared machine;
the load average is recorded. Ends with one line of JSON (``ratio_concurrency`` = wall time at
concurrency 1 / wall time at concurrency 8).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

N_PROMPTS = 16
MAX_NEW_TOKENS = 48
DEFAULT_URL = "http://127.0.0.1:8731"


def _slots(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/props", timeout=5) as r:
            return int(json.load(r).get("total_slots") or 0)
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return 0


def main() -> dict:
    logging.basicConfig(level=logging.WARNING)
    from codistill.serving import is_healthy, start_server
    from codistill.teacher.teach import TeachConfig, teach

    server = None
    if is_healthy(DEFAULT_URL) and _slots(DEFAULT_URL) >= 8:
        base = DEFAULT_URL
        server_info = {"reused": True, "slots": _slots(DEFAULT_URL)}
    else:
        server = start_server(n_parallel=8, ctx=2048)
        base = server.base_url.removesuffix("/v1")
        server_info = {"reused": False, **server.info()}
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="teacher-bench-"))
    results = {}
    try:
        def run(name: str, concurrency: int, cache: str) -> dict:
            cfg = TeachConfig(
                out_dir=str(work / name), benchmark="mbpp:train", limit=N_PROMPTS, mode="explain",
                teacher={"base_url": base + "/v1", "concurrency": concurrency, "timeout_s": 1800,
                         "extra_body": {"cache_prompt": False}},
                sampling={"max_new_tokens": MAX_NEW_TOKENS}, max_attempts=1, leakage_threshold=None,
                validation={"required": []}, cache_dir=str(work / cache), progress_every=100,
            )
            t0 = time.perf_counter()
            m = teach(cfg)
            wall = time.perf_counter() - t0
            r = m["this_run"]
            out = {"wall_s": round(wall, 1), "teacher_calls": r["teacher_calls"], "cache_hits": r["cache_hits"],
                   "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
                   "completion_tokens_per_s": round(r["completion_tokens"] / wall, 2),
                   "total_tokens_per_s": round((r["prompt_tokens"] + r["completion_tokens"]) / wall, 2),
                   "contexts_per_min": round(60 * r["new_contexts"] / wall, 2)}
            print(json.dumps({name: out}), flush=True)
            return out

        results["c1"] = run("c1", 1, "cache-c1")
        results["c8"] = run("c8", 8, "cache-c8")
        results["warm"] = run("warm", 8, "cache-c8")
    finally:
        if server is not None:
            server.stop()
    out = {
        "benchmark": "teacher_throughput",
        "model": "qwen2.5-coder-1.5b (Q4_K_M GGUF, llama.cpp via xllamacpp)",
        "prompts": N_PROMPTS, "max_new_tokens": MAX_NEW_TOKENS,
        "ratio_concurrency": round(results["c1"]["wall_s"] / results["c8"]["wall_s"], 3),
        "wall_s_c1": results["c1"]["wall_s"], "wall_s_c8": results["c8"]["wall_s"],
        "completion_tokens_per_s_c1": results["c1"]["completion_tokens_per_s"],
        "completion_tokens_per_s_c8": results["c8"]["completion_tokens_per_s"],
        "total_tokens_per_s_c1": results["c1"]["total_tokens_per_s"],
        "total_tokens_per_s_c8": results["c8"]["total_tokens_per_s"],
        "contexts_per_min_c1": results["c1"]["contexts_per_min"],
        "contexts_per_min_c8": results["c8"]["contexts_per_min"],
        "warm_cache_teacher_calls": results["warm"]["teacher_calls"],
        "warm_cache_hits": results["warm"]["cache_hits"],
        "warm_cache_wall_s": results["warm"]["wall_s"],
        "server": server_info,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
