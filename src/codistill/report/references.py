"""Which arm each arm is paired with beyond its baseline (:mod:`codistill.report.paired`).

Three kinds of comparison, each a row of the significance table (``against``):

* ``coder`` -- a Reasoner→Coder pipeline whose Coder (results.json ``config.model`` +
  ``config.adapter``) is not its baseline's model, against the *direct* arm with the same Coder
  judged under the same protocol, preferring one drawn at the same temperature and samples per
  task: the ``teacher`` arm for a teacher Coder, ``cd`` for ``coder: arm:cd``. Δ is then the
  plan's effect, not the Coder's difference from the baseline. It replaces the pipeline's baseline
  row; a pipeline whose Coder answered no direct arm keeps its baseline, with a note. A pipeline
  whose Coder is its baseline's model (the student's, against ``base@standard``) keeps that row.
* ``reference`` -- every trained arm (a recipe arm of any kind but ``base`` and ``pipeline``; an
  arm outside a recipe run: one judged with an adapter) against each *reference arm* judged under
  the same protocol. The reference arms of a recipe run are its recipe's ``report.references``;
  absent or null: ``[cd]`` when the recipe has a trained arm ``cd`` (the paper's context
  distillation), else none; ``[]``: none. ``write_report(references=...)`` overrides them.
* ``pair`` -- named pairs ``[arm, reference]`` (Δ = arm − reference) from the recipe's
  ``report.pairs`` (or ``write_report(pairs=...)``), each eval of the arm against the reference's
  under the same protocol: e.g. ``[elad50, random50]`` (does uncertainty selection beat a random
  subset?) and ``[lema, corrected_only]`` (does the error signal matter?).

A comparison already in the table (the same arm and reference) is not repeated. Names are recipe
arm names within a recipe run (``cd``, not ``LABEL/cd`` or ``cd@standard``), and arm names for
arms outside one. A named arm without an eval, or without one under the protocol the other was
judged under, gives a note, never an error.
"""

from __future__ import annotations

import os
import re

from codistill.report.load import Arm, RunInfo

__all__ = ["coder_baselines", "reference_pairs", "recipe_report_settings"]

PIPELINE = "reasoner-coder"
_NOT_TRAINED = {"base", "pipeline"}
_PROTOCOL_SUFFIX = re.compile(r"@[^@/]*$")


def _protocol(arm: Arm) -> str | None:
    from codistill.report.paired import protocol_name

    return protocol_name(arm)


def _cfg(arm: Arm) -> dict:
    return (arm.results or {}).get("config") or {}


def _is_pipeline(arm: Arm) -> bool:
    return _cfg(arm).get("strategy") == PIPELINE


def _coder(arm: Arm) -> tuple[str, str | None]:
    """The answering model: (model, adapter path normalised)."""
    cfg = _cfg(arm)
    adapter = cfg.get("adapter")
    return str(cfg.get("model") or ""), os.path.normpath(str(adapter)) if adapter else None


def _decoding(arm: Arm) -> tuple:
    cfg = _cfg(arm)
    return cfg.get("temperature", 0.0), cfg.get("n_samples", 1)


def coder_baselines(arms: list[Arm], chosen: dict[str, Arm]) -> tuple[dict[str, Arm], list[str]]:
    """{pipeline arm name: the direct arm with its Coder under its protocol} for the pipelines in
    ``chosen`` (their baselines) whose baseline has another model and that have one, and notes
    for those that do not."""
    out: dict[str, Arm] = {}
    notes: list[str] = []
    for i, a in enumerate(arms):
        if a.name not in chosen or not _is_pipeline(a) or not _cfg(a).get("model"):
            continue
        p, coder = _protocol(a), _coder(a)
        if _coder(chosen[a.name]) == coder:
            continue  # the baseline already answers with the pipeline's Coder
        cands = [(j, d) for j, d in enumerate(arms) if d is not a and d.has_eval and not _is_pipeline(d)
                 and _coder(d) == coder and _protocol(d) == p]
        if not cands:
            who = coder[0] + (f" + {coder[1]}" if coder[1] else "")
            notes.append(f"{a.name}: no direct arm answered with its Coder ({who}) under the {p} protocol; "
                         f"compared with {chosen[a.name].name}, so its Δ includes the difference between the two "
                         "models, not only the plan's")
            continue
        _, ref = min(cands, key=lambda c: (_decoding(c[1]) != _decoding(a), c[0]))
        out[a.name] = ref
    return out, notes


