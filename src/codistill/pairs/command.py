"""``codistill pairs``: its flags are generated from :class:`~codistill.pairs.config.PairsConfig`
(``codistill.cli.config_flags``); this module runs the stage the way the command does."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["EPILOG", "run_command"]

EPILOG = ("Exit status: 0 every failure got its correction (a pair kept, or dropped); 1 none did in this run because "
          "every teacher call failed (or another error); 2 bad input or settings; 3 some failures got teacher errors. "
          "The same command resumes: stored attempts and corrections are kept, cached answers are reused.")


def run_command(cfg, out_dir: str | Path, resume: str = "the same `codistill pairs` command") -> dict:
    """Run the stage, print its summary as one JSON line, then raise
    :class:`~codistill.pairs.stage.PairsIncompleteError` when failures are left to do."""
    from codistill.pairs.stage import incomplete_error, make_pairs

    m = make_pairs(cfg, out_dir)
    print(json.dumps({"out": str(out_dir), "counts": m["counts"], "cost": m["cost"], "files": m["files"]},
                     default=str))
    err = incomplete_error(m, resume)
    if err is not None:
        raise err
    return m
