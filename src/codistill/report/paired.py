"""The report's paired comparisons: every arm against the baseline judged under the arm's own protocol.

Statistics, per arm and benchmark, on the tasks both evaluated (intersection of task ids): Δpass@1
with a paired bootstrap 95% CI, exact McNemar test on per-task pass/fail (b = tasks only the arm
passes, c = tasks only the baseline passes) and a Holm adjustment over all comparisons in the table
-- the functions of :mod:`codistill.metrics.stats`.

Which baseline (:func:`choose_baselines`): the *baseline family* is the primary baseline arm
(``--baseline``, default ``base``) and its evals under other protocols (``base@standard``, from
``arms/base/eval@standard``). A protocol is named by results.json ``protocol.name``: ``standard``
or the student format's name (an eval without the record: ``standard``, as runs before it were).
Each arm is compared with the family member judged under the same protocol -- ``base`` for an arm
judged in the run's format, ``base@standard`` for the teacher or a Reasoner→Coder pipeline judged
under the standard protocol -- so that Δ is a model difference, not a prompt difference. The family's
own other-protocol evals are compared with the primary baseline (the same model under two protocols:
Δ is the protocol's effect). An arm judged under a protocol no family member was judged under is
compared with the primary baseline, with a note saying that Δ then mixes the two; an arm (or primary
baseline) without a protocol record at all (no results.json) is compared with the primary baseline.

Beyond the baseline (:mod:`codistill.report.references`; each row's ``against`` says which): a
Reasoner→Coder pipeline is compared with the direct arm that has its Coder, under its protocol
(``coder``, instead of its baseline row); every trained arm also with the run's reference arms
(``reference``: ``cd`` by default, recipe ``report.references``); and the named pairs of recipe
``report.pairs`` (``pair``). Holm adjusts over every row of the table, whatever it is against.
"""

from __future__ import annotations

import re
from typing import TypedDict

from codistill.report.load import Arm

__all__ = ["Comparison", "protocol_name", "choose_baselines", "significance", "crosses_protocols", "baselines_used",
           "same_model", "baseline_cell", "beyond_baselines", "beyond_text"]

# Keys with "@" in them need TypedDict's functional form.
Comparison = TypedDict("Comparison", {
    "arm": str, "baseline": str, "benchmark": str, "n_common": int, "n_baseline_only": int, "n_arm_only": int,
    "baseline_pass@1": float, "arm_pass@1": float,
    "delta": float, "ci": list[float],  # arm - baseline, paired bootstrap CI
    "b": int, "c": int, "p_value": float, "p_holm": float,  # exact McNemar, Holm-adjusted
    "mcnemar_on": str,
    "against": str,  # "baseline" | "coder" | "reference" | "pair" (codistill.report.references)
})

_PROTOCOL_SUFFIX = re.compile(r"@[^@/]*$")  # "base@standard" -> "base"; a label's "/" stays


def _task_p1(row: dict) -> float:
    if row.get("pass@1") is not None:
        return float(row["pass@1"])
    n, c = row.get("n"), row.get("c")
    if n:
        return float(c or 0) / float(n)
    return 1.0 if row.get("passed") else 0.0


def _nc(row: dict) -> tuple[int, int]:
    n = int(row.get("n") or 1)
    c = row.get("c")
    c = int(c) if c is not None else (n if row.get("passed") else 0)
    return n, c


def protocol_name(arm: Arm) -> str | None:
    """The protocol an arm was judged under (results.json ``protocol.name``; an eval before the
    record: ``standard``; no results.json: None)."""
    res = arm.results or {}
    return (res.get("protocol") or {}).get("name", "standard" if res else None)


def _stem(name: str) -> str:
    return _PROTOCOL_SUFFIX.sub("", name)


