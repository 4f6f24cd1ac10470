"""``codistill correct``: its flags are generated from :class:`~codistill.correct.config.CorrectConfig`
(``codistill.cli.config_flags``); this module runs the stage the way the command does."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["EPILOG", "run_command"]

EPILOG = ("Exit status: 0 every failure got its correction (kept or dropped); 1 none did in this run because "
          "every teacher call failed (or another error); 2 bad input or settings; 3 some failures got teacher "
          "errors. The same command resumes: stored attempts and corrections are kept, cached answers are reused.")


def run_command(cfg, out_dir: str | Path, resume: str = "the same `codistill correct` command") -> dict:
    """Run the stage, print its summary as one JSON line, then raise
    :class:`~codistill.correct.stage.CorrectIncompleteError` when failures are left to do."""
    from codistill.correct.stage import correct, incomplete_error

    m = correct(cfg, out_dir)
    print(json.dumps({"out": str(out_dir), "counts": m["counts"], "cost": m["cost"], "mix": m["mix"],
                      "files": m["files"]}, default=str))
    err = incomplete_error(m, resume)
    if err is not None:
        raise err
    return m
