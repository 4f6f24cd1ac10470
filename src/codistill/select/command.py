"""The ``codistill select`` command, kept apart from the stage: :func:`run_command` runs it as the
verb does (progress lines on, the summary as one JSON line on stdout); :func:`main` parses an
``argv`` of its own (``--config FILE`` with a :class:`SelectConfig`, ``--out DIR`` and ``--set
KEY=VALUE`` overrides), for use before the verb is registered in :mod:`codistill.cli`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from codistill.select.config import SelectConfig

__all__ = ["main", "run_command", "summary"]


def summary(m: dict) -> dict:
    """The one-line summary of a manifest."""
    out = {"complete": m["complete"], "counts": m["counts"], "cost": {k: v for k, v in m["cost"].items() if k != "usage"},
           "scores": {k: v.get("mean") if isinstance(v, dict) else v for k, v in m["scores"].items()}}
    if "subsets" in m:
        out["subsets"] = {k: m["subsets"][k]["problems"] for k in ("selected", "random")}
        out["overlap"] = m["subsets"]["overlap"]
    return out


def run_command(cfg: SelectConfig | dict, out_dir: str | Path) -> dict:
    """Run the stage with progress lines; print its summary; return the manifest."""
    from codistill.select.run import select

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    m = select(cfg, out_dir)
    print(json.dumps(summary(m)))
    return m


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="codistill select", description="ELAD active selection of training problems "
                                 "by the student's uncertainty, with a random control at the same budget (resumable).")
    ap.add_argument("--config", help="YAML/JSON file with a SelectConfig")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a SelectConfig field (VALUE read as YAML), e.g. --set budget=0.5 (repeatable)")
    a = ap.parse_args(argv)
    import yaml

    data = yaml.safe_load(Path(a.config).read_text()) if a.config else {}
    if not isinstance(data, dict):
        raise ValueError(f"{a.config}: a select config is a mapping of SelectConfig fields")
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: write KEY=VALUE")
        data[key.strip()] = yaml.safe_load(value)
    return run_command(SelectConfig.model_validate(data), a.out)
