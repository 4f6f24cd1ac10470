"""The stages a recipe runs, registered in order: the runner's sequence is this registry.

A :class:`Stage` has a scope: ``run`` stages run once, before the arms (data, teach, the budget
guard); ``arm`` stages run for each arm whose kind lists them (``ArmSpec.stages``: train, eval);
``end`` stages run once at the end, whatever stopped the arms (report). A failing arm stops only
itself and the arms that use its adapter; a failing run stage marked ``fatal=False`` (one that
feeds some arms: hsft, reer, select, elad, correct) only the arms that train on its output (see
:meth:`codistill.recipe.runner._Runner.run_stages`). Each stage's ``run``
builds its config from the recipe (:mod:`codistill.recipe.settings`), makes its key from the
config's ``key()`` and the output hashes of what it reads, and calls the library function behind
its verb inside ``runner.keyed(...)`` (skip when complete, resume, set aside when changed).
Its ``checks`` say which config validates which settings, so a recipe is checked before its
first stage runs. A new stage: its functions here and one :func:`register` call, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from codistill.correct import recipe as correct_stage
from codistill.pairs import recipe as pairs_stage
from codistill.select import recipe as select_stage
from codistill.teacher.reverse import recipe as reer_stage
from codistill.recipe.manifest import _file_hash, _hash, _now
from codistill.recipe.settings import _data_dict, _eval_dict, _student, _teach_dict, _train_dict
from codistill.recipe.spec import TrainedArm

if TYPE_CHECKING:
    from codistill.recipe.runner import _Runner

__all__ = ["Stage", "register", "stages", "stage_names", "Check", "data_config", "teach_config", "train_config",
           "eval_config"]

# (section named in messages, the config class, a thunk giving the settings it validates)
Check = tuple[str, type, Callable[[], dict]]


@dataclass(frozen=True)
class Stage:
    name: str  # its name in the manifest (arm stages: name:arm) and for --only
    scope: Literal["run", "arm", "end"]
    run: Callable[..., Any]  # run(runner) or, for an arm stage, run(runner, arm) -> its output hash
    checks: Callable[..., Iterable[Check]] | None = None  # checks(recipe) or checks(recipe, arm)
    needed: Callable[["_Runner"], bool] = lambda runner: True  # run stages: whether this run needs it
    selectable: bool = True  # a name --only takes
    # run stages: whether a failure stops the run (False: the stage only feeds some arms; the runner
    # records the failure, skips the arms that train on its output, and goes on with the others)
    fatal: bool = True
    needs: tuple[str, ...] = ()  # run stages: the run stages whose output it reads (skipped when one failed)


_REGISTRY: list[Stage] = []


def register(stage: Stage, before: str | None = None) -> Stage:
    """Add ``stage`` at the end of the sequence, or before the stage named ``before``."""
    if any(s.name == stage.name for s in _REGISTRY):
        raise ValueError(f"a stage named {stage.name!r} is registered already")
    at = next((i for i, s in enumerate(_REGISTRY) if s.name == before), len(_REGISTRY)) if before else len(_REGISTRY)
    _REGISTRY.insert(at, stage)
    return stage


def stages(scope: str | None = None) -> list[Stage]:
    return [s for s in _REGISTRY if scope is None or s.scope == scope]


def stage_names() -> tuple[str, ...]:
    """The stages --only takes, in order."""
    return tuple(s.name for s in _REGISTRY if s.selectable)


class _Paused(Exception):
    """Training ended before its last step (stop_at_step): the recipe continues on the next run."""


# ------------------------------------------------------------------------------------------ data


def data_config(recipe, run: Path):
    """The data stage's config and key."""
    from codistill.data.prepare import PrepareConfig

    cfg = PrepareConfig.model_validate(_data_dict(recipe, run / "data"))
    return cfg, _hash(["data", cfg.key()])


def _data(r: "_Runner") -> str:
    from codistill.data.prepare import prepare_dataset

    folder = r.run / "data"
    cfg, key = data_config(r.recipe, r.run)

    def go():
        m = prepare_dataset(cfg)
        return {"rows": m["counts"]["rows"], "problems": m["counts"]["problems"]}

    return r.keyed("data", key, folder, go, lambda: _file_hash(folder / "rows.jsonl", folder / "problems.jsonl"))


def _data_checks(recipe) -> Iterable[Check]:
    from codistill.data.prepare import PrepareConfig

    yield "data", PrepareConfig, lambda: _data_dict(recipe, Path("x"))


# ------------------------------------------------------------------------------------------ teach


