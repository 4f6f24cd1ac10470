"""A JSON encoding of plain Python values that keeps their exact types.

Used in two directions:
* the sandboxed child *encodes* what the untrusted function returned. Plain built-in types are
  encoded as they are; numpy values and instances of *subclasses* of plain types (Counter,
  namedtuple, IntEnum, a ``float`` subclass with a lying ``__eq__``) are reduced to their plain
  value using the base type's own methods, so no override runs; anything else (e.g. an object
  whose ``__eq__`` claims equality with everything) raises :class:`NotPlainValue` and the case
  fails;
* the trusted side *decodes* it into fresh built-in objects and compares them. JSON decoding
  never runs code, so nothing the untrusted process sends can act in the trusted one.

Encoding: JSON scalars and lists as themselves; everything else as ``{"__t": tag, "v": ...}``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from typing import Any

TAG = "__t"
_NUMBER_TYPES = {int, float, bool}
_INF = float("inf")


class NotPlainValue(TypeError):
    """A value whose type is not a plain built-in type."""


def encode(x: Any, _depth: int = 0) -> Any:
    """Encode a plain value; raise NotPlainValue for anything else (checked by exact type)."""
    if _depth > 200:
        raise NotPlainValue("value nested deeper than 200 levels")
    t = type(x)
    if t is int and x.bit_length() > 10_000:
        # beyond ~3000 digits: hex, which Python's int/str conversion limit does not apply to
        return {TAG: "int", "v": hex(x)}
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        if math.isfinite(x):
            return x
        return {TAG: "float", "v": repr(x)}
    if t is list:
        return list(x) if _scalars_as_they_are(x) else [encode(v, _depth + 1) for v in x]
    if t is tuple:
        return {TAG: "tuple", "v": list(x) if _scalars_as_they_are(x) else [encode(v, _depth + 1) for v in x]}
    if t is dict:
        return {TAG: "dict", "v": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        # Sorted by canonical JSON: a set of strings iterates in an order that depends on
        # PYTHONHASHSEED, so without this the same problem data hashed differently per process.
        items = sorted((encode(v, _depth + 1) for v in x), key=_dumps)
        return {TAG: t.__name__, "v": items}
    if t is complex:
        return {TAG: "complex", "v": [repr(x.real), repr(x.imag)]}
    if t is bytes:
        return {TAG: "bytes", "v": base64.b64encode(x).decode()}
    if t is _deque():
        return {TAG: "deque", "v": [encode(v, _depth + 1) for v in x]}
    mod = getattr(t, "__module__", "")
    if mod == "numpy" and _is_real_numpy_type(t):
        # numpy scalars/arrays: compare as the Python values they stand for (EvalPlus compares
        # numpy outputs with == against Python expectations, which this reproduces).
        return encode(x.tolist(), _depth + 1)
    for base, convert in _SUBCLASS_CONVERTERS:
        if issubclass(t, base):
            # A subclass of a plain type (Counter, OrderedDict, namedtuple, IntEnum, or a class
            # written to lie in __eq__): keep only the plain value, read with the *base* type's
            # own methods, so no override of the subclass runs.
            return encode(convert(x), _depth + 1)
    raise NotPlainValue(f"returned a value of type {t.__module__}.{t.__qualname__}, not a plain built-in type")


_AS_THEY_ARE = {str, type(None), bool}
_INT_LIMIT = 1 << 10_000  # ints from 10,000 bits on are encoded in hex (see encode)


def _scalars_as_they_are(x: list | tuple) -> bool:
    """Whether every item of ``x`` encodes as itself (strings, None, bools, ints under 10,000
    bits, finite floats), checked at C speed: ``encode`` then copies the list in one go."""
    types = set(map(type, x))
    if types <= _AS_THEY_ARE:
        return True
    if not types <= _NUMBER_TYPES:
        return False
    if float in types:
        try:
            if not math.isfinite(sum(x)):
                return False  # NaN or inf (or only a sum too large for a double)
        except OverflowError:  # an int too large for a double
            return False
    return int not in types or (-_INT_LIMIT < min(x) and max(x) < _INT_LIMIT)


def _deque():
    from collections import deque

    return deque


_SUBCLASS_CONVERTERS = (
    (int, int.__int__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes.__bytes__),
    (complex, complex.__complex__),
    (list, lambda x: list(list.__iter__(x))),
    (tuple, lambda x: tuple(tuple.__iter__(x))),
    (dict, lambda x: dict(dict.items(x))),
    (frozenset, lambda x: frozenset(frozenset.__iter__(x))),
    (set, lambda x: set(set.__iter__(x))),
)


def _is_real_numpy_type(t: type) -> bool:
    import sys

    np = sys.modules.get("numpy")
    if np is None:
        return False
    return getattr(np, t.__name__, None) is t and (t is np.ndarray or issubclass(t, np.generic))


def decode(x: Any) -> Any:
    """Inverse of :func:`encode`; builds fresh built-in objects only."""
    if isinstance(x, list):
        return list(x) if set(map(type, x)) <= _JSON_SCALARS else [decode(v) for v in x]
    if isinstance(x, dict):
        tag = x.get(TAG)
        v = x.get("v")
        if tag == "tuple":
            return tuple(v) if type(v) is list and set(map(type, v)) <= _JSON_SCALARS else tuple(decode(i) for i in v)
        if tag == "dict":
            return {_hashable(decode(k)): decode(val) for k, val in v}
        if tag == "set":
            return {_hashable(decode(i)) for i in v}
        if tag == "frozenset":
            return frozenset(_hashable(decode(i)) for i in v)
        if tag == "float":
            return float(v)
        if tag == "int":
            return int(v, 16)
        if tag == "complex":
            return complex(float(v[0]), float(v[1]))
        if tag == "bytes":
            return base64.b64decode(v)
        if tag == "deque":
            return _deque()(decode(i) for i in v)
        # A plain JSON object from a data file (no tag): keep it as a dict.
        return {k: decode(val) for k, val in x.items()}
    return x


_JSON_SCALARS = {str, int, float, bool, type(None)}  # what JSON decodes to, lists and dicts aside


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


# --------------------------------------------------------------------------------------------
# Digests of large outputs
# --------------------------------------------------------------------------------------------
DIGEST_KEY = "__digest"
DIGEST_THRESHOLD = 4096  # bytes of canonical JSON above which an output is sent as a digest


def _canon(x: Any) -> Any:
    """Canonical form of an *encoded* value: equal canonical forms <=> Python ``==``, provided
    neither side holds NaN, inf or a complex number (those are never digested).

    bool -> int (``True == 1``), integral float -> int (``2.0 == 2``, ``-0.0 == 0``), frozenset
    -> set (``{1} == frozenset({1})``), set elements and dict items sorted (order-insensitive
    equality). Other finite floats keep their shortest repr, which is unique per value, so equal
    text <=> equal floats. A string over 1,024 characters is ``{"__t": "s256", "v": sha256 of its
    UTF-8}`` (no JSON escaping of megabytes of text). A non-empty list (or tuple) of numbers that doubles hold exactly is
    ``{"__t": "f64", "v": sha256 of the doubles}`` instead (see :func:`_f64`). Digests stand for
    *exact* comparison only: the judge allows them only for cases EvalPlus compares with ``==``
    (see ``judge.digest_cases``).
    """
    if type(x) is bool:
        return int(x)
    if type(x) is str and len(x) > _LONG_STR:
        return _s256(x)
    if type(x) is float and x.is_integer():
        return int(x)  # 2.0 == 2; non-integral floats never equal an int
    if isinstance(x, list):
        return _canon_list(x)
    if isinstance(x, dict):
        tag, v = x.get(TAG), x.get("v")
        if tag in ("set", "frozenset"):
            items = [_canon(i) for i in v]
            return {TAG: "set", "v": sorted(items, key=_dumps)}
        if tag == "dict":
            items = [[_canon(k), _canon(val)] for k, val in v]
            return {TAG: "dict", "v": sorted(items, key=lambda kv: _dumps(kv[0]))}
        if tag == "tuple":
            return {TAG: "tuple", "v": _canon_list(v)}
        return x
    return x


_LONG_STR = 1024


def _s256(x: str) -> dict:
    return {TAG: "s256", "v": hashlib.sha256(x.encode("utf-8", "surrogatepass")).hexdigest()}


def _canon_list(x: list) -> Any:
    types = set(map(type, x))
    if x and types <= _NUMBER_TYPES:
        f64 = _f64(x, types)
        if f64 is not None:
            return {TAG: "f64", "v": f64}
    return [_canon(v) for v in x]


_NEG_ZERO = b"\x00" * 7 + b"\x80"  # -0.0 as a little-endian double


def _f64(x: list | tuple, types: set) -> str | None:
    """The sha256 of a non-empty sequence of ints, floats and bools (exact types, checked by the
    caller) as little-endian doubles, -0.0 written as 0.0; None when a double cannot hold one of
    them exactly (an int such as 2**53 + 1 or 10**400), when one is NaN. Raises
    :class:`_NotDigestible` for inf (encoded values never hold one: it is tagged).

    For such sequences ``a == b`` <=> equal doubles elementwise <=> equal bytes (0.0 aside, and
    -0.0 is rewritten): so this is as exact as the text of each number, at C speed (a list of a
    million floats: ~30 ms here, ~0.3 s as JSON text). A sequence it declines can equal no
    sequence it accepts (the number a double cannot hold equals no double), so both sides of a
    comparison always take the same form."""
    try:
        arr = array("d", x)
    except OverflowError:
        return None
    exact = None
    if int in types:
        exact = arr.tolist() == (x if type(x) is list else list(x))
        if not exact:
            return None  # an int no double equals (or NaN: nan != nan)
    if not math.isfinite(sum(arr)):  # NaN, inf, or only a sum too large for a double
        if not (exact or arr.tolist() == (x if type(x) is list else list(x))):
            return None  # NaN
        if _INF in arr or -_INF in arr:
            raise _NotDigestible
    if sys.byteorder != "little":
        arr.byteswap()
    data = arr.tobytes()
    pos = data.find(_NEG_ZERO)
    if pos >= 0:
        buf = bytearray(data)
        while pos >= 0:
            if pos % 8 == 0:
                buf[pos + 7] = 0
            pos = data.find(_NEG_ZERO, pos + 1)
        data = bytes(buf)
    return hashlib.sha256(data).hexdigest()


def _dumps(x: Any) -> str:
    import json

    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


def json_writer():
    """A function writing what ``json.dumps(x)`` writes for an encoded value (a tree: no circular
    check, which keeps no state between calls), without building an encoder per call (a third of
    the time for the small values of most test cases)."""
    import json
    from json import encoder

    if encoder.c_make_encoder is None:
        return json.dumps
    enc = encoder.c_make_encoder(None, json.JSONEncoder().default, encoder.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)
    return lambda x: "".join(enc(x, 0))


def holds_number(enc: Any) -> bool:
    """Whether an encoded value contains an int, bool, float or complex anywhere."""
    t = type(enc)
    if t is int or t is bool or t is float:
        return True
    if isinstance(enc, list):
        return any(holds_number(v) for v in enc)
    if isinstance(enc, dict):
        if enc.get(TAG) in ("int", "float", "complex"):
            return True
        return any(holds_number(v) for v in (enc.get("v", ()) if TAG in enc else enc.values()))
    return False


def digest(enc: Any) -> str:
    import hashlib

    return hashlib.sha256(_dumps(_canon(enc)).encode("utf-8", "surrogatepass")).hexdigest()


def maybe_digest(enc: Any, threshold: int = DIGEST_THRESHOLD) -> Any:
    """Replace a large encoded value by ``{"__digest": sha256, "n": size}``; values holding NaN,
    inf or complex numbers are kept (their ``==`` is not equality of canonical text)."""
    if isinstance(enc, (list, dict)) or (type(enc) is str and len(enc) > threshold):
        text = _dumps(enc)
        if len(text) > threshold and not has_nonfinite(enc):
            import hashlib

            return {DIGEST_KEY: hashlib.sha256(_dumps(_canon(enc)).encode("utf-8", "surrogatepass")).hexdigest(),
                    "n": len(text)}
    return enc


def is_digest(x: Any) -> bool:
    return isinstance(x, dict) and DIGEST_KEY in x


def has_nonfinite(enc: Any) -> bool:
    """Whether an encoded value holds NaN/inf (raw equality of encodings is then not ``==``)."""
    if isinstance(enc, list):
        return any(has_nonfinite(v) for v in enc)
    if isinstance(enc, dict):
        if enc.get(TAG) in ("float", "complex"):
            return True
        return any(has_nonfinite(v) for v in enc.values())
    return False


class _NotDigestible(Exception):
    """The value holds NaN, inf or a complex number: never digested (see :func:`_canon`)."""


def stream_digest(x: Any) -> dict | None:
    """``maybe_digest(encode(x))`` for a *large* value, without building ``encode(x)``, its
    canonical form or its JSON text.

    A list of 1.66M tuples of strings (MBPP+ ``Mbpp/255``, plus case 85) takes several GiB as an
    encoded tree plus JSON text, more than the sandbox's address-space limit; this walks the value
    once and feeds the canonical JSON into sha256 in chunks, holding only the sort keys of sets and
    dicts. The digest equals ``digest(encode(x))`` (tested on every value type), so a streamed
    candidate still matches an expected value digested the ordinary way.

    Returns None when ``x`` holds NaN, inf or a complex number (not digestible: compare it in
    full); raises :class:`NotPlainValue` as :func:`encode` would.
    """
    import hashlib

    h = hashlib.sha256()
    buf: list[str] = []
    size = 0

    def emit(s: str) -> None:
        nonlocal size
        buf.append(s)
        size += len(s)
        if len(buf) >= 4096:
            h.update("".join(buf).encode("utf-8", "surrogatepass"))
            buf.clear()

    try:
        _stream(x, emit, 0)
    except _NotDigestible:
        return None
    h.update("".join(buf).encode("utf-8", "surrogatepass"))
    return {DIGEST_KEY: h.hexdigest(), "n": size}


def _canon_text(x: Any, depth: int) -> str:
    parts: list[str] = []
    _stream(x, parts.append, depth)
    return "".join(parts)




_PLAIN_TYPES = {type(None), bool, int, float, str, list, tuple, dict, set, frozenset, complex}


def _seq_text(x: list | tuple, t: type, depth: int) -> str | None:
    """The canonical text of a list or tuple's items in one piece, when they allow it (numbers
    that doubles hold: :func:`_f64`; flat strings, ints, floats: :func:`_flat_text`; items of
    other types: their encoding, as :func:`encode` gives it); None: stream item by item."""
    types = set(map(type, x))
    if x and types <= _NUMBER_TYPES:
        f64 = _f64(x, types)
        if f64 is not None:
            return '{"%s":"f64","v":"%s"}' % (TAG, f64)
    if types <= _FLAT_TYPES:
        return _flat_text(x if t is list else list(x), types)
    if not types <= _PLAIN_TYPES:
        # numpy values, subclasses of plain types, ...: what they encode to decides (a list of
        # IntEnum members is a list of ints, and so f64 on the other side)
        enc = encode(list(x), depth)
        if has_nonfinite(enc):
            raise _NotDigestible
        return _dumps(_canon_list(enc))
    return None


_FLAT_TYPES = {str, int, float}


def _flat_text(x: list, types: set) -> str | None:
    """``_dumps(_canon(encode(x)))`` in one call of json's C encoder, for a flat list of strings
    (none over 1,024 characters), ints under 10,000 bits and non-integral finite floats (whose
    repr is their canonical text); None for anything else (streamed item by item)."""
    if types <= {str}:
        return None if x and max(map(len, x)) > _LONG_STR else _dumps(x)
    if types == {int}:  # ints a double cannot hold (else _f64 took them)
        return _dumps(x) if max(map(abs, x)) < _INT_LIMIT else None
    for v in x:  # a mix: rare, checked item by item
        t = type(v)
        if (t is str and len(v) > _LONG_STR) or (t is int and v.bit_length() > 10_000) or \
                (t is float and not (math.isfinite(v) and not v.is_integer())):
            return None
    return _dumps(x)


def _stream(x: Any, emit, depth: int) -> None:
    """Emit ``_dumps(_canon(encode(x)))`` piece by piece (mirrors encode → _canon → _dumps)."""
    if depth > 200:
        raise NotPlainValue("value nested deeper than 200 levels")
    t = type(x)
    if x is None:
        emit("null")
    elif t is bool:
        emit("1" if x else "0")
    elif t is int:
        emit(_dumps(encode(x)))  # small ints as digits, huge ones in their tagged hex form
    elif t is str:
        emit(_dumps(_s256(x) if len(x) > _LONG_STR else x))
    elif t is float:
        if not math.isfinite(x):
            raise _NotDigestible
        emit(str(int(x)) if x.is_integer() else _dumps(x))
    elif t is complex:
        raise _NotDigestible
    elif (t is list or t is tuple) and (flat := _seq_text(x, t, depth)) is not None:
        emit(('{"%s":"tuple","v":' % TAG + flat + "}") if t is tuple else flat)
    elif t is list or t is tuple:
        if t is tuple:
            emit('{"%s":"tuple","v":' % TAG)
        emit("[")
        for i, v in enumerate(x):
            if i:
                emit(",")
            _stream(v, emit, depth + 1)
        emit("]")
        if t is tuple:
            emit("}")
    elif t is set or t is frozenset:
        items = sorted(_canon_text(v, depth + 1) for v in x)
        emit('{"%s":"set","v":[' % TAG + ",".join(items) + "]}")
    elif t is dict:
        keys = sorted(((_canon_text(k, depth + 1), k) for k in x), key=lambda kk: kk[0])
        emit('{"%s":"dict","v":[' % TAG)
        for i, (ktext, k) in enumerate(keys):
            emit(("," if i else "") + "[" + ktext + ",")
            _stream(x[k], emit, depth + 1)
            emit("]")
        emit("]}")
    else:
        # bytes, deque, numpy values, subclasses of plain types: the ordinary path for this
        # subtree (it is rarely large); the float check keeps the contract of maybe_digest
        enc = encode(x, depth)
        if has_nonfinite(enc):
            raise _NotDigestible
        emit(_dumps(_canon(enc)))
