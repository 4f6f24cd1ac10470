"""Generation batches overlap for a server strategy (two in flight; the next is asked as soon as
either is done, filling the slots a batch's slowest answer leaves idle): the same answers with
the same seeds, usage summed exactly; an in-process backend never overlaps; an error loses only
the batches in flight."""

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
    assert seq.most_in_flight == 1 and par.most_in_flight == 2
    # the same records (batches written as they finish: the fast ones before the slow first one),
    # each batch with the seed of its start
    assert [g["task_id"] for g in gens_s] == list(_units())
    assert sorted(gens_p, key=lambda g: g["task_id"]) == sorted(gens_s, key=lambda g: g["task_id"])
    assert [g["task_id"] for g in gens_p][:2] == ["t2", "t3"]
    assert sorted(par.seeds) == sorted(seq.seeds) == [7, 9, 11, 13]
    # usage per batch sums to what the server counted; one log line per batch
    assert len(log_p) == len(log_s) == 4
    for log, server in ((log_s, seq), (log_p, par)):
        assert sum(x["usage"]["completion_tokens"] for x in log) == server.usage.completion_tokens == 24
        assert sum(x["usage"]["requests"] for x in log) == 8 and sum(x["samples"] for x in log) == 8
    # batches 1..3 ran while batch 0's slow answer was pending: the call takes about batch 0's time
    assert res_s["seconds"] >= 0.75 and res_p["seconds"] < 0.7


def test_an_error_loses_only_the_batches_in_flight(tmp_path):
    server = SlowServer(concurrent=True, fail_on="t4")
    with pytest.raises(RuntimeError, match="server refused t4"):
        _run(tmp_path, server, "err")
    gens = [json.loads(x) for x in (tmp_path / "err" / "generations.jsonl").read_text().splitlines()]
    # batch 1 (t2, t3) was written before batch 2 (t4, t5) failed; batch 0 (slow) was in flight
    # beside it and is lost with it (asked again on resume), batch 3 was never asked
    assert [g["task_id"] for g in gens] == ["t2", "t3"]
