"""A server strategy is asked one unit at a time, 2 x batch_size in flight, each answer written as
soon as it is complete (no slot idles on a batch's slowest answer, an interruption loses only
what is being generated): the same answers with the seeds of batched generation, usage summed
exactly; an in-process backend answers whole batches, one at a time."""

from __future__ import annotations

import json
import threading
import time

import pytest
from rich.console import Console

from codistill.backends.base import Capabilities, Generator, Usage
from codistill.evaluation.config import EvalConfig
from codistill.evaluation.generate import generate_missing
from codistill.evaluation.strategies.base import Unit
from codistill.evaluation.strategies.direct import DirectStrategy


class SlowServer(Generator):
    """Answers each prompt after a delay it reads from the prompt; counts calls in flight."""

    def __init__(self, concurrent: bool, fail_on: str | None = None):
        super().__init__()
        self.capabilities = Capabilities(concurrent=concurrent)
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.seeds: list[int] = []

    def generate(self, prompts, params=None):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.seeds.append(params.seed)
        try:
            time.sleep(max(float(p.split(":")[1]) for p in prompts))
            if self.fail_on and any(p.startswith(self.fail_on + ":") for p in prompts):
                raise RuntimeError(f"server refused {self.fail_on}")
            self.usage.add(prompt_tokens=10 * len(prompts), completion_tokens=3 * len(prompts), requests=len(prompts))
            return [[f"answer to {p.split(':')[0]}"] for p in prompts]
        finally:
            with self.lock:
                self.in_flight -= 1


# batch 0 has one slow answer: with overlap, batch 1 is answered meanwhile
DELAYS = [0.6, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]


def _units():
    return {f"t{i}": Unit(key=f"t{i}", task_id=f"t{i}", prompt=f"t{i}:{d}", problem=None)
            for i, d in enumerate(DELAYS)}


def _run(tmp_path, server, name):
    out = tmp_path / name
    out.mkdir()
    cfg = EvalConfig(model="fake", batch_size=2, seed=7)
    units = _units()
    have = {k: [] for k in units}
    res = generate_missing(cfg, DirectStrategy(server), units, have, out, None, Console(quiet=True), False, "test")
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    log = [json.loads(x) for x in (out / "generation_log.jsonl").read_text().splitlines()]
    return res, gens, log


def test_a_server_strategy_overlaps_batches_with_the_same_answers_and_usage(tmp_path):
    seq, par = SlowServer(concurrent=False), SlowServer(concurrent=True)
    res_s, gens_s, log_s = _run(tmp_path, seq, "seq")
    res_p, gens_p, log_p = _run(tmp_path, par, "par")
    assert seq.most_in_flight == 1 and par.most_in_flight == 4  # 2 x batch_size units
    # the same records (answers written as they finish: the fast ones before the slow first one),
    # each unit with the seed of its batch's start
    assert [g["task_id"] for g in gens_s] == list(_units())
    assert sorted(gens_p, key=lambda g: g["task_id"]) == sorted(gens_s, key=lambda g: g["task_id"])
    assert [g["task_id"] for g in gens_p][0] == "t1" and [g["task_id"] for g in gens_p][-1] == "t0"
    assert sorted(seq.seeds) == [7, 9, 11, 13]
    assert sorted(par.seeds) == [7, 7, 9, 9, 11, 11, 13, 13]
    # usage per write sums to what the server counted; one log line per batch (in-process), per unit (server)
    assert len(log_s) == 4 and len(log_p) == 8
    for log, server in ((log_s, seq), (log_p, par)):
        assert sum(x["usage"]["completion_tokens"] for x in log) == server.usage.completion_tokens == 24
        assert sum(x["usage"]["requests"] for x in log) == 8 and sum(x["samples"] for x in log) == 8
    # batches 1..3 ran while batch 0's slow answer was pending: the call takes about batch 0's time
    assert res_s["seconds"] >= 0.75 and res_p["seconds"] < 0.7


def test_an_error_loses_only_the_answers_in_flight(tmp_path):
    server = SlowServer(concurrent=True, fail_on="t4")
    with pytest.raises(RuntimeError, match="server refused t4"):
        _run(tmp_path, server, "err")
    gens = [json.loads(x) for x in (tmp_path / "err" / "generations.jsonl").read_text().splitlines()]
    got = [g["task_id"] for g in gens]
    # t1..t3 were answered while t0 (slow) was in flight, and written at once; t4 failed after them
    # (asked once t1 was done); t0 was still in flight and is lost with the error (asked again on resume)
    assert got[:3] == ["t1", "t2", "t3"]
    assert "t0" not in got and "t4" not in got


def test_an_answer_is_written_before_the_slow_one_beside_it_ends(tmp_path):
    """What an interruption would lose: only the unit still generating. The slow answer (same
    batch) is held until the file holds every fast answer; without per-answer writes it never would."""
    gate = threading.Event()

    class Gated(SlowServer):
        def generate(self, prompts, params=None):
            if any(p.startswith("slow:") for p in prompts):
                gate.wait(timeout=60)
            return super().generate(prompts, params)

    out = tmp_path / "live"
    out.mkdir()
    cfg = EvalConfig(model="fake", batch_size=8, seed=7)
    units = {"slow": Unit(key="slow", task_id="slow", prompt="slow:0", problem=None),
             **{f"f{i}": Unit(key=f"f{i}", task_id=f"f{i}", prompt=f"f{i}:0", problem=None) for i in range(3)}}
    seen: list[str] = []

    def watch():
        path = out / "generations.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 3:
            seen[:] = [json.loads(x)["task_id"] for x in path.read_text().splitlines()] if path.exists() else []
            time.sleep(0.01)
        gate.set()

    t = threading.Thread(target=watch)
    t.start()
    generate_missing(cfg, DirectStrategy(Gated(concurrent=True)), units, {k: [] for k in units}, out, None,
                     Console(quiet=True), False, "test")
    t.join()
    assert sorted(seen) == ["f0", "f1", "f2"]  # written while "slow" was held
    assert len((out / "generations.jsonl").read_text().splitlines()) == 4
