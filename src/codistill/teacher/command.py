"""What ``codistill teach`` runs, kept apart from the stage (:mod:`codistill.teacher.teach` parses no
arguments, and neither does this module).

The verb's flags are generated from :class:`TeachConfig` (:mod:`codistill.cli_flags`,
:mod:`codistill.cliargs`); :func:`run_command` runs the stage on the config they make, prints the
one-line JSON summary and raises :class:`TeachIncompleteError` (exit 1 or 3) when rows are left to do.
"""

from __future__ import annotations

import json

from codistill.teacher.config import TeachConfig

__all__ = ["run_command"]


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