def choose_baselines(arms: list[Arm], primary: Arm) -> tuple[dict[str, Arm], list[str]]:
    """{arm name: its baseline} for every evaluated arm but ``primary``, and the notes of the arms
    compared across protocols for want of a same-protocol baseline (see the module's docstring)."""
    stem = _stem(primary.name)
    family = [primary] + [a for a in arms if a is not primary and a.has_eval and _stem(a.name) == stem]
    by_protocol: dict[str, Arm] = {}
    for a in family:
        p = protocol_name(a)
        if p is not None:
            by_protocol.setdefault(p, a)
    out: dict[str, Arm] = {}
    notes: list[str] = []
    pp = protocol_name(primary)
    for a in arms:
        if a is primary or not a.has_eval:
            continue
        p = protocol_name(a)
        if any(a is f for f in family) or p is None or pp is None:
            out[a.name] = primary
        elif p in by_protocol:
            out[a.name] = by_protocol[p]
        else:
            out[a.name] = primary
            judged = ", ".join(f"{f.name}: {protocol_name(f)}" for f in family if protocol_name(f) is not None)
            notes.append(f"{a.name}: judged under the {p} protocol, which no {stem} eval used ({judged}); compared "
                         f"with {primary.name}, so its Δ mixes the model difference with the protocol difference")
    return out, notes


def crosses_protocols(row: Comparison, protocols: dict[str, dict]) -> bool:
    """Whether a comparison row's arm and baseline were judged under different (known) protocols."""
    pa = (protocols.get(row["arm"]) or {}).get("name")
    pb = (protocols.get(row["baseline"]) or {}).get("name")
    return pa is not None and pb is not None and pa != pb


def baselines_used(rep: dict) -> list[str]:
    """The baselines the report's baseline rows use, primary first (none without rows); rows
    against a Coder's direct arm, a reference arm or a named pair are not counted."""
    rows = [r for r in rep.get("significance") or [] if r.get("against", "baseline") == "baseline"]
    used = [rep.get("baseline")] if rep.get("baseline") else []
    for r in rows:
        if r["baseline"] not in used:
            used.append(r["baseline"])
    return [b for b in used if any(r["baseline"] == b for r in rows)]


_MARK = {"coder": "same Coder", "reference": "reference", "pair": "pair"}


def baseline_cell(row: Comparison) -> str:
    """A row's baseline as the table shows it: ``cd (reference)``, ``teacher@standard (same Coder)``."""
    mark = _MARK.get(row.get("against", "baseline"))
    return f"{row['baseline']} ({mark})" if mark else row["baseline"]


def beyond_baselines(rep: dict) -> dict[str, list[str]]:
    """The rows that are not against a baseline, by kind: {"coder": ["arm vs ref", ...],
    "reference": [reference arms], "pair": ["arm vs ref", ...]} (only kinds with rows)."""
    out: dict[str, list[str]] = {}
    for r in rep.get("significance") or []:
        kind = r.get("against", "baseline")
        if kind == "baseline":
            continue
        item = r["baseline"] if kind == "reference" else f"{r['arm']} vs {r['baseline']}"
        if item not in out.setdefault(kind, []):
            out[kind].append(item)
    return out


def beyond_text(rep: dict) -> str:
    """One sentence on the rows beyond the baselines ('' if none)."""
    extra = beyond_baselines(rep)
    parts = []
    if "coder" in extra:
        parts.append("(same Coder) each Reasoner→Coder pipeline against the direct arm with the same Coder judged "
                     "under the same protocol, so that Δ is the plan's effect, not the Coder's difference from the "
                     "baseline (" + ", ".join(extra["coder"]) + ")")
    if "reference" in extra:
        parts.append("(reference) every trained arm against the reference arm judged under its protocol ("
                     + ", ".join(extra["reference"]) + "; recipe `report.references`)")
    if "pair" in extra:
        parts.append("(pair) the named pairs, Δ = the first − the second (" + ", ".join(extra["pair"])
                     + "; recipe `report.pairs`)")
    return ("Also, marked in the baseline column: " + "; ".join(parts) + ".") if parts else ""


def same_model(row: Comparison) -> bool:
    """Whether a row compares two evals of one arm (``base@standard`` with ``base``)."""
    return _stem(row["arm"]) == _stem(row["baseline"])


