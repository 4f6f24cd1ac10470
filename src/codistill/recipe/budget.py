"""The per-arm budget guard: before an arm trains, the token lengths its trainer will store with its
adapter (``codistill_format.json``) against every eval that will judge that adapter.

The run-scope ``budget`` stage (:func:`codistill.recipe.stages._check_budget`) pools the training
files that exist before any arm runs into one 99th percentile. Eval, though, checks each adapter
against its *own* record (:func:`codistill.formats.check_adapter`), and with a few hundred rows
an arm's 99th percentile is its longest or second-longest target: an arm can pass the pooled
check, train for hours and be refused at eval. :func:`check_arm_budget` closes that gap: it runs
in the arm's train stage just before ``train(cfg)``, computes the record exactly as the trainer
will (the arm's own :class:`~codistill.training.config.TrainConfig`, its objective's ``data()``:
``format_record`` for SFT, ``pairs_format_record`` for DPO, which keeps the start adapter's
lengths when longer), and refuses with a :class:`~codistill.formats.ProtocolError` naming the
arm, both numbers and the setting to change, before any checkpoint is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codistill.recipe.runner import _Runner

__all__ = ["adapter_evals", "arm_format_record", "check_arm_budget"]


def adapter_evals(r: "_Runner", arm: str) -> list[tuple[str, str, Any]]:
    """(arm judged, protocol, EvalConfig) of every eval of this call that will check ``arm``'s
    adapter's budget: the arm's own evals, and those of pipeline arms whose Coder is ``arm:<arm>``
    (eval checks an adapter's budget under the format protocol, or under another protocol when
    ``allow_format_mismatch`` lets it past the format check)."""
    from codistill.evaluation.config import EvalConfig
    from codistill.recipe.settings import _eval_dict
    from codistill.recipe.stages import _adapter_of, _pipeline_dict

    rec, out = r.recipe, []
    for judged in r.arms:
        spec = rec.arms[judged]
        pipeline = getattr(spec, "kind", None) == "pipeline"
        if not (judged == arm and spec.trains()) and not (pipeline and spec.coder == f"arm:{arm}"):
            continue
        for protocol in rec.protocols(judged):
            d = (_pipeline_dict(rec, r.run, spec, protocol) if pipeline
                 else _eval_dict(rec, spec, _adapter_of(r.run, arm), protocol))
            ecfg = EvalConfig.model_validate(d)
            if protocol == "format" or ecfg.allow_format_mismatch:
                out.append((judged, protocol, ecfg))
    return out


def arm_format_record(cfg) -> dict:
    """The ``codistill_format.json`` the trainer will write for ``cfg`` (a TrainConfig): its
    objective's own ``data()`` on the student's tokenizer, as ``train`` calls it."""
    from transformers import AutoTokenizer

    from codistill.models import resolve_model
    from codistill.training.objectives import make_objective

    tok = AutoTokenizer.from_pretrained(str(resolve_model(cfg.model)))
    if tok.pad_token_id is None:  # as the trainer's load_student
        tok.pad_token = tok.eos_token or tok.unk_token
    return make_objective(cfg).data(tok)[2]["format_record"]


def check_arm_budget(r: "_Runner", arm: str, cfg) -> dict | None:
    """Refuse (ProtocolError) to train ``arm`` when an eval of this call would refuse its adapter
    for a budget shorter than what it is trained to write; returns what was checked (None: no
    eval of this call checks the budget, e.g. every one sets allow_short_budget)."""
    from codistill.formats import ProtocolError, required_budget

    evals = [e for e in adapter_evals(r, arm) if not e[2].allow_short_budget]
    if not evals:
        return None
    record = arm_format_record(cfg)
    st = record.get("generation_tokens") or {}
    rec, problems, needs, raise_, allow = r.recipe, [], [], {}, {}
    for judged, protocol, ecfg in evals:
        need = required_budget(st, ecfg.budget_margin)
        needs.append(need or 0)
        if need is None or ecfg.max_new_tokens >= need:
            continue
        name = judged if protocol == rec.primary_protocol else f"{judged}@{protocol}"
        problems.append(f"eval {name}: max_new_tokens={ecfg.max_new_tokens} < {need} (p99 {st['p99']} + margin "
                        f"{ecfg.budget_margin})")
        own = rec.arms[judged].eval  # a setting the arm overrides is changed there
        key = f"arms.{judged}.eval.max_new_tokens" if "max_new_tokens" in own else "eval.max_new_tokens"
        raise_[key] = max(need, raise_.get(key, 0))
        allow[f"arms.{judged}.eval.allow_short_budget" if "allow_short_budget" in own
              else "eval.allow_short_budget"] = True
    checked = {"p99": st.get("p99"), "n": st.get("n"), "required": max(needs)}
    if problems:
        what = ("its pairs' chosen answers (or its start adapter's targets, when longer)"
                if record.get("objective") == "dpo" else "its own training targets")
        raise ProtocolError(
            f"arm {arm!r} not trained: its eval budget is shorter than what it would be trained to write in format "
            f"{record['format']['name']!r}: 99th percentile of {what} ({Path(cfg.data.train_file).name}, "
            f"{st['n']} targets, up to where generation may stop) = {st['p99']} tokens (median {st['p50']}, max "
            f"{st['max']}); {'; '.join(problems)}. Its adapter would be refused at eval, so it is not trained. Raise "
            f"{' and '.join(raise_)} ({' '.join(f'--set {k}={v}' for k, v in raise_.items())}), or set "
            f"{' and '.join(f'{k}: true' for k in allow)} to judge with the short budget on purpose (recorded)")
    return checked
