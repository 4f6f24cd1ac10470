"""How much of the oracle code a context reveals: a score in [0, 1].

The paper's explain mode must teach *how* without handing over the solution. We measure that on the
code-like spans of a context, compared with the reference solution as Python tokens:

1. **Code-like spans** (:func:`code_spans`): fenced blocks, inline ``code``, and prose lines that
   parse as a Python statement with some structure (an assignment, call, ``return``, loop, ...;
   a bare word or a sentence does not qualify).
2. **Tokens**: Python's own tokenizer (comments, indentation and newlines dropped; a regex
   fallback for fragments that do not tokenize). Identifiers are kept: renaming every variable
   is already a rewrite, not a paste.
3. **Scores**, both normalised by the solution's length:
   * ``lcs``: the longest common contiguous token run between the spans and the solution,
     divided by the number of solution tokens;
   * ``ngram``: the share of the solution's token n-grams (default n=4) found in the spans.
     N-grams that also occur in ``public`` text (the problem statement, which already shows e.g.
     the signature or a test call) are not counted as leaked.
   ``score = max(lcs, ngram)``.

A context that pastes the solution scores ~1; a prose explanation ~0; a partial paste lands in
between (pasting half the lines gives ~0.5). Formulas written as code (``dp[i] = dp[i-1] + x``)
count in proportion to how much of the solution they spell out.

Used by the teach stage (:mod:`codistill.teacher.teach`, the explain and reverse modes: contexts
above ``leakage_threshold`` are rejected; its manifest's histogram) and by evaluation (the
Reasoner's plans in :mod:`codistill.evaluation.strategies.reasoner_coder`, their summary in
:mod:`codistill.evaluation.judging`).
"""

from __future__ import annotations

import ast
import re

__all__ = ["LEAKAGE_VERSION", "code_spans", "code_tokens", "leakage", "leakage_score", "summarize"]

from codistill.problems._common import parse_quietly  # noqa: E402
from codistill.problems.tokens import _FALLBACK_TOKEN, code_tokens  # noqa: E402,F401 - re-exported

LEAKAGE_VERSION = 1  # part of teach's resume key: a changed score re-checks finished records (from cache)

_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_STRUCTURE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.For, ast.While, ast.If, ast.With,
              ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Call, ast.Subscript,
              ast.BinOp, ast.Compare, ast.Lambda, ast.ListComp, ast.DictComp, ast.SetComp,
              ast.GeneratorExp, ast.Yield, ast.Raise, ast.Try, ast.Attribute)


def _looks_like_code(line: str) -> bool:
    s = line.strip().rstrip(":")
    if len(s) < 3 or len(s) > 300:
        return False
    # Block headers ("for x in y:", "def f(a):") parse once given a body.
    src = s + ":\n    pass" if re.match(r"(for|while|if|elif|else|def|class|with|try|except)\b", s) else s
    src = re.sub(r"^(elif|else|except)\b", "if", src)
    try:
        tree = parse_quietly(src)
    except (SyntaxError, ValueError):
        return False
    # sentences rarely parse; those that do ("a and b") have no structure
    return any(isinstance(n, _STRUCTURE) for n in ast.walk(tree))


def code_spans(text: str) -> list[str]:
    """Code-like spans of a context (see module docstring), in order. Consecutive code-like prose
    lines form one span (a pasted function without a fence is one block, not many lines)."""
    spans = [m.group(1) for m in _FENCE.finditer(text)]
    rest = _FENCE.sub("\n", text)
    run: list[str] = []
    for line in rest.splitlines():
        inline = _INLINE.findall(line)
        bare = _INLINE.sub(" ", line).strip()
        # list markers and bold labels in front of a code line
        bare = re.sub(r"^([-*+]|\d{1,2}[.)])\s+", "", bare)
        bare = re.sub(r"^\*\*[^*]{1,40}\*\*:?\s*", "", bare)
        if bare and _looks_like_code(bare):
            run.append(bare)
        else:
            if run:
                spans.append("\n".join(run))
                run = []
        spans.extend(inline)
    if run:
        spans.append("\n".join(run))
    return spans


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of tokens (dynamic programming, O(len a * len b))."""
    if not a or not b:
        return 0
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                v = prev[j - 1] + 1
                cur[j] = v
                if v > best:
                    best = v
        prev = cur
    return best


def leakage(context: str, solution: str, public: str = "", n: int = 4) -> dict:
    """Leakage figures of ``context`` against ``solution``: ``{"score", "lcs", "ngram", "span_tokens"}``.

    ``public``: text the student sees anyway (the problem statement); its n-grams do not count.
    """
    sol = code_tokens(solution)
    if not sol:
        return {"score": 0.0, "lcs": 0.0, "ngram": 0.0, "span_tokens": 0}
    spans = code_spans(context)
    span_tok_lists = [code_tokens(s) for s in spans]
    joined: list[str] = []
    grams: set[tuple[str, ...]] = set()
    best_run = 0
    for toks in span_tok_lists:
        if not toks:
            continue
        joined.extend(toks)
        grams |= _ngrams(toks, n)
        best_run = max(best_run, _longest_common_run(toks, sol))
    if not joined:
        return {"score": 0.0, "lcs": 0.0, "ngram": 0.0, "span_tokens": 0}
    sol_grams = _ngrams(sol, n)
    if public:
        pub = _ngrams(code_tokens(public) or _FALLBACK_TOKEN.findall(public), n)
        sol_grams_counted = sol_grams - pub or sol_grams
    else:
        sol_grams_counted = sol_grams
    ngram = len(sol_grams_counted & grams) / len(sol_grams_counted)
    lcs = best_run / len(sol)
    return {"score": round(max(lcs, ngram), 4), "lcs": round(lcs, 4), "ngram": round(ngram, 4),
            "span_tokens": len(joined)}


def leakage_score(context: str, solution: str, public: str = "", n: int = 4) -> float:
    """``leakage(...)["score"]``: 0 = reveals none of the solution's code, 1 = all of it."""
    return leakage(context, solution, public, n)["score"]


def summarize(scores: list[float], threshold: float | None = None, bins: int = 10) -> dict:
    """Distribution of leakage scores: count, mean, quantiles, histogram, share above threshold."""
    xs = sorted(float(s) for s in scores)
    if not xs:
        return {"count": 0}

    def q(p: float) -> float:
        i = (len(xs) - 1) * p
        lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
        return round(xs[lo] + (xs[hi] - xs[lo]) * (i - lo), 4)

    hist = [0] * bins
    for x in xs:
        hist[min(bins - 1, int(x * bins))] += 1
    out = {"count": len(xs), "mean": round(sum(xs) / len(xs), 4), "min": xs[0], "p25": q(0.25),
           "median": q(0.5), "p75": q(0.75), "p90": q(0.9), "max": xs[-1],
           "histogram": {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": h for i, h in enumerate(hist)},
           "zero": sum(1 for x in xs if x == 0.0)}
    if threshold is not None:
        out["threshold"] = threshold
        out["above_threshold"] = sum(1 for x in xs if x > threshold)
    return out