def teach_config(recipe, run: Path, data_hash: str | None):
    """The teach stage's config, key, and whether the runner serves the teacher itself."""
    from codistill.teacher import TeachConfig

    base, serve = _teach_dict(recipe, run)
    cfg = TeachConfig.model_validate(base)
    return cfg, _hash(["teach", cfg.key(), data_hash]), serve


def _teach(r: "_Runner") -> str:
    from codistill.teacher.teach import incomplete_error, teach

    rec = r.recipe
    folder = r.run / "teach"
    cfg, key, serve = teach_config(rec, r.run, r.hashes["data"])

    def go():
        from codistill.recipe.teacher import with_teacher

        m = with_teacher(r, serve, cfg, teach)
        # rows left to do (teacher errors) keep the stage from completing: the next run asks them again
        err = incomplete_error(m, "the same `codistill run` command")
        if err is not None:
            raise err
        c = m.get("counts", {})
        if not c.get("train_rows"):
            raise RuntimeError(f"the teach stage produced no training rows ({json.dumps(c)}); see {folder}")
        return {k: c.get(k) for k in ("rows", "valid", "invalid", "train_rows", "teacher_errors")}

    return r.keyed("teach", key, folder, go, lambda: _file_hash(folder / "train.jsonl"))


def _teach_checks(recipe) -> Iterable[Check]:
    from codistill.teacher import TeachConfig

    yield "teach", TeachConfig, lambda: _teach_dict(recipe, Path("x"))[0]


# ------------------------------------------------------------------------------------------ budget guard


def _check_budget(r: "_Runner") -> dict | None:
    """Before any arm is trained or judged: the eval budget against the training targets'
    lengths in the run's format (what the trainer will store with each adapter), so a budget
    too short for the trained arms stops the run now, not after hours of judging. The files are
    pooled into one 99th percentile, which lets a long-tailed arm through: each arm is checked again
    against its own record just before it trains (:func:`codistill.recipe.budget.check_arm_budget`)."""
    from codistill.formats import ProtocolError, required_budget

    rec = r.recipe
    uses = [a for a in r.arms if "format" in rec.protocols(a)]
    sft = [getattr(rec.arms[a], "start", a) for a in uses if rec.arms[a].trains()]  # a DPO arm: its start's
    files = dict.fromkeys(Path(train_file(rec, r.run, a)[0]) for a in sft)
    files = [f for f in (files or [r.run / "teach" / "train.jsonl"]) if f.is_file()]
    if not uses or not files:
        return None
    from transformers import AutoTokenizer

    from codistill.models import resolve_model
    from codistill.training.config import DataConfig
    from codistill.training.data import format_record, load_records

    dcfg = DataConfig.model_validate(_train_dict(rec, TrainedArm(), Path("x"), str(files[0]))["data"])
    tok = AutoTokenizer.from_pretrained(str(resolve_model(_student(rec))))
    result = format_record([x for f in files for x in load_records(f)], tok, dcfg)
    from codistill.evaluation.config import EvalConfig

    st = result["generation_tokens"]
    problems = []
    for arm in uses:
        ecfg = EvalConfig.model_validate(_eval_dict(rec, rec.arms[arm], None, "format"))
        need = required_budget(st, ecfg.budget_margin)
        if need is not None and ecfg.max_new_tokens < need and not ecfg.allow_short_budget:
            problems.append(f"{arm}: max_new_tokens={ecfg.max_new_tokens} < {need} (margin {ecfg.budget_margin})")
    if problems:
        raise ProtocolError(
            f"the eval budget is shorter than what the students are trained to write in format "
            f"{result['format']['name']!r}: 99th percentile of the training targets (up to where generation may "
            f"stop) = {st['p99']} tokens (median {st['p50']}, max {st['max']}); {'; '.join(problems)}. Raise "
            "eval.max_new_tokens (--set eval.max_new_tokens=N), or set eval.allow_short_budget: true to judge "
            "with the short budget on purpose (recorded)")
    return result


# ------------------------------------------------------------------------------------------ train


def train_file(recipe, run: Path, arm: str) -> tuple[str, str]:
    """(the training file of a trained ``arm``, the run stage whose output hash keys it): what its
    kind declares (``TrainedArm.train_source``: teach, correct or elad)."""
    from codistill.recipe.spec import ARM_KINDS

    rel, stage = ARM_KINDS[getattr(recipe.arms[arm], "kind", "trained")].train_source
    return str(run / rel.format(arm=arm)), stage.format(arm=arm)