# --------------------------------------------------------------------------- recipe settings
def recipe_report_settings(run: RunInfo) -> dict:
    """{"arms": {name: spec}, "references": list | None, "pairs": list | None} from the run's recipe.yaml."""
    if not run.recipe_text:
        return {"arms": {}, "references": None, "pairs": None}
    import yaml

    try:
        rec = yaml.safe_load(run.recipe_text) or {}
    except yaml.YAMLError:
        rec = {}
    rec = rec if isinstance(rec, dict) else {}
    arms = rec.get("arms") if isinstance(rec.get("arms"), dict) else {}
    report = rec.get("report") if isinstance(rec.get("report"), dict) else {}
    return {"arms": arms, "references": report.get("references"), "pairs": report.get("pairs")}


def _kind(spec) -> str | None:
    if not isinstance(spec, dict):
        return None
    return spec.get("kind") or ("base" if spec.get("base") else "trained")


def _recipe_arm(arm: Arm) -> str:
    """A recipe run's arm name of ``arm`` (its folder), else its name without the protocol suffix."""
    if arm.run is not None and arm.train_dir is not None:
        return arm.train_dir.parent.name
    return _PROTOCOL_SUFFIX.sub("", arm.name)


def _as_names(value, what: str, notes: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    notes.append(f"{what}: expected a list of arm names, got {value!r}; ignored")
    return []


def _as_pairs(value, what: str, notes: list[str]) -> list[tuple[str, str]]:
    out = []
    for p in value or []:
        if isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) and p[0] != p[1]:
            out.append((p[0], p[1]))
        else:
            notes.append(f"{what}: {p!r} is not a pair [arm, reference] of two arm names; ignored")
    return out


def _scopes(arms: list[Arm], runs: list[RunInfo], references, pairs, notes: list[str]):
    """(label, the scope's evaluated arms, trained-arm test, reference names, pairs) per recipe run,
    and one for the arms outside any run."""
    out = []
    for run in runs:
        mine = [a for a in arms if a.run is run and a.has_eval]
        s = recipe_report_settings(run)
        specs = s["arms"]
        where = f"{run.name}: recipe report"
        if references is not None:
            refs = _as_names(references, "references", notes)
        elif s["references"] is not None:
            refs = _as_names(s["references"], f"{where}.references", notes)
        else:
            refs = ["cd"] if _kind(specs.get("cd")) == "trained" else []
        prs = (_as_pairs(pairs, "pairs", notes) if pairs is not None
               else _as_pairs(s["pairs"], f"{where}.pairs", notes))

        def trained(a: Arm, specs=specs) -> bool:
            k = _kind(specs.get(_recipe_arm(a)))
            return k not in _NOT_TRAINED if k is not None else bool(_cfg(a).get("adapter")) and not _is_pipeline(a)

        out.append((run.name + ": " if len(runs) > 1 else "", mine, trained, refs, prs))
    loose = [a for a in arms if a.run is None and a.has_eval]
    if loose:
        out.append(("", loose, lambda a: bool(_cfg(a).get("adapter")) and not _is_pipeline(a),
                    _as_names(references, "references", notes), _as_pairs(pairs, "pairs", notes)))
    return out


def _match(arm: Arm, refs: list[Arm]) -> Arm | None:
    p = _protocol(arm)
    return next((r for r in refs if _protocol(r) == p), None)


def reference_pairs(arms: list[Arm], runs: list[RunInfo], references=None,
                    pairs=None) -> tuple[list[tuple[Arm, Arm, str]], list[str]]:
    """[(arm, reference arm, "reference" | "pair")] in arm order (references first, then the named
    pairs), and notes. ``references`` / ``pairs``: override every recipe run's ``report.references``
    / ``report.pairs`` (and apply to the arms outside a run); None: each recipe's own."""
    notes: list[str] = []
    out: list[tuple[Arm, Arm, str]] = []
    for where, mine, trained, refs, prs in _scopes(arms, runs, references, pairs, notes):
        evals: dict[str, list[Arm]] = {}
        for a in mine:
            evals.setdefault(_recipe_arm(a), []).append(a)

        def compare(a: Arm, ref: str, kind: str, label: str) -> None:
            r = _match(a, evals[ref])
            if r is None:
                notes.append(f"{where}{label}: {ref} was not judged under the {_protocol(a)} protocol; not compared")
            else:
                out.append((a, r, kind))
        for ref in refs:
            if ref not in evals:
                if any(trained(a) for a in mine):
                    notes.append(f"{where}reference arm {ref}: no evaluation; no arm is compared with it")
                continue
            for a in mine:
                if _recipe_arm(a) != ref and trained(a):
                    compare(a, ref, "reference", f"{a.name} vs {ref}")
        for arm_name, ref in prs:
            missing = [n for n in (arm_name, ref) if n not in evals]
            if missing:
                notes.append(f"{where}pair {arm_name} vs {ref}: no evaluation of {' and '.join(missing)}; not compared")
                continue
            for a in evals[arm_name]:
                compare(a, ref, "pair", f"pair {a.name} vs {ref}")
    return out, notes
