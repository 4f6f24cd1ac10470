"""A JSON encoding of plain Python values that keeps their exact types.

Used in two directions:
* the sandboxed child *encodes* what the untrusted function returned. Only values whose type is
  exactly one of the plain built-in types (or a numpy scalar/array, converted) are encodable;
  anything else -- notably an object whose ``__eq__`` claims equality with everything, or a
  ``float`` subclass -- raises :class:`NotPlainValue`, and the case fails;
* the trusted side *decodes* it into fresh built-in objects and compares them. JSON decoding
  never runs code, so nothing the untrusted process sends can act in the trusted one.

Encoding: JSON scalars and lists as themselves; everything else as ``{"__t": tag, "v": ...}``.
"""

from __future__ import annotations

import base64
import math
from typing import Any

TAG = "__t"


class NotPlainValue(TypeError):
    """A value whose type is not a plain built-in type."""


def encode(x: Any, _depth: int = 0) -> Any:
    """Encode a plain value; raise NotPlainValue for anything else (checked by exact type)."""
    if _depth > 200:
        raise NotPlainValue("value nested deeper than 200 levels")
    t = type(x)
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        if math.isfinite(x):
            return x
        return {TAG: "float", "v": repr(x)}
    if t is list:
        return [encode(v, _depth + 1) for v in x]
    if t is tuple:
        return {TAG: "tuple", "v": [encode(v, _depth + 1) for v in x]}
    if t is dict:
        return {TAG: "dict", "v": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        items = [encode(v, _depth + 1) for v in x]
        return {TAG: t.__name__, "v": items}
    if t is complex:
        return {TAG: "complex", "v": [repr(x.real), repr(x.imag)]}
    if t is bytes:
        return {TAG: "bytes", "v": base64.b64encode(x).decode()}
    mod = getattr(t, "__module__", "")
    if mod == "numpy" and _is_real_numpy_type(t):
        # numpy scalars/arrays: compare as the Python values they stand for (EvalPlus compares
        # numpy outputs with == against Python expectations, which this reproduces).
        return encode(x.tolist(), _depth + 1)
    raise NotPlainValue(f"returned a value of type {t.__module__}.{t.__qualname__}, not a plain built-in type")


def _is_real_numpy_type(t: type) -> bool:
    import sys

    np = sys.modules.get("numpy")
    if np is None:
        return False
    return getattr(np, t.__name__, None) is t and (t is np.ndarray or issubclass(t, np.generic))


def decode(x: Any) -> Any:
    """Inverse of :func:`encode`; builds fresh built-in objects only."""
    if isinstance(x, list):
        return [decode(v) for v in x]
    if isinstance(x, dict):
        tag = x.get(TAG)
        v = x.get("v")
        if tag == "tuple":
            return tuple(decode(i) for i in v)
        if tag == "dict":
            return {_hashable(decode(k)): decode(val) for k, val in v}
        if tag == "set":
            return {_hashable(decode(i)) for i in v}
        if tag == "frozenset":
            return frozenset(_hashable(decode(i)) for i in v)
        if tag == "float":
            return float(v)
        if tag == "complex":
            return complex(float(v[0]), float(v[1]))
        if tag == "bytes":
            return base64.b64decode(v)
        # A plain JSON object from a data file (no tag): keep it as a dict.
        return {k: decode(val) for k, val in x.items()}
    return x


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(i) for i in v)
    return v


def from_plain(x: Any) -> Any:
    """Wire-encode a value parsed from a JSON data file (dicts become tagged dicts)."""
    if isinstance(x, list):
        return [from_plain(v) for v in x]
    if isinstance(x, dict):
        return {TAG: "dict", "v": [[k, from_plain(v)] for k, v in x.items()]}
    if isinstance(x, float) and not math.isfinite(x):
        return {TAG: "float", "v": repr(x)}
    return x