def _compare(arm: Arm, baseline: Arm, against: str, benches: list[str], n_boot: int, seed: int,
             notes: list[str]) -> list[Comparison]:
    """``arm`` against ``baseline`` on each benchmark both have per-task rows for (no Holm yet)."""
    from codistill.metrics.stats import mcnemar_exact, paired_bootstrap_ci

    out: list[Comparison] = []
    for bench in benches:
        brows, arows = baseline.rows.get(bench), arm.rows.get(bench)
        if not brows or not arows:
            ran = {a.name: bench in a.benchmarks() for a in (baseline, arm)}
            if all(ran.values()):
                who = " and ".join(a.name for a, r in ((baseline, brows), (arm, arows)) if not r)
                notes.append(f"{arm.name} vs {baseline.name} on {bench}: no per-task results (tasks.jsonl) "
                             f"for {who}; not compared")
            elif any(ran.values()):
                notes.append(f"{arm.name} vs {baseline.name} on {bench}: "
                             f"{' and '.join(n for n, r in ran.items() if not r)} not evaluated on it")
            continue
        common = sorted(set(brows) & set(arows))
        if not common:
            notes.append(f"{arm.name} vs {baseline.name} on {bench}: no task in common; not compared")
            continue
        bp = [bool(brows[t].get("passed")) for t in common]
        ap = [bool(arows[t].get("passed")) for t in common]
        b1 = [_task_p1(brows[t]) for t in common]
        a1 = [_task_p1(arows[t]) for t in common]
        mc = mcnemar_exact(bp, ap)
        bs = paired_bootstrap_ci(b1, a1, n_boot=n_boot, seed=seed)
        multi = any(_nc(brows[t])[0] > 1 or _nc(arows[t])[0] > 1 for t in common)
        out.append({
            "arm": arm.name, "baseline": baseline.name, "benchmark": bench,
            "n_common": len(common), "n_baseline_only": len(set(brows) - set(arows)),
            "n_arm_only": len(set(arows) - set(brows)),
            "baseline_pass@1": sum(b1) / len(b1), "arm_pass@1": sum(a1) / len(a1),
            "delta": bs["diff"], "ci": [bs["lo"], bs["hi"]],
            "b": mc["b01"], "c": mc["b10"], "p_value": mc["p_value"],
            "mcnemar_on": "first sample pass/fail" if multi else "pass/fail", "against": against,
        })
    return out


def significance(arms: list[Arm], primary: Arm, benches: list[str], n_boot: int, seed: int,
                 runs: list | None = None, references=None, pairs=None) -> tuple[list[Comparison], list[str]]:
    """Every evaluated arm but ``primary`` against its baseline (:func:`choose_baselines`; a pipeline
    against the direct arm with its Coder), then the trained arms against the reference arms and
    the named pairs (:func:`codistill.report.references.reference_pairs`; ``runs``, ``references``,
    ``pairs`` as there), on each benchmark both have per-task rows for; Holm within each family
    (against the baseline or the Coder's direct arm; against a reference; the named pairs).
    Returns (rows, notes)."""
    from codistill.metrics.stats import holm_adjust
    from codistill.report.references import coder_baselines, reference_pairs

    chosen, notes = choose_baselines(arms, primary)
    coders, coder_notes = coder_baselines(arms, chosen)
    notes += coder_notes
    todo = [(a, coders.get(a.name, chosen[a.name]), "coder" if a.name in coders else "baseline")
            for a in arms if a.name in chosen]
    extra, extra_notes = reference_pairs(arms, runs or [], references, pairs)
    notes += extra_notes
    done = {(a.name, b.name) for a, b, _ in todo}
    for a, b, against in extra:
        if (a.name, b.name) not in done and a is not b:
            done.add((a.name, b.name))
            todo.append((a, b, against))
    out: list[Comparison] = []
    for arm, baseline, against in todo:
        out += _compare(arm, baseline, against, benches, n_boot, seed, notes)
    # Holm within each question's family: every arm against its baseline (or its Coder's direct arm),
    # the trained arms against a reference arm, the named pairs; so adding arms of one question does
    # not move the adjusted p of another's
    for fam in ({"baseline", "coder"}, {"reference"}, {"pair"}):
        rows = [r for r in out if r["against"] in fam]
        for row, ph in zip(rows, holm_adjust([r["p_value"] for r in rows])):
            row["p_holm"] = ph
    return out, notes
