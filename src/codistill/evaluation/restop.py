"""Answers made under an earlier stop rule that the current one would have let go on.

Stop rule 1 (format evals made before 2026-12-02) ended an answer at the header of any section
after the code, wherever it came: a student that wrote its tests straight after its reasoning was
cut off there, with no code. Rule 2 (:data:`codistill.formats.STOP_RULE`) stops only once the code
section is closed. When a format eval made under rule 1 is resumed (a recipe runs it again: the
rule is part of its key), :func:`supersede_stale` sets aside the answers rule 2 would have
continued -- moved to ``generations.superseded.jsonl``, nothing deleted -- and the eval asks for
them again. The others stand as they are, since rule 2 would have ended them the same way:

- rows that record the rule they were made under (``stop_rule``) and it is the current one;
- answers that ran to the cap (``n_tokens`` >= ``max_new_tokens``, or finish ``length``), that the
  loop stop ended (finish ``loop``; for a row made before finish reasons were recorded, in an eval
  with the loop stop on, text that ends in a loop), or that the model ended (finish ``eos``: a
  streamed answer, whose stop strings are the client's, which would have said ``stop``): rule 2's
  stops contain rule 1's, so they cannot fire where rule 1's did not;
- answers cut right after their closed code section (the text ends with its closing fence): rule 2
  stops at the same place and the code is the same (its text would lack the closing fence, which
  the extractor does not need).

What is asked again: answers that a rule-1 stop ended (finish ``stop``, a streamed answer: the
client cut it), and answers with no fenced code that may have ended at one (finish ``stop_or_eos``,
or not recorded: a non-streamed answer, where the server cannot tell its end of sequence from a
stop string); a greedy answer that in fact ended at its end of sequence comes back the same. Not
asked again: a non-streamed answer that holds a fenced block and does not end with a closed code
section. Rule 1 may have cut it before a later code section (a code block in its reasoning, then
the tests header), but nothing recorded tells, and re-asking every one of them would regenerate
nearly every answer of a model that ends in prose (the untouched base). Among streamed answers,
whose end is known, paper-small's cd had none such: each answer rule 1 cut either ended with its
closed code section or held no code at all (200).

A unit with several samples is asked again whole when one of them is stale (its sample indices and
seeds stay those of a fresh run). Only the direct strategy's evals made rows under rule 1; a
pipeline's rows are left alone.
"""

from __future__ import annotations

from pathlib import Path

from codistill.store import JsonlAppender, read_jsonl, write_jsonl

SUPERSEDED_FILE = "generations.superseded.jsonl"


def _stale(row: dict, fmt, max_new_tokens: int, stop_on_loop: bool) -> bool:
    from codistill.formats import STOP_RULE
    from codistill.loops import ends_in_a_loop

    if row.get("stop_rule") == STOP_RULE:
        return False
    why = row.get("finish_reason")
    text = row.get("completion_raw") or ""
    if why in ("length", "loop", "eos") or (row.get("n_tokens") or 0) >= max_new_tokens:
        return False
    if why is None and stop_on_loop and ends_in_a_loop(text):
        return False
    if text.rstrip().endswith(fmt.code_tail().strip()):
        return False
    return why == "stop" or "```" not in text  # a known rule-1 cut; else (may have been) one, with no code


def supersede_stale(out: Path, have: dict[str, list[dict]], protocol, cfg, console=None) -> int:
    """Set aside the answers of ``have`` (gen_key -> rows, from ``generations.jsonl``) that an earlier
    stop rule cut short (see the module docstring); returns how many rows were set aside. ``have``
    is updated in place; ``generations.jsonl`` (and ``token_nll.jsonl``) are rewritten (atomically)
    without them after they are appended to ``generations.superseded.jsonl``."""
    fmt = protocol.fmt
    if fmt is None or cfg.strategy != "direct" or fmt.stop_strings() == fmt.stop_strings_rule1():
        return 0
    stale = [k for k, rows in have.items() if any(_stale(r, fmt, cfg.max_new_tokens, cfg.stop_on_loop) for r in rows)]
    if not stale:
        return 0
    old = out / SUPERSEDED_FILE
    seen = {(r.get("gen_key"), r.get("sample_index")) for r in read_jsonl(old, resumable=True)} if old.exists() else set()
    with JsonlAppender(old) as app:  # first kept aside, then dropped: an interruption loses nothing
        for k in stale:
            for r in have[k]:
                if (r.get("gen_key"), r.get("sample_index")) not in seen:
                    app.append({**r, "superseded_because": "stop rule 1: cut at a later section's header "
                                "before its code section was closed"})
    drop = set(stale)
    for name in ("generations.jsonl", "token_nll.jsonl"):  # a superseded answer's per-token NLL goes too
        if (out / name).exists():
            write_jsonl(out / name, [r for r in read_jsonl(out / name, resumable=True) if r.get("gen_key") not in drop])
    n = sum(len(have.pop(k)) for k in stale)
    if console is not None:
        console.print(f"stop rule: {n} answer(s) of {len(stale)} prompt(s) were (or, not recorded, may have been) cut "
                      f"at a later section's header before their code by stop rule 1; set aside in {SUPERSEDED_FILE} "
                      "and asked again")
    return n


def superseded_count(out: Path) -> int:
    """Rows set aside so far (every call's)."""
    old = out / SUPERSEDED_FILE
    return sum(1 for _ in read_jsonl(old, resumable=True)) if old.exists() else 0
