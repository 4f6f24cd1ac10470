"""Command-line flags generated from a pydantic config, at run time, from its fields.

Every top-level field of the config whose type is a scalar, a choice (``Literal``) or a list of
scalars gets a flag: ``max_new_tokens`` → ``--max-new-tokens N``; a bool gets ``--name`` and
``--no-name``; a list takes ``a,b,c`` (or YAML ``[a, b]``). The help text is the field's
description and its default, read from the config (defaults are written once, there). Nested
models and mappings have no flags of their own: ``--set KEY.PATH=VALUE`` reaches any setting
(values are YAML scalars, ``structure.enabled=false``, ``backend_options.n_parallel=8``).
``--config FILE`` reads a YAML/JSON mapping of the config (or a recipe's section of it).
Precedence: the config's defaults < ``--config`` < flags < ``--set``.

Flags whose names are not their settings' (kept from earlier command lines: ``--out`` for
``out_dir``, ``--base-url`` for ``teacher.base_url``, ``--no-structure``) are :class:`Alias`
entries of the verb's :class:`ConfigFlags`. A field added to a config later gets its flag with
no edit of the command line; one whose flag name is taken by the verb's own flags keeps ``--set``.
"""

from __future__ import annotations

import argparse
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from codistill.overrides import apply_sets, load_mapping, set_path

__all__ = ["Alias", "ConfigFlags", "add_config_flags", "config_from_args", "signature_model"]

_UNSET = object()


@dataclass(frozen=True)
class Alias:
    """A flag named otherwise than its setting, or handled otherwise than by the setting's type."""

    path: str  # the dotted setting it sets: "out_dir", "teacher.base_url"
    flags: tuple[str, ...]  # its names: ("--out",)
    help: str | None = None  # default: the setting's description
    const: Any = _UNSET  # a switch that sets this value (--no-structure: structure.enabled = False)
    parse: Callable[[str], Any] | None = None  # the text -> the value (default: by the setting's type)
    choices: tuple | None = None
    append: bool = False  # repeatable; ``apply`` gets the list
    apply: Callable[[dict, Any, argparse.Namespace], None] | None = None  # puts the value(s) into the settings
    metavar: str | None = None


@dataclass(frozen=True)
class ConfigFlags:
    """The flags of a verb: its config class (or ``"module:Name"``, imported when the verb is
    used; or a callable returning the class) and the aliases of earlier command lines."""

    model: Any
    aliases: tuple[Alias, ...] = ()
    section: str | None = None  # --config may be a recipe: this section of it is the config
    title: str | None = None  # the help group's title
    set_example: str = "KEY.PATH=VALUE"

    def load(self) -> type:
        m = self.model
        if isinstance(m, str):
            module, _, name = m.partition(":")
            return getattr(importlib.import_module(module), name)
        if isinstance(m, type):
            return m
        return m()


@dataclass
class _Flag:
    dest: str
    path: str
    alias: Alias | None = None
    kind: str = "value"  # value | const | custom
    parse: Callable[[Any], Any] | None = None


@dataclass
class _Bound:
    """What a parser's config flags map to (kept on the parser's namespace as ``_config_flags``)."""

    spec: ConfigFlags
    model: type
    flags: list[_Flag] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ types