def train_config(recipe, run: Path, arm: str, data_hash: str | None):
    """An arm's train config and key (the settings that change the update: TrainConfig.key);
    ``data_hash``: what keys its training file (the output hash of the stage that wrote it; a DPO
    arm's pairs and starting adapter: :func:`_train_data_hash`). A DPO arm gets DPO and its start
    arm's adapter beneath its own overrides (codistill.pairs.recipe.train_overrides)."""
    from codistill.overrides import deep_merge
    from codistill.training.config import TrainConfig

    path, _ = train_file(recipe, run, arm)
    d = _train_dict(recipe, recipe.arms[arm], run / "arms" / arm / "train", path)
    d = deep_merge(pairs_stage.train_overrides(recipe, run, arm), d)
    cfg = TrainConfig.model_validate(d)
    return cfg, _hash(["train", cfg.key(), data_hash])


def _train_data_hash(r: "_Runner", arm: str) -> str | None:
    if getattr(r.recipe.arms[arm], "kind", None) in pairs_stage.DPO_KINDS:
        return pairs_stage.train_data_hash(r, arm)
    return r.hashes.get(train_file(r.recipe, r.run, arm)[1])


def _train(r: "_Runner", arm: str) -> str:
    from codistill.training.trainer import train

    folder = r.run / "arms" / arm / "train"
    cfg, key = train_config(r.recipe, r.run, arm, _train_data_hash(r, arm))

    def go():
        from codistill.recipe.budget import check_arm_budget

        check_arm_budget(r, arm, cfg)  # this arm's own record against its evals, before any step
        s = train(cfg)
        if s.get("stopped_early") or not s.get("adapter_dir"):
            raise _Paused(f"arm {arm}: training stopped at step {s.get('steps')} of {s.get('total_steps')}")
        return {k: s.get(k) for k in ("steps", "total_steps", "dtype", "tokens_per_s", "peak_rss_gib", "wall_s")}

    adapter = folder / "adapter"
    out = r.keyed(f"train:{arm}", key, folder, go,
                  lambda: _file_hash(adapter / "adapter_config.json", adapter / "adapter_model.safetensors"))
    r.arm_hashes[arm]["adapter"] = out
    return out


def _train_checks(recipe, arm: str) -> Iterable[Check]:
    from codistill.training.config import TrainConfig

    spec = recipe.arms[arm]
    yield f"arms.{arm}.train", TrainConfig, lambda: _train_dict(recipe, spec, Path("x"), "x")


# ------------------------------------------------------------------------------------------ eval


def _eval(r: "_Runner", arm: str) -> None:
    rec = r.recipe
    for protocol in sorted(rec.protocols(arm), key=lambda p: p != rec.primary_protocol):
        _eval_protocol(r, arm, r.arm_hashes[arm].get("adapter"), protocol)


def _adapter_of(run: Path, arm: str) -> str:
    return str(run / "arms" / arm / "train" / "adapter")


def _role(recipe, run: Path, value: str) -> tuple[str, str | None]:
    """A pipeline arm's ``reasoner`` / ``coder`` as (model, adapter)."""
    from codistill.evaluation.config import split_model_spec

    if value == "student":
        return _student(recipe), None
    if value == "teacher":
        return recipe.serve.model, None
    if value.startswith("arm:"):
        return _student(recipe), _adapter_of(run, value[4:])
    return split_model_spec(value)


def _pipeline_dict(recipe, run: Path, spec, protocol: str) -> dict:
    """A pipeline arm's eval settings: the Coder as the eval's model, the Reasoner as MODEL[+ADAPTER]."""
    coder, coder_adapter = _role(recipe, run, spec.coder)
    reasoner, reasoner_adapter = _role(recipe, run, spec.reasoner)
    d = _eval_dict(recipe, spec, coder_adapter, protocol)
    d.update(model=coder, strategy="reasoner-coder", plans=spec.plans, codes_per_plan=spec.codes_per_plan,
             reasoner=reasoner + (f"+{reasoner_adapter}" if reasoner_adapter else ""))
    return d


def eval_config(recipe, run: Path, arm: str, protocol: str, adapter_hash: str | None,
                ref_hashes: dict[str, str | None] | None = None):
    """An arm's eval config under ``protocol``, its key and its compat key (the same generations:
    run_eval keeps those of a run whose benchmarks or limit change). A pipeline arm's key names its
    Reasoner and Coder as the recipe does (``arm:cd``, not a path) plus the adapters' hashes
    (``ref_hashes``: arm -> its adapter's output hash)."""
    from codistill.evaluation.config import EvalConfig

    spec = recipe.arms[arm]
    if spec.kind == "pipeline":
        cfg = EvalConfig.model_validate(_pipeline_dict(recipe, run, spec, protocol))
        ident = {"reasoner": spec.reasoner, "coder": spec.coder,
                 "adapters": {a: (ref_hashes or {}).get(a) for a in spec.arm_refs()}}
        key, compat = {**cfg.key(), **ident}, {**cfg.compat_key(), **ident}
        return cfg, _hash(["eval", key, None]), _hash(["eval", compat, None])
    adapter = _adapter_of(run, arm) if spec.trains() else None
    cfg = EvalConfig.model_validate(_eval_dict(recipe, spec, adapter, protocol))
    return cfg, _hash(["eval", cfg.key(), adapter_hash]), _hash(["eval", cfg.compat_key(), adapter_hash])


