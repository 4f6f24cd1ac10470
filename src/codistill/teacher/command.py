"""The ``codistill teach`` command line, kept apart from the stage (:mod:`codistill.teacher.teach`
parses no arguments).

For the CLI: :func:`add_arguments` declares the verb's flags on a parser, :func:`config_from_options`
turns their values (and ``--config``) into a :class:`TeachConfig`, and :func:`run_command` runs the
stage, prints the one-line JSON summary and raises :class:`TeachIncompleteError` (exit 1 or 3) when
rows are left to do. :func:`main` does all three on an ``argv`` list: what ``codistill teach``
delegates to today (through ``codistill.teacher.teach.main``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from codistill.teacher.config import TeachConfig

__all__ = ["OPTIONS", "add_arguments", "build_parser", "config_from_options", "main", "run_command"]

# flag dest -> where it goes in a TeachConfig (None: a top-level field)
OPTIONS: dict[str, str | None] = {
    "out_dir": None, "mode": None, "dataset": None, "benchmark": None, "limit": None, "template": None,
    "max_attempts": None, "keep_passing": None, "leakage_threshold": None, "cache_dir": None, "order_seed": None,
    "backend": "teacher", "base_url": "teacher", "model": "teacher", "concurrency": "teacher",
    "timeout_s": "teacher", "max_retries": "teacher", "price_per_1k_prompt": "teacher",
    "price_per_1k_completion": "teacher",
    "max_new_tokens": "sampling", "temperature": "sampling",
}

DESCRIPTION = "Generate teacher contexts (resumable)."
EPILOG = ("Exit status: 0 every row finished; 1 no row finished because every teacher call failed (or "
          "another error); 2 bad input or settings; 3 some rows finished, others got teacher errors. "
          "Rows left to do are asked again by the same command.")


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``codistill teach`` (dests: ``config`` and the keys of :data:`OPTIONS`)."""
    from codistill.teacher.modes import MODE_REGISTRY

    ap.add_argument("--config", help="YAML/JSON file with a TeachConfig; flags override it")
    ap.add_argument("--out", dest="out_dir", help="run directory")
    ap.add_argument("--mode", choices=list(MODE_REGISTRY))
    ap.add_argument("--dataset", help="folder written by `codistill data`")
    ap.add_argument("--benchmark", help="or a benchmark name (e.g. leetcode for solve mode)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--template", help="your own template file")
    ap.add_argument("--backend", choices=["openai", "llamacpp"])
    ap.add_argument("--base-url")
    ap.add_argument("--model", help="teacher model name (server alias, or GGUF for llamacpp)")
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--timeout", type=float, dest="timeout_s",
                    help="seconds per teacher request (default 900: CPU teachers are slow)")
    ap.add_argument("--retries", type=int, dest="max_retries",
                    help="retries of a failed request, with exponential backoff (default 4); each is logged")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--max-attempts", type=int, help="teacher calls per problem at most (solve: k)")
    ap.add_argument("--keep-passing", type=int)
    ap.add_argument("--leakage-threshold", type=float)
    ap.add_argument("--cache-dir")
    ap.add_argument("--order-seed", type=int, help="process rows in a random order (outputs keep dataset order)")
    ap.add_argument("--price-per-1k-prompt", type=float)
    ap.add_argument("--price-per-1k-completion", type=float)
    return ap


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="codistill teach", description=DESCRIPTION, epilog=EPILOG))


def config_from_options(config: str | Path | None = None, **options) -> TeachConfig:
    """A :class:`TeachConfig` from a YAML/JSON file (``config``, optional) overridden by the
    options that are not None (names: :data:`OPTIONS`, the flags' dests)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"unknown teach option(s): {', '.join(sorted(unknown))}")
    data: dict = {}
    if config:
        import yaml

        data = yaml.safe_load(Path(config).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{config}: a teach config is a mapping of TeachConfig fields")
    data.update({k: v for k, v in options.items() if OPTIONS[k] is None and v is not None})
    for section in ("teacher", "sampling"):
        d = data.setdefault(section, {})
        d.update({k: v for k, v in options.items() if OPTIONS[k] == section and v is not None})
    return TeachConfig.model_validate(data)


def run_command(cfg: TeachConfig | dict, resume: str = "the same `codistill teach` command") -> dict:
    """Run the stage as ``codistill teach`` does: the manifest's summary as one JSON line on stdout,
    then :class:`TeachIncompleteError` when rows are left to do (``resume``: the command that
    continues). Returns the manifest."""
    from codistill.teacher.outputs import incomplete_error
    from codistill.teacher.teach import teach

    m = teach(cfg)
    print(json.dumps({"counts": m["counts"], "tokens": m["tokens"], "this_run": m["this_run"],
                      "leakage": m["leakage"]["final"]}))
    err = incomplete_error(m, resume)
    if err is not None:
        raise err
    return m


def main(argv: list[str] | None = None) -> dict:
    """``codistill teach ARGV``: parse, configure logging, run (see :func:`run_command`)."""
    a = vars(build_parser().parse_args(argv))
    cfg = config_from_options(**a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(cfg)
