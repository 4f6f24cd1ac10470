"""Settings as nested mappings: ``--set KEY.PATH=VALUE`` overrides, deep merges and config files.

Shared by the recipe (``codistill run --set train.optim.lr=1e-4``) and by every verb's
``--config FILE`` / ``--set KEY=VALUE`` (:mod:`codistill.cliargs`). Ground floor: imports nothing
of codistill.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

__all__ = ["apply_sets", "deep_merge", "load_mapping", "parse_value", "set_path"]


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it (``1`` int, ``[a, b]`` list, ``null``, ``true``);
    ``5e-5`` (YAML 1.1 reads it as a string without a dot) is a float."""
    import yaml

    parsed = yaml.safe_load(text)
    if isinstance(parsed, str):
        try:
            parsed = float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf", "infinity") else parsed
        except ValueError:
            pass
    return parsed


def set_path(raw: dict, path: str, value: Any, what: str | None = None) -> None:
    """Set ``value`` at the dotted ``path`` of ``raw`` in place; intermediate mappings are created.
    ``what`` names the setting in an error (default: the path)."""
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"{what or path}: {k} is not a mapping in the recipe")
    node[keys[-1]] = value


def apply_sets(raw: dict, sets: list[str], example: str = "train.num_threads=1") -> dict:
    """``["train.num_threads=1", "eval.benchmarks=[humaneval]"]`` → ``raw`` with those values
    (YAML-parsed) set at the dotted paths; intermediate mappings are created. ``raw`` is not changed."""
    raw = copy.deepcopy(raw)
    for item in sets:
        path, sep, value = item.partition("=")
        path = path.strip()
        if not sep or not path:
            raise ValueError(f"--set {item!r}: write KEY.PATH=VALUE, e.g. {example}")
        set_path(raw, path, parse_value(value), what=f"--set {item!r}")
    return raw


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` onto ``base`` (copies): mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_mapping(path: str | Path, what: str = "a config") -> dict:
    """A YAML (.yaml/.yml, or anything not .json) or JSON file holding one mapping."""
    import json

    import yaml

    p = Path(path)
    text = p.read_text(encoding="utf-8")  # FileNotFoundError names the file
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{p}: {what} is a mapping of settings, got {type(data).__name__}")
    return data