def _ref_hashes(r: "_Runner", arm: str) -> dict[str, str | None]:
    """The adapter hashes of the trained arms a pipeline arm uses: made in this call, or recorded
    complete in the manifest (a ValueError naming the arm to train first otherwise)."""
    out = {}
    for ref in getattr(r.recipe.arms[arm], "arm_refs", lambda: [])():
        h = (r.arm_hashes.get(ref) or {}).get("adapter")
        if h is None:
            rec = r.manifest.get(f"train:{ref}")
            h = rec.get("output_hash") if rec.get("status") == "complete" else None
        if h is None:
            raise ValueError(f"arm {arm!r} uses arm:{ref}, which is not trained yet: run the recipe with arm {ref!r} "
                             f"first (--arms {ref},{arm})")
        out[ref] = h
    return out


def _eval_protocol(r: "_Runner", arm: str, adapter_hash: str | None, protocol: str) -> str:
    from codistill.evaluation.run import run_eval

    primary = protocol == r.recipe.primary_protocol
    folder = r.run / "arms" / arm / ("eval" if primary else f"eval@{protocol}")
    cfg, key, compat = eval_config(r.recipe, r.run, arm, protocol, adapter_hash, _ref_hashes(r, arm))

    def go():
        res = run_eval(cfg, folder, progress=True)
        return {b: {"pass@1": (v.get("pass@k") or {}).get("pass@1"), "tasks": v.get("tasks")}
                for b, v in res.get("benchmarks", {}).items()}

    name = f"eval:{arm}" if primary else f"eval:{arm}@{protocol}"
    return r.keyed(name, key, folder, go, lambda: _file_hash(folder / "results.json"), compat=compat)


def _eval_checks(recipe, arm: str) -> Iterable[Check]:
    from codistill.evaluation.config import EvalConfig

    spec = recipe.arms[arm]
    # a trained arm is evaluated with its adapter: check the backend can apply one
    for protocol in recipe.protocols(arm):
        if spec.kind == "pipeline":
            yield f"arms.{arm}", EvalConfig, lambda protocol=protocol: _pipeline_dict(recipe, Path("x"), spec, protocol)
            continue
        yield (f"arms.{arm}.eval", EvalConfig,
               lambda protocol=protocol: _eval_dict(recipe, spec, "adapter" if spec.trains() else None, protocol))


# ------------------------------------------------------------------------------------------ report


def _report(r: "_Runner") -> dict | None:
    import time

    if not r.wanted("report"):
        return None
    from codistill.report.build import write_report

    r.console.rule("[bold]report")
    t0 = time.perf_counter()
    rep = write_report([r.run], out=r.run, baseline=r.recipe.report.baseline, title=r.recipe.report.title or r.recipe.name)
    r.manifest.set("report", status="complete", finished=_now(), wall_s=round(time.perf_counter() - t0, 1))
    return rep


# ------------------------------------------------------------------------------------------ the sequence

register(Stage("data", "run", _data, checks=_data_checks))
register(Stage("teach", "run", _teach, checks=_teach_checks,
               needed=lambda r: any(r.recipe.arms[a].trains() for a in r.arms)))
register(Stage("hsft", "run", pairs_stage.run_hsft, checks=pairs_stage.hsft_checks, needed=pairs_stage.needs_hsft,
               fatal=False))
register(Stage("reer", "run", reer_stage.run_reer, checks=reer_stage.reer_checks, needed=reer_stage.needed,
               fatal=False))
register(Stage("select", "run", select_stage.run_select, checks=select_stage.select_checks, needed=select_stage.needed,
               fatal=False))
register(Stage("elad", "run", select_stage.run_elad, needed=select_stage.needed, fatal=False, needs=("select",)))
register(Stage("correct", "run", correct_stage.run_correct, checks=correct_stage.correct_checks,
               needed=correct_stage.needed, fatal=False))
register(Stage("budget", "run", _check_budget, selectable=False,
               needed=lambda r: r.wanted("eval") or r.wanted("train")))
register(Stage("pairs", "arm", pairs_stage.run_pairs, checks=pairs_stage.pairs_checks))
register(Stage("train", "arm", _train, checks=_train_checks))
register(Stage("eval", "arm", _eval, checks=_eval_checks))
register(Stage("report", "end", _report))
