"""``codistill report``: one report over the arms of one or more runs.

:func:`write_report` runs the stages, each a module of this package:

1. :mod:`~codistill.report.load` -- find the arms behind the inputs (recipe run, arm or eval run
   directories, optionally ``LABEL=DIR``) and read their files;
2. :mod:`~codistill.report.compute` -- the report as data (tables, paired statistics, checks,
   provenance): the dict returned and written as ``report.json``;
3. :mod:`~codistill.report.plots` -- ``plots/*.png`` (matplotlib);
4. :mod:`~codistill.report.sections` and :mod:`~codistill.report.render` -- the prose, rendered
   with the jinja2 templates of ``codistill/templates/report`` as ``report.md`` and a
   self-contained ``report.html`` (plots embedded as base64 PNG, inline CSS, no external references).

:func:`print_report` (:mod:`~codistill.report.terminal`) shows the main tables in the terminal.

Outputs in ``out`` (default: the first ``RUN_DIR``): ``report.md``, ``report.html``,
``report.json`` and ``plots/*.png``.

Importing this module is cheap: matplotlib, numpy and jinja2 are imported inside the functions
that use them.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from codistill.report.compute import SMOKE_MIN_TASKS, SMOKE_TEXT, Report, _jsonable, compute_report
from codistill.report.load import Arm, RunInfo, _rel, _split_spec, discover_arms
from codistill.report.terminal import print_report

__all__ = ["write_report", "print_report", "SMOKE_TEXT", "SMOKE_MIN_TASKS", "discover_arms", "Arm", "RunInfo"]


def write_report(run_dirs, out=None, baseline: str = "base", title: str | None = None, *,
                 plots: bool = True, n_boot: int = 10000, seed: int = 0,
                 generated: str | _dt.datetime | None = None, references: list[str] | None = None,
                 pairs: list[list[str]] | None = None) -> Report:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``plots/*.png`` for the arms of ``run_dirs``.

    Args:
        run_dirs: recipe run dirs, arm dirs or eval run dirs (a str/Path or a list of them); an
            entry ``LABEL=DIR`` names the arm (eval run) or prefixes the arms (recipe run) with LABEL.
        out: output folder (default: the first run dir).
        baseline: the primary baseline arm (default ``base``; if absent, the first arm). Each arm is
            compared with the baseline's eval under the arm's own protocol (``base`` for the run's
            format, ``base@standard`` for the standard protocol; the primary one, with a note, when
            the baseline was not judged under it): :mod:`codistill.report.paired`.
            A Reasoner→Coder pipeline is compared with the direct arm that has its Coder instead.
        references: reference arms every trained arm is also compared with (recipe arm names);
            None: each recipe run's ``report.references`` (absent: ``[cd]`` when it has a trained arm
            ``cd``): :mod:`codistill.report.references`.
        pairs: named comparisons ``[[arm, reference], ...]``; None: each recipe run's ``report.pairs``.
        title: report title.
        plots: draw the PNG plots (needs matplotlib; skipped with a note when it is missing).
        n_boot, seed: paired bootstrap resamples and seed.
        generated: the report's "generated" time (a datetime, or the text to show); default: the
            ``SOURCE_DATE_EPOCH`` environment variable if set (reproducible output), else now.

    Returns:
        The report as a dict (also written as ``report.json``): ``arms``, ``baseline``, ``benchmarks``,
        ``table1`` (arm -> benchmark -> pass@1 cell), ``table3``, ``perplexity``, ``significance``
        (list of paired comparisons), ``smoke``, ``warnings``, ``missing``, ``notes``, ``provenance``,
        ``plots`` / ``skipped_plots`` and ``files`` (see :class:`~codistill.report.compute.Report`).
    """
    from codistill.report.plots import make_plots
    from codistill.report.render import render_html, render_markdown
    from codistill.report.sections import build_sections
    from codistill.store import atomic_write_json, atomic_write_text

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError("give at least one run directory")
    arms, runs = discover_arms(run_dirs)
    out_dir = Path(out) if out is not None else _split_spec(run_dirs[0])[1]
    out_dir.mkdir(parents=True, exist_ok=True)

    rep = compute_report(arms, runs, run_dirs, baseline=baseline, title=title, n_boot=n_boot, seed=seed,
                         generated=generated, references=references, pairs=pairs)

    if plots:
        made, skipped = make_plots(arms, runs, rep["benchmarks"], rep["table1"], out_dir / "plots", rep["arms"],
                                   rep.get("sweep"))
    else:
        made, skipped = {}, {"all": "plots=False"}
    rep["plots"] = {k: {**v, "path": _rel(Path(v["path"]), out_dir)} for k, v in made.items()}
    rep["skipped_plots"] = skipped

    secs = build_sections(rep, arms, runs, made)
    files = {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "json": out_dir / "report.json"}
    rep["files"] = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["markdown"], render_markdown(rep["title"], secs, out_dir))
    atomic_write_text(files["html"], render_html(rep["title"], secs))
    rep = _jsonable(rep)
    atomic_write_json(files["json"], rep)
    return rep
