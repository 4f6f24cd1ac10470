"""Evaluation metrics: pass@k, CodeBLEU's structural components, paired statistics, and the
leakage score (how much of a reference program a text contains).

Importing this package is cheap on purpose: nothing heavy (numpy, codebleu, tree-sitter) is
imported until one of the functions below is first used. The names are re-exported lazily::

    from codistill.metrics import estimate_pass_at_k, pass_at_k_table          # passk.py
    from codistill.metrics import syntax_match, dataflow_match, pair_syntax_dataflow
    from codistill.metrics import corpus_syntax_dataflow                       # codebleu.py
    from codistill.metrics import mcnemar_exact, paired_bootstrap_ci, wilson_interval, holm_adjust  # stats.py
    from codistill.metrics import summarize                                   # summary.py (pass@k over verdicts)
    from codistill.metrics import leakage_score                               # leakage.py (teach, eval's plans)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "estimate_pass_at_k": "passk",
    "pass_at_k_table": "passk",
    "syntax_match": "codebleu",
    "dataflow_match": "codebleu",
    "pair_syntax_dataflow": "codebleu",
    "corpus_syntax_dataflow": "codebleu",
    "CODEBLEU_INSTALL_HINT": "codebleu",
    "mcnemar_exact": "stats",
    "paired_bootstrap_ci": "stats",
    "wilson_interval": "stats",
    "holm_adjust": "stats",
    "summarize": "summary",
    "leakage_score": "leakage",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .codebleu import (
        CODEBLEU_INSTALL_HINT,
        corpus_syntax_dataflow,
        dataflow_match,
        pair_syntax_dataflow,
        syntax_match,
    )
    from .leakage import leakage_score
    from .passk import estimate_pass_at_k, pass_at_k_table
    from .summary import summarize
    from .stats import holm_adjust, mcnemar_exact, paired_bootstrap_ci, wilson_interval


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
