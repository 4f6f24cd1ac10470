"""CodeBLEU's two structural components for Python: syntax match and data-flow match.

Credit: Ren et al. 2020, "CodeBLEU: a Method for Automatic Evaluation of Code Synthesis"
(arXiv:2009.10297), and the ``codebleu`` package (k4black/codebleu, MIT licence, derived from
Microsoft's CodeXGLUE implementation). The numbers are those of
``codebleu.calc_codebleu(refs, preds, lang="python")["syntax_match_score"]`` and
``["dataflow_match_score"]`` (see "Determinism" below for the one deliberate difference): we
reuse the package's own comment/docstring stripping, data-flow extraction and normalisation, and
mirror its subtree enumeration, but keep the match counts per pair so that both corpus-level
(micro) and per-program (macro) averages are available.

What the scores are (as implemented by codebleu 0.7.0, quirks included):

* Both sides are ``str.strip()``-ed, then comments and docstrings are removed (tokenize-based; if
  tokenizing fails -- e.g. on a syntax error -- the text is used as is).
* **syntax match** = (number of reference subtrees whose S-expression occurs anywhere among the
  prediction's subtrees) / (number of reference subtrees). Subtrees are all nodes with children
  (leaves are not counted on their own), compared by tree-sitter S-expression, which contains
  node types and field names but no identifier text. It is set membership, not a multiset match,
  and it is not symmetric. A reference always has at least one subtree (the ``module`` root).
* **data-flow match** = (reference data-flow edges found in the prediction, multiset match) /
  (number of reference data-flow edges), after renaming variables to ``var_0, var_1, ...`` in
  order of first appearance. It is **undefined when the reference has no data-flow edge**
  (e.g. ``def f(): return 1``): codebleu returns 0 at corpus level with a logged warning (and then
  ``calc_codebleu`` substitutes 1 in the combined score, via ``dataflow_match_score or 1``).
  Here :func:`dataflow_match` returns ``None`` for such a pair, the corpus (micro) score is
  ``None`` when no pair has a reference edge, and per-program means skip undefined pairs.
* Unparsable predictions (empty strings, syntax errors, truncated code) never raise: tree-sitter
  produces a tree with ERROR nodes, which simply matches less.

**Determinism (where we depart from codebleu by default).** codebleu 0.7.0 merges the parent
variables of a data-flow node with ``list(set(names))`` (in ``parser/DFG.py`` and in
``dataflow_match.get_data_flow``), so their order -- and with it the ``var_i`` normalisation and
the match -- depends on string hashing, i.e. on ``PYTHONHASHSEED``: the same pair can score
differently in two runs, and a purely consistent renaming of HumanEval's canonical solutions
scores < 1 on 40-45 of 164 programs (corpus data-flow 0.977-0.982 across seeds 0-3). With
``deterministic=True`` (the default) we run a private copy of codebleu's ``DFG_python`` (the
installed module is not modified) in which ``set`` keeps first-seen order, and merge the same way;
the scores then equal ``calc_codebleu`` run with that same order-preserving ``set`` patched in,
do not depend on the hash seed, and a consistent renaming scores exactly 1 on all 164. Programs
without such merges (most small ones, e.g. the ``add`` example) score identically either way.
``deterministic=False`` calls codebleu's own code and reproduces ``calc_codebleu`` exactly,
hash-seed dependence included. The syntax match has no such issue.

Both scores are recall-like: what the prediction adds (extra statements, extra variables) is not
penalised. The ``var_i`` renaming is global to the program, so one variable more or less early on
shifts the ids of every later one and can drop the data-flow match sharply.

Corpus-level scores are micro averages (sum of matches / sum of reference counts), exactly as
``calc_codebleu`` computes them; per-program scores and their plain (macro) means are returned
too.

codebleu and tree-sitter are imported lazily and the parser is built once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CODEBLEU_INSTALL_HINT",
    "corpus_syntax_dataflow",
    "dataflow_match",
    "pair_syntax_dataflow",
    "syntax_match",
]

CODEBLEU_INSTALL_HINT = "pip install codebleu==0.7.0 tree-sitter==0.22.3 tree-sitter-python==0.21.0"
_LANG = "python"


@dataclass(frozen=True)
class _Tools:
    parser: Any
    remove_comments_and_docstrings: Any
    normalize_dataflow: Any
    tree_to_token_index: Any
    index_to_code_token: Any
    codebleu_get_data_flow: Any  # codebleu's own, for deterministic=False
    codebleu_dfg_python: Any
    ordered_dfg_python: Any  # private copy of codebleu's DFG_python with an ordered set()


def _ordered_set(iterable: Any = ()) -> dict[Any, None]:
    """Stand-in for ``set()`` in codebleu's DFG code: the same elements, in first-seen order.

    codebleu's DFG code only ever calls ``list(set(...))`` / ``sorted(list(set(...)))``, for which
    an insertion-ordered dict behaves like a set whose iteration order does not depend on
    ``PYTHONHASHSEED``.
    """
    return dict.fromkeys(iterable)


def _load_ordered_dfg_python() -> Any:
    import importlib.util

    # A private copy of codebleu.parser.DFG (not registered in sys.modules, so codebleu itself is
    # untouched) whose global name ``set`` is the ordered stand-in above.
    spec = importlib.util.find_spec("codebleu.parser.DFG")
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError("codebleu.parser.DFG not found")
    module = importlib.util.module_from_spec(spec)
    module.set = _ordered_set  # type: ignore[attr-defined]
    spec.loader.exec_module(module)
    return module.DFG_python


@functools.lru_cache(maxsize=1)
def _tools() -> _Tools:
    try:
        from codebleu.dataflow_match import get_data_flow, normalize_dataflow
        from codebleu.parser import (
            DFG_python,
            index_to_code_token,
            remove_comments_and_docstrings,
            tree_to_token_index,
        )
        from codebleu.utils import get_tree_sitter_language
        from tree_sitter import Parser

        ordered_dfg_python = _load_ordered_dfg_python()
    except ImportError as exc:  # pragma: no cover - exercised only without the extras
        raise ImportError(
            f"CodeBLEU syntax/data-flow metrics need the 'metrics' extras: {CODEBLEU_INSTALL_HINT} "
            f"(codebleu 0.7.0 breaks with tree-sitter>=0.23). Import failed: {exc}"
        ) from exc
    try:
        language = get_tree_sitter_language(_LANG)
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"tree-sitter-python is missing: {CODEBLEU_INSTALL_HINT}") from exc
    parser = Parser()
    parser.language = language
    return _Tools(
        parser=parser,
        remove_comments_and_docstrings=remove_comments_and_docstrings,
        normalize_dataflow=normalize_dataflow,
        tree_to_token_index=tree_to_token_index,
        index_to_code_token=index_to_code_token,
        codebleu_get_data_flow=get_data_flow,
        codebleu_dfg_python=DFG_python,
        ordered_dfg_python=ordered_dfg_python,
    )


def _clean(code: str) -> str:
    if not isinstance(code, str):
        raise TypeError(f"expected source code as str, got {type(code).__name__}")
    try:
        code.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: codebleu's bytes(code, "utf8") would raise
        code = code.encode("utf-8", "replace").decode("utf-8")
    code = code.strip()
    try:
        return _tools().remove_comments_and_docstrings(code, _LANG)
    except Exception:  # tokenize errors on broken code: codebleu keeps the text as is
        return code


def _subtree_sexps(code: str) -> list[str]:
    # Mirrors get_all_sub_trees in codebleu.syntax_match.corpus_syntax_match: the root plus every
    # descendant that has children, as S-expressions (str(node) in tree-sitter 0.22).
    root = _tools().parser.parse(bytes(code, "utf8")).root_node
    out: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(str(node))
        stack.extend(child for child in node.children if child.children)
    return out


def _ordered_get_data_flow(code: str, tools: _Tools) -> list[Any]:
    # codebleu.dataflow_match.get_data_flow, line for line, except that merging the entries of a
    # token seen twice keeps first-seen order (list(dict.fromkeys(...))) instead of list(set(...)).
    try:
        tree = tools.parser.parse(bytes(code, "utf8"))
        root_node = tree.root_node
        tokens_index = tools.tree_to_token_index(root_node)
        lines = code.split("\n")
        code_tokens = [tools.index_to_code_token(x, lines) for x in tokens_index]
        index_to_code = {
            index: (idx, tok) for idx, (index, tok) in enumerate(zip(tokens_index, code_tokens))
        }
        try:
            dfg, _ = tools.ordered_dfg_python(root_node, index_to_code, {})
        except Exception:
            dfg = []
        dfg = sorted(dfg, key=lambda x: x[1])
        indexs = set()  # ints only: membership test, order irrelevant
        for d in dfg:
            if len(d[-1]) != 0:
                indexs.add(d[1])
            for x in d[-1]:
                indexs.add(x)
        dfg = [d for d in dfg if d[1] in indexs]
    except Exception:
        dfg = []
    merged: dict[Any, Any] = {}
    for d in dfg:
        if d[1] not in merged:
            merged[d[1]] = d
        else:
            prev = merged[d[1]]
            merged[d[1]] = (
                d[0],
                d[1],
                d[2],
                list(dict.fromkeys(prev[3] + d[3])),
                list(dict.fromkeys(prev[4] + d[4])),
            )
    return list(merged.values())


def _normalized_dfg(code: str, deterministic: bool) -> list[Any]:
    tools = _tools()
    if deterministic:
        dfg = _ordered_get_data_flow(code, tools)
    else:
        dfg = tools.codebleu_get_data_flow(code, [tools.parser, tools.codebleu_dfg_python])
    return tools.normalize_dataflow(dfg)


def _counts(reference: str, prediction: str, deterministic: bool) -> tuple[int, int, int, int]:
    """(syntax matched, syntax total, data-flow matched, data-flow total) for one pair."""
    ref = _clean(reference)
    pred = _clean(prediction)

    ref_sexps = _subtree_sexps(ref)
    pred_sexps = set(_subtree_sexps(pred))
    syn_match = sum(1 for s in ref_sexps if s in pred_sexps)

    ref_dfg = _normalized_dfg(ref, deterministic)
    pred_dfg = _normalized_dfg(pred, deterministic)
    df_match = 0
    for edge in ref_dfg:
        if edge in pred_dfg:
            df_match += 1
            pred_dfg.remove(edge)
    return syn_match, len(ref_sexps), df_match, len(ref_dfg)


def pair_syntax_dataflow(
    reference: str, prediction: str, *, deterministic: bool = True
) -> dict[str, Any]:
    """Syntax and data-flow match of one prediction against one reference (Python).

    Args:
        deterministic: see the module docstring; ``False`` reproduces codebleu 0.7.0 exactly,
            including its dependence on ``PYTHONHASHSEED``.

    Returns:
        ``{"syntax_match": float, "dataflow_match": float | None, "syntax_matched": int,
        "syntax_total": int, "dataflow_matched": int, "dataflow_total": int}``;
        ``dataflow_match`` is ``None`` when the reference has no data-flow edge.
    """
    sm, st, dm, dt = _counts(reference, prediction, deterministic)
    return {
        "syntax_match": sm / st,
        "dataflow_match": (dm / dt) if dt else None,
        "syntax_matched": sm,
        "syntax_total": st,
        "dataflow_matched": dm,
        "dataflow_total": dt,
    }


def syntax_match(reference: str, prediction: str) -> float:
    """CodeBLEU syntax (AST subtree) match of one Python prediction against one reference.

    Always identical to codebleu's (the syntax component has no hash-order dependence).
    """
    ref_sexps = _subtree_sexps(_clean(reference))
    pred_sexps = set(_subtree_sexps(_clean(prediction)))
    return sum(1 for s in ref_sexps if s in pred_sexps) / len(ref_sexps)


def dataflow_match(reference: str, prediction: str, *, deterministic: bool = True) -> float | None:
    """CodeBLEU data-flow match of one Python prediction against one reference.

    ``None`` when the reference has no data-flow edge (the score is undefined; codebleu would
    report 0 with a warning). ``deterministic``: see the module docstring.
    """
    _, _, dm, dt = _counts(reference, prediction, deterministic)
    return (dm / dt) if dt else None


def corpus_syntax_dataflow(
    references: Sequence[str], predictions: Sequence[str], *, deterministic: bool = True
) -> dict[str, Any]:
    """Syntax and data-flow match over a corpus of (reference, prediction) pairs, one reference each.

    Returns a dict with

    * ``syntax_match_score`` / ``dataflow_match_score``: corpus-level micro averages, as
      ``calc_codebleu(references, predictions, lang="python")`` computes its keys of the same
      names (equal to them with ``deterministic=False``; see the module docstring for the
      default), except that ``dataflow_match_score`` is ``None`` (not codebleu's 0) when no
      reference has a data-flow edge;
    * ``syntax_match_mean`` / ``dataflow_match_mean``: per-program (macro) means; the data-flow
      mean is over the ``n_dataflow_pairs`` pairs whose reference has a data-flow edge (``None``
      if there are none);
    * ``per_pair``: the :func:`pair_syntax_dataflow` dict of each pair, in order;
    * ``n_pairs``, ``n_dataflow_pairs``.
    """
    if isinstance(references, str) or isinstance(predictions, str):
        raise TypeError("references and predictions must be sequences of strings, not a string")
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("need at least one (reference, prediction) pair")
    per_pair = [
        pair_syntax_dataflow(r, p, deterministic=deterministic) for r, p in zip(references, predictions)
    ]
    syn_matched = sum(p["syntax_matched"] for p in per_pair)
    syn_total = sum(p["syntax_total"] for p in per_pair)
    df_matched = sum(p["dataflow_matched"] for p in per_pair)
    df_total = sum(p["dataflow_total"] for p in per_pair)
    df_scores = [p["dataflow_match"] for p in per_pair if p["dataflow_match"] is not None]
    return {
        "syntax_match_score": syn_matched / syn_total,
        "dataflow_match_score": (df_matched / df_total) if df_total else None,
        "syntax_match_mean": sum(p["syntax_match"] for p in per_pair) / len(per_pair),
        "dataflow_match_mean": (sum(df_scores) / len(df_scores)) if df_scores else None,
        "n_pairs": len(per_pair),
        "n_dataflow_pairs": len(df_scores),
        "per_pair": per_pair,
    }
