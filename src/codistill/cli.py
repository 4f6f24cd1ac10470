"""The ``codistill`` command: a thin map from verbs to library functions.

Every verb is one call into the library (see the function each handler calls), so anything the
CLI does can be done from Python too. A verb with a config (data, teach, correct, select, train, eval,
judge, serve-teacher: :func:`config_flags`) has one flag per field of that config, generated when the
verb runs (:mod:`codistill.cliargs`), plus ``--config FILE`` and ``--set KEY.PATH=VALUE``; a field
added to the config is a flag with no edit here. Only flags named otherwise than their setting
(kept from earlier command lines) are aliases, in :mod:`codistill.cli_flags` with each verb's own
flags; the verbs (:data:`VERBS`), their handlers, the parser and :func:`main` are here.
``python -m codistill`` is this command too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codistill.cli_flags import (  # build_parser calls config_flags through this module (tests replace it)
    _CORRECT_EPILOG,
    _PAIRS_EPILOG,
    _TEACH_EPILOG,
    _correct_args,
    _data_args,
    _demo_args,
    _eval_args,
    _judge_args,
    _models_args,
    _pairs_args,
    _loops_args,
    _status_args,
    _report_args,
    _run_args,
    _select_args,
    config_flags,
)


def parse_config(verb: str, argv: list[str]):
    """The config ``codistill VERB ARGV`` would run with (its defaults < --config < flags < --set)."""
    from codistill.cliargs import config_from_args

    return config_from_args(build_parser([_verb_of([verb]) or verb]).parse_args([verb, *argv]))


def _config(args):
    from codistill.cliargs import config_from_args

    return config_from_args(args)


# ------------------------------------------------------------------------------------------
def cmd_judge(args) -> int:
    from codistill.commands import judge_files

    summary = judge_files(
        samples=Path(args.samples),
        out=Path(args.out),
        benchmark=args.benchmark,
        problems_file=Path(args.problems) if args.problems else None,
        data_dir=args.data_dir,
        config=_config(args),
        progress=not args.no_progress,
    )
    from codistill.report.tables import print_judge_summary

    print_judge_summary(summary)
    return 0


def cmd_demo(args) -> int:
    if args.references:
        from codistill.commands import demo

        return demo(data_dir=args.data_dir, config=_config(args), progress=not args.no_progress)
    from rich.console import Console

    from codistill.recipe import load_recipe, run_recipe

    console = Console(emoji=False)
    _log_to_console(console)
    console.print("[bold]codistill demo[/]: the whole loop (data → teach → train → eval → report) on the packaged "
                  "small models. [bold yellow]A smoke run: its numbers are not a result.[/] "
                  "(`codistill demo --references` judges the benchmarks' reference solutions instead.)")
    out = run_recipe(load_recipe("demo", data_dir=args.data_dir), out_dir=args.out, console=console)
    _print_run_end(console, out)
    return 0


def _print_run_end(console, out: dict) -> None:
    run = Path(out["run_dir"])
    if out.get("report"):
        from codistill.report.build import print_report

        print_report(out["report"], console=console)
    stages = out["manifest"]["stages"]
    done = sum(1 for v in stages.values() if v.get("status") == "complete")
    if out.get("report"):
        where = f"report: {run / 'report.html'} and {run / 'report.md'}"
    else:  # --only left the report out: say so rather than point at a file this call did not write
        where = f"report not rebuilt by this call (left out by --only); `codistill report {run}` builds it"
    console.print(f"{done}/{len(stages)} stages complete in {out['wall_s']:.0f} s; {where}")


def _log_to_console(console) -> None:
    """Stage progress lines (teach, data, train log through `logging`) shown with rich."""
    import logging

    from rich.logging import RichHandler

    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=console, show_path=False, markup=False))
    logging.getLogger("codistill").setLevel(logging.INFO)


def cmd_run(args) -> int:
    from rich.console import Console

    from codistill.recipe import load_recipe, run_recipe

    console = Console(emoji=False)
    _log_to_console(console)
    recipe = load_recipe(args.recipe, sets=args.set, data_dir=args.data_dir)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    arms = [a.strip() for a in args.arms.split(",")] if args.arms else None
    out = run_recipe(recipe, out_dir=args.out, only=only, arms=arms, console=console)
    _print_run_end(console, out)
    return 0


def cmd_benchmarks(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from codistill.problems.loaders import BENCHMARKS

    t = Table(title="benchmarks and problem sources")
    for col in ("name", "description", "licence"):
        t.add_column(col)
    for name, entry in BENCHMARKS.items():
        t.add_row(name, entry.description, entry.license)
    Console(emoji=False).print(t)
    return 0


def cmd_eval(args) -> int:
    from codistill.evaluation.run import run_eval
    from codistill.report.tables import print_eval_results

    results = run_eval(_config(args), args.out, progress=not args.no_progress)
    print_eval_results(results)
    return 0


def cmd_train(args) -> int:
    from codistill.training.trainer import train

    summary = train(_config(args))
    print(json.dumps({k: summary.get(k) for k in ("output_dir", "adapter_dir", "steps", "total_steps", "dtype",
                                                   "tokens_per_s", "peak_rss_gib", "wall_s", "resumed_from")}, default=str))
    return 0


def cmd_data(args) -> int:
    from codistill.data.prepare import prepare_dataset

    cfg = _config(args)
    _log_lines()
    m = prepare_dataset(cfg)
    print(json.dumps({"counts": m["counts"]["total"], "rows": m["counts"]["rows"], "skipped": m.get("skipped", False)}))
    return 0


def cmd_teach(args) -> int:
    from codistill.teacher.command import run_command  # runs the stage, prints its summary, raises if rows are left

    cfg = _config(args)
    _log_lines()
    run_command(cfg)
    return 0


def cmd_correct(args) -> int:
    from codistill.correct.command import run_command  # runs the stage, prints its summary, raises if failures are left

    cfg = _config(args)
    _log_lines()
    run_command(cfg, args.out)
    return 0


def cmd_pairs(args) -> int:
    from codistill.pairs.command import run_command  # runs the stage, prints its summary, raises if failures are left

    cfg = _config(args)
    _log_lines()
    run_command(cfg, args.out)
    return 0


def cmd_select(args) -> int:
    from codistill.select.command import run_command  # runs the stage, prints its summary

    cfg = _config(args)
    _log_lines()
    run_command(cfg, args.out, progress=not args.no_progress)
    return 0


def cmd_serve(args) -> int:
    import logging

    from codistill.serving import serve

    cfg = _config(args)
    logging.basicConfig(level=logging.INFO)
    serve(**cfg.model_dump())
    return 0


def _log_lines() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_models(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from codistill import models

    console = Console(emoji=False)
    if args.prepare:
        for name in args.prepare:
            spec = models.get_spec(name)
            if spec.fmt == "gguf":
                console.print(f"{name}: GGUF {models.gguf_path(name)}")
                if spec.role != "teacher":
                    console.print(f"{name}: HF folder {models.hf_path(name, dtype=args.dtype)}")
            else:
                console.print(f"{name}: {models.resolve_model(name)}")
    t = Table(title="packaged models (shared/MODELS.md)")
    for col in ("name", "role", "installed", "paths / install"):
        t.add_column(col)
    for m in models.list_models():
        where = "\n".join(f"{k}: {v}" for k, v in m["paths"].items()) or m["install"]
        t.add_row(m["name"], m["role"], "yes" if m["installed"] else "no", where)
    console.print(t)
    return 0


def cmd_report(args) -> int:
    from codistill.report.build import print_report, write_report

    report = write_report(args.run_dirs, out=args.out, baseline=args.baseline, title=args.title)
    print_report(report)
    return 0


def cmd_loops(args) -> int:
    from codistill.evaluation.loopsim import print_loop_stop, simulate_loop_stop

    print_loop_stop(simulate_loop_stop(args.eval_dir, data_dir=args.data_dir, workers=args.workers))
    print(f"written: {Path(args.eval_dir) / 'loop_stop.json'}")
    return 0


def cmd_status(args) -> int:
    import json

    from codistill.recipe.status import print_status, run_status

    status = run_status(args.run_dir)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return 0


# verb -> (help, its own flags, the function it runs, extra add_parser arguments); in --help order.
# A verb listed in config_flags() also gets one flag per setting of its config.
VERBS: dict[str, tuple[str, object, str, dict]] = {
    "judge": ("run samples (EvalPlus format) against a benchmark's tests in the sandbox", _judge_args, "cmd_judge", {}),
    "demo": ("the whole loop on the packaged small models in minutes (a smoke run); --references: judge the "
             "HumanEval(+) reference solutions instead", _demo_args, "cmd_demo", {}),
    "eval": ("generate with a model (optionally + LoRA adapter), judge, and score like the paper", _eval_args,
             "cmd_eval", {}),
    "train": ("LoRA fine-tuning with the token + structure-aware loss and its curriculum", None, "cmd_train", {}),
    "models": ("list the packaged models; --prepare assembles/converts them once", _models_args, "cmd_models", {}),
    "data": ("verified, decontaminated training set (token budget, sandbox check, augmentation)", _data_args,
             "cmd_data", {"description": "Prepare a verified, decontaminated training set."}),
    "teach": ("teacher bridging contexts: explain / solve / hierarchical", None, "cmd_teach",
              {"description": "Generate teacher contexts (resumable).", "epilog": _TEACH_EPILOG}),
    "correct": ("correction data (LEMA): the student's judged failures on the training problems, corrected by the "
                "teacher, kept if the correction passes; lema and corrected-only training sets", _correct_args,
                "cmd_correct", {"description": "Correction data from the student's mistakes (resumable).",
                                "epilog": _CORRECT_EPILOG}),
    "pairs": ("DPO pairs (SuperCorrect): the student's judged failures, the teacher's correction of the first "
              "wrong step (kept if the chosen answer passes); pairs.jsonl for `codistill train --dpo`", _pairs_args,
              "cmd_pairs", {"description": "Preference pairs from the student's mistakes (resumable).",
                            "epilog": _PAIRS_EPILOG}),
    "select": ("active selection (ELAD): the student's uncertainty per training problem (outcome clusters of k "
               "samples, step ablations); a budgeted subset by score and a random one as the control", _select_args,
               "cmd_select", {"description": "Select training problems by the student's uncertainty (resumable)."}),
    "serve-teacher": ("serve the packaged teacher GGUF on loopback (OpenAI-compatible)", None, "cmd_serve",
                      {"aliases": ["serve"], "description": "Run the teacher server in the foreground until "
                       "SIGINT/SIGTERM (python -m codistill.serving is the same)."}),
    "report": ("tables (pass@1, CodeBLEU, perplexity), paired significance and plots for the arms of runs: "
               "report.md, self-contained report.html, report.json", _report_args, "cmd_report", {}),
    "loops": ("what a loop stop (stop_on_loop) would have done to a judged eval made without it: answers cut, "
              "verdicts flipped (judged again), tokens saved; for a validation split", _loops_args, "cmd_loops", {}),
    "run": ("a whole experiment from one YAML recipe: data → teach → train (arms) → eval → report; resumes and "
            "re-runs only what changed", _run_args, "cmd_run", {}),
    "status": ("where a recipe run stands: each stage's status and wall time, how far an unfinished one got, "
               "and whether a process still works on it (read from the run's files)", _status_args, "cmd_status", {}),
    "benchmarks": ("list the benchmarks and problem sources codistill can load", None, "cmd_benchmarks", {}),
}


def _verb_of(argv: list[str]) -> str | None:
    """The verb of a command line (its first word that is not an option), aliases resolved."""
    word = next((a for a in argv if not a.startswith("-")), None)
    for verb, (_, _, _, extra) in VERBS.items():
        if word == verb or word in extra.get("aliases", ()):
            return verb
    return None


def build_parser(verbs=None) -> argparse.ArgumentParser:
    """The ``codistill`` parser. ``verbs``: the verbs whose flags are added (default: all); the
    others are listed with their help only (``main`` adds the flags of the verb it runs)."""
    from codistill import __version__

    parser = argparse.ArgumentParser(
        prog="codistill",
        description="Distil a teacher's reasoning into a small code model and judge it in a sandbox. "
        "Stages: data -> teach -> train -> eval -> report.")
    parser.add_argument("--version", action="version", version=f"codistill {__version__}")
    parser.add_argument("--verbose", "--debug", action="store_true",
                        help="print the traceback with an error (also CODISTILL_DEBUG=1); give it before the verb")
    sub = parser.add_subparsers(dest="verb", required=True)
    configs = config_flags()
    module = sys.modules[__name__]
    for verb, (text, own_args, func, extra) in VERBS.items():
        p = sub.add_parser(verb, help=text, **extra)
        if verbs is not None and verb not in verbs:
            continue
        if own_args is not None:
            own_args(p)
        if verb in configs:
            from codistill.cliargs import add_config_flags

            add_config_flags(p, configs[verb])
        p.set_defaults(func=getattr(module, func), verb=verb)
    return parser


def _report_error(verb: str, e: BaseException, verbose: bool) -> int:
    """One line on stderr for an error a user can act on (the traceback too with --verbose);
    the traceback for anything else (a bug). Returns the exit status."""
    import traceback

    from codistill.errors import describe

    if isinstance(e, KeyboardInterrupt):
        print(f"codistill {verb}: interrupted; finished work was kept (re-run the same command to resume)",
              file=sys.stderr)
        return 130
    known = describe(e)
    if known is None or verbose:
        traceback.print_exception(e, file=sys.stderr)
    if known is None:
        print(f"codistill {verb}: unexpected error (a bug?): {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    message, code = known
    print(f"codistill {verb}: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = os.environ.get("CODISTILL_DEBUG", "") not in ("", "0")
    while argv and argv[0] in ("--verbose", "--debug"):
        verbose = True
        argv.pop(0)
    verb = _verb_of(argv)
    parser = build_parser([verb] if verb else [])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BaseException as e:  # noqa: BLE001 - turned into one line + exit status
        if isinstance(e, SystemExit):
            raise
        return _report_error(args.verb, e, verbose or args.verbose)


if __name__ == "__main__":
    sys.exit(main())