def _unwrap(tp: Any) -> Any:
    """``T`` of ``T | None`` and of ``Annotated[T, ...]``; a union of several types as it is."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return Union[tuple(args)]
            tp = args[0]
        else:
            return tp


_SCALARS = (bool, int, float, str, Path)


def _kind(tp: Any) -> tuple[str, Any] | None:
    """How a setting of type ``tp`` is given as a flag: (kind, detail), or None (only --set)."""
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "bool", None
    if tp in (int, float):
        return "number", tp
    if tp in (str, Path) or (isinstance(tp, type) and issubclass(tp, (str, Path))):
        return "text", None
    if origin is Literal:
        return "choice", args
    if origin in (list, tuple, set, frozenset) and args and all(a is Ellipsis or _unwrap(a) in _SCALARS for a in args):
        return "list", None
    if origin in (Union, types.UnionType) and str in args:  # e.g. str | dict: the text form on the command line
        return "text", None
    return None


def _list_value(text: str) -> list:
    from codistill.overrides import parse_value

    text = text.strip()
    if text.startswith("["):
        value = parse_value(text)
        return value if isinstance(value, list) else [value]
    return [s.strip() for s in text.split(",") if s.strip()]


def _field_at(model: type, path: str):
    """The FieldInfo of the dotted ``path`` in ``model`` (through nested models), or None."""
    from pydantic import BaseModel

    fi = None
    for part in path.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        fi = model.model_fields[part]
        model = _unwrap(fi.annotation)
    return fi


def _default_text(fi) -> str | None:
    from pydantic_core import PydanticUndefined

    if fi.default_factory is not None:
        try:
            value = fi.default_factory()
        except TypeError:
            return None
        if not isinstance(value, (list, tuple, dict)):  # e.g. the CPU count: said by the description
            return None
    elif fi.default is PydanticUndefined:
        return "required"
    else:
        value = fi.default
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return f"default: {'yes' if value else 'no'}"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"default: {value}"


def _help(text: str | None, fi) -> str:
    parts = [text or (fi.description if fi is not None else None) or ""]
    default = _default_text(fi) if fi is not None else None
    if default:
        parts.append(f"({default})")
    return " ".join(p for p in parts if p).replace("%", "%%")  # argparse %-formats help


# ------------------------------------------------------------------------------------------ the flags


def _add(group, names: list[str], **kw) -> list[str]:
    """``add_argument`` with the names not taken already (by the verb's own flags); returns them."""
    taken = group._option_string_actions if hasattr(group, "_option_string_actions") else {}
    free = [n for n in names if n not in taken]
    if kw.get("action") is argparse.BooleanOptionalAction:
        free = [n for n in free if "--no-" + n[2:] not in taken]
    if free:
        group.add_argument(*free, **kw)
    return free


def add_config_flags(parser: argparse.ArgumentParser, spec: ConfigFlags) -> None:
    """``--config``, ``--set`` and one flag per field of the config (and per alias) on ``parser``."""
    model = spec.load()
    bound = _Bound(spec, model)
    title = spec.title or f"settings ({model.__name__}; any of them, nested ones too: --set KEY.PATH=VALUE)"
    g = parser.add_argument_group(title)
    g.add_argument("--config", metavar="FILE", dest="_config_file",
                   help=f"YAML/JSON file of {model.__name__} settings"
                   + (f" (or a recipe: its {spec.section} section)" if spec.section else "") + "; flags override it")
    g.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", dest="_config_sets", default=[],
                   help="set any setting, nested ones too (a YAML value; repeatable; wins over --config and flags)")
    by_path: dict[str, list[Alias]] = {}
    for a in spec.aliases:
        if a.const is _UNSET and not a.append and a.apply is None:
            by_path.setdefault(a.path, []).append(a)
    for name, fi in model.model_fields.items():
        kind = _kind(fi.annotation)
        aliases = by_path.pop(name, [])
        if kind is None and not aliases:
            continue
        names = [n for a in aliases for n in a.flags]
        generated = "--" + name.replace("_", "-")
        if generated not in names:
            names.append(generated)
        _value_flag(g, bound, name, fi, kind, names, aliases[0] if aliases else None)
    for path, aliases in by_path.items():  # aliases of nested settings: --base-url -> teacher.base_url
        fi = _field_at(model, path)
        _value_flag(g, bound, path, fi, _kind(fi.annotation) if fi is not None else None,
                    [n for a in aliases for n in a.flags], aliases[0])
    for a in spec.aliases:
        if a.const is not _UNSET:
            dest = f"_cfg:{a.path}:{a.flags[0]}"
            if _add(g, list(a.flags), dest=dest, action="store_const", const=a.const, default=None,
                    help=_help(a.help, None)):
                bound.flags.append(_Flag(dest, a.path, a, "const"))
        elif a.append or a.apply is not None:
            dest = f"_cfg:{a.path}:{a.flags[0]}"
            if _add(g, list(a.flags), dest=dest, action="append" if a.append else "store", default=None,
                    metavar=a.metavar, help=_help(a.help, _field_at(model, a.path))):
                bound.flags.append(_Flag(dest, a.path, a, "custom"))
    parser.set_defaults(_config_flags=bound)


def _value_flag(g, bound: _Bound, path: str, fi, kind, names: list[str], alias: Alias | None) -> None:
    dest = f"_cfg:{path}"
    text = alias.help if alias else None
    kw: dict[str, Any] = {"dest": dest, "default": None, "help": _help(text, fi)}
    parse = alias.parse if alias else None
    k, detail = kind or ("text", None)
    if alias and alias.choices:
        kw["choices"] = list(alias.choices)
    if parse is not None:
        kw["metavar"] = alias.metavar or path.rsplit(".", 1)[-1].upper()
    elif k == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif k == "number":
        kw["type"] = detail
        kw["metavar"] = "N" if detail is int else "X"
    elif k == "choice":
        kw["choices"] = list(detail)
        types_ = {type(c) for c in detail}
        if len(types_) == 1 and types_ != {str}:
            kw["type"] = types_.pop()
    elif k == "list":
        parse = _list_value
        kw["metavar"] = "A,B,..."
    elif "choices" not in kw:
        kw["metavar"] = (alias.metavar if alias and alias.metavar else path.rsplit(".", 1)[-1].upper())
    if _add(g, names, **kw):
        bound.flags.append(_Flag(dest, path, alias, "value", parse))


# ------------------------------------------------------------------------------------------ values


def config_from_args(args: argparse.Namespace):
    """The verb's config: its defaults < ``--config`` < the flags given < ``--set``."""
    bound: _Bound = args._config_flags
    model, spec = bound.model, bound.spec
    data: dict = {}
    if args._config_file:
        data = load_mapping(args._config_file, what=f"a {model.__name__} file")
        sec = spec.section
        if sec and isinstance(data.get(sec), dict) and sec not in model.model_fields:
            data = data[sec]  # a whole recipe: its section of this stage
    for f in bound.flags:
        value = getattr(args, f.dest, None)
        if value is None:
            continue
        if f.kind == "custom":
            f.alias.apply(data, value, args)
        else:
            set_path(data, f.path, f.parse(value) if f.parse else value)
    if args._config_sets:
        data = apply_sets(data, args._config_sets, example=spec.set_example)
    return model.model_validate(data)


def signature_model(fn: Callable, name: str, exclude: tuple[str, ...] = ()) -> type:
    """A pydantic model of ``fn``'s keyword parameters (types and defaults from the signature)."""
    import inspect

    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(fn)
    fields = {p.name: (hints.get(p.name, Any), ... if p.default is inspect.Parameter.empty else p.default)
              for p in inspect.signature(fn).parameters.values() if p.name not in exclude}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
