"""The ``codistill select`` command, kept apart from the stage: :func:`run_command` runs it as the
verb does (progress lines, the summary as one JSON line on stdout). The verb's flags are generated
from :class:`SelectConfig` by :mod:`codistill.cli`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from codistill.select.config import SelectConfig

__all__ = ["run_command", "summary"]


def summary(m: dict) -> dict:
    """The one-line summary of a manifest."""
    out = {"complete": m["complete"], "counts": m["counts"], "cost": {k: v for k, v in m["cost"].items() if k != "usage"},
           "scores": {k: v.get("mean") if isinstance(v, dict) else v for k, v in m["scores"].items()}}
    if "subsets" in m:
        out["subsets"] = {k: m["subsets"][k]["problems"] for k in ("selected", "random")}
        out["overlap"] = m["subsets"]["overlap"]
    return out


def run_command(cfg: SelectConfig | dict, out_dir: str | Path, progress: bool = True) -> dict:
    """Run the stage (``progress``: its progress lines); print its summary; return the manifest."""
    from codistill.select.run import select

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    m = select(cfg, out_dir, progress=progress)
    print(json.dumps(summary(m)))
    return m
