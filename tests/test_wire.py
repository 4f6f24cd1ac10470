"""Wire encoding (exact types), digests of large outputs, and the trusted comparison rules."""

from __future__ import annotations

import math

import pytest

from codistill.execution.compare import CaseComparer, stdout_matches
from codistill.execution.wire import NotPlainValue, decode, digest, encode, is_digest, maybe_digest


@pytest.mark.parametrize("value", [
    None, True, 0, -5, pytest.param(2**20000, id="bigint"), 1.5, "é\n", [1, [2, (3, 4)]], (1,), {1: "a", (2, 3): [4]},
    {1, 2}, frozenset({"x"}), b"\x00\xff", complex(1, -2), float("inf"), [], {},
])
def test_roundtrip_keeps_types(value):
    got = decode(encode(value))
    assert got == value and type(got) is type(value)


def test_nan_roundtrip():
    assert math.isnan(decode(encode(float("nan"))))


class AlwaysEqual:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("bad", [object(), AlwaysEqual(), [1, AlwaysEqual()], lambda: 1, iter([1])])
def test_non_plain_values_are_rejected(bad):
    with pytest.raises(NotPlainValue):
        encode(bad)


def test_subclasses_are_reduced_to_plain_values_without_running_overrides():
    from collections import Counter, OrderedDict, defaultdict, deque, namedtuple

    class Liar(float):
        def __eq__(self, other):
            return True

        def __float__(self):
            return 123.0

        def __repr__(self):
            return "999"

    got = decode(encode(Liar(0.5)))
    assert type(got) is float and got == 0.5
    class MyList(list):
        def __iter__(self):
            return iter([42])

    assert decode(encode(MyList([1, 2]))) == [1, 2]
    class I(int):
        def __int__(self):
            return 7

    assert decode(encode([1, I(3)])) == [1, 3]
    assert decode(encode(Counter("aab"))) == {"a": 2, "b": 1}
    assert type(decode(encode(OrderedDict(a=1)))) is dict
    assert decode(encode(defaultdict(int, {1: 2}))) == {1: 2}
    pt = namedtuple("Pt", "x y")(1, 2)
    assert decode(encode(pt)) == (1, 2) and type(decode(encode(pt))) is tuple
    assert decode(encode(deque([1, 2]))) == deque([1, 2])


def test_numpy_values_encode_as_python_values():
    np = pytest.importorskip("numpy")
    assert decode(encode(np.int64(3))) == 3
    assert decode(encode(np.array([1.5, 2.0]))) == [1.5, 2.0]


@pytest.mark.parametrize("a,b,equal", [
    ([True, 2], [1, 2], True),
    ([2.0, 3], [2, 3], True),
    ([2.5], [2], False),
    ({1, 2, 3}, {3, 2, 1}, True),
    ({1: "a", 2: "b"}, {2: "b", 1: "a"}, True),
    (frozenset({1}), {1}, True),
    ((1, 2), [1, 2], False),
    ("a" * 5000, "a" * 5000, True),
    ("a" * 5000, "a" * 4999 + "b", False),
    ([list(range(2000))], [list(range(2000))], True),
    ([list(range(2000))], [list(range(1999)) + [0]], False),
])
def test_digest_equality_matches_python_equality(a, b, equal):
    # the expected side (b) never holds non-integral floats when digests are used
    assert (a == b) is equal
    assert (digest(encode(a)) == digest(encode(b))) is equal


def test_maybe_digest_only_for_large_values_without_nan_inf_complex():
    small = encode([1, 2, 3])
    assert maybe_digest(small) == small
    big = encode(list(range(5000)))
    assert "__digest" in maybe_digest(big)
    big_floats = encode([0.5] * 5000)  # finite floats: digested (the judge allows it only for exact cases)
    assert is_digest(maybe_digest(big_floats))
    big_nan = encode([0.5] * 5000 + [float("nan")])
    assert maybe_digest(big_nan) == big_nan


def test_comparer_follows_evalplus_float_rules():
    cmp = CaseComparer(atol=0)
    assert cmp([], 0.30000000000000004, 0.3)  # atol becomes 1e-6 for float expectations
    assert cmp([], [1.0, 2.0000001], [1.0, 2.0])
    assert not cmp([], (1.0, 2.0), [1.0, 2.0])  # types differ
    assert not cmp([], [1.0], [1.0, 2.0])
    assert cmp([], 1, 1.0) and not CaseComparer(0)([], 1, 2)
    assert CaseComparer(0)([], True, 1)  # Python ==, as EvalPlus


def test_special_oracles():
    zero = CaseComparer(atol=1e-6, oracle="humaneval/find_zero")
    assert zero([[-6, 11, -6, 1]], 1.0, 999.0)  # a root is right whatever the reference found
    assert not zero([[-6, 11, -6, 1]], 1.5, 1.0)
    assert CaseComparer(0, "mbpp/similar_elements")([], [2, 1], [1, 2])
    assert CaseComparer(0, "mbpp/sum_div")([], 0, 7)
    assert not CaseComparer(0, "mbpp/sum_div")([], 3, 7)


def test_stdout_comparison():
    assert stdout_matches("1 2\n3\n\n", "1 2\n3")
    assert stdout_matches("1  2\r\n", "1 2")  # token fallback
    assert not stdout_matches("1 2\n", "1 3\n")


def test_stream_digest_equals_digest_of_encoding():
    """The streamed digest (no encoded tree, no JSON text) is the ordinary one, for every type."""
    import itertools
    from collections import Counter, OrderedDict, deque, namedtuple

    from codistill.execution.wire import _canon, _dumps, stream_digest

    P = namedtuple("P", "a b")
    values = [list(range(5000)), [("a", "b")] * 3000, "s" * 6000, [[[]]], (), [2 ** 40000, 1, "x"], ("y", -3),
              {3: [True, False], 1: (None, "x\u00e9\ud800"), "k": {frozenset({1, 2}), frozenset({0})}},
              [{1, 2, True}, {"z": 1, "a": 2}, 2 ** 40000, -5, b"by\x00tes", deque([1, True]),
               Counter("abcab"), P(1, "q"), OrderedDict(b=1, a=2)],
              list(itertools.combinations_with_replacement("abc", 6))]
    for v in values:
        s = stream_digest(v)
        assert s["__digest"] == digest(encode(v)), v if len(repr(v)) < 200 else type(v)
        assert s["n"] == len(_dumps(_canon(encode(v))))
    # finite floats are digested too (integral ones as ints, as _canon does: 2.0 == 2, -0.0 == 0)
    floats = [(0.5, 2.0, -0.0, 1e300, 7), [1.25, 3], {"k": 0.1}, 2.5, [0.1 * i for i in range(50)]]
    for v in floats:
        assert stream_digest(v)["__digest"] == digest(encode(v)), v
    assert stream_digest([(2.0, 0.0)] * 20)["__digest"] == stream_digest([(2, 0)] * 20)["__digest"]
    assert stream_digest([(0.1, 0.2)] * 20)["__digest"] != stream_digest([(0.1, 0.30000000000000004)] * 20)["__digest"]
    # NaN, inf and complex are not (their == is not equality of text)
    for v in ([1.0, float("nan")], [(1.5, float("inf"))], [1, {2: 3j}]):
        assert stream_digest(v) is None
        assert not is_digest(maybe_digest(encode(v * 3000)))
    # a different value gives a different digest
    assert stream_digest([("a", "b")] * 3000)["__digest"] != stream_digest([("a", "c")] * 3000)["__digest"]
    with pytest.raises(NotPlainValue):
        stream_digest([object()])


def test_number_lists_digest_as_doubles_exactly_as_equality():
    """Lists of numbers that doubles hold are digested as their doubles (wire._f64): equal digests
    exactly when the lists are ==, whichever path (streamed in the child, from the encoding in the
    judge) made them."""
    from codistill.execution.wire import _canon, stream_digest

    def d(v):
        s = stream_digest(v)
        assert s is not None and s["__digest"] == digest(encode(v)), v
        return s["__digest"]

    tri = [1, 3] + [1 + i / 2 if i % 2 == 0 else 0.5 * i * i for i in range(2, 3000)]
    assert _canon(encode(tri))["__t"] == "f64"
    assert d(tri) == d([float(v) for v in tri]) != d([float(v) for v in tri[:-1]])
    assert d([-0.0, 2.0, True]) == d([0, 2, 1]) == d([0.0, 2, 1.0])
    assert d([1e308, 1e308, 0.5]) != d([1e308, 1e308, 0.25])  # a sum that overflows is no NaN
    assert d([0.1, 0.2]) != d([0.1, 0.30000000000000004]) and d([1, 2]) != d([2, 1]) and d([1]) != d([1, 1])
    assert d((1, 2.0)) == d((1.0, 2)) != d([1, 2])  # a tuple is no list
    # ints no double holds stay text, and equal no double: 2**53 + 1 != 2.0**53
    assert d([2 ** 53 + 1, 0.5]) != d([2.0 ** 53, 0.5]) and d([2 ** 53, 0.5]) == d([2.0 ** 53, 0.5])
    assert d([2 ** 1100, 1]) == d([2 ** 1100, 1.0]) and d([10 ** 400]) != d([1e300])
    assert stream_digest([1.0, float("nan")]) is None and stream_digest([2, float("-inf")]) is None
    assert d([]) == d([]) != d(())


def test_long_strings_digest_as_their_utf8():
    """Strings over 1,024 characters are hashed as UTF-8 (wire._s256), streamed or not, alone, in
    lists, as dict keys and set items; equal digests exactly when the strings are equal."""
    from codistill.execution.wire import stream_digest

    long = "0 1 2 " * 400
    values = [long, [long, "x"], (long,), {long: [long, 1]}, {long, "t"}, ["\ud800" * 1100], ["é" * 1024, "é" * 1025]]
    for v in values:
        assert stream_digest(v)["__digest"] == digest(encode(v)), type(v)
    assert stream_digest(long)["__digest"] != stream_digest(long + " ")["__digest"]
    assert stream_digest([long, "b"])["__digest"] != stream_digest([long, "c"])["__digest"]
    assert stream_digest({long: 1, "a": 2})["__digest"] == stream_digest({"a": 2, long: 1})["__digest"]


def test_digest_cases_follow_evalplus_tolerance_switch():
    """A float expected value turns EvalPlus's tolerance on for the rest of the suite; after it only
    number-free values may be digested (numbers then compare with np.allclose, not ==)."""
    from codistill.execution.judge import digest_cases
    from codistill.execution.wire import holds_number

    big_ints = encode(list(range(5000)))
    strings = encode([("a", "b")] * 3)
    nested_floats = encode([(0.5, 1.5)] * 3)  # EvalPlus: not is_floats, compared with ==
    nan = encode([1, float("nan")])  # never digested
    expected = [big_ints, strings, None, nested_floats, nan, encode((0.5, 1.5)), big_ints, strings, nested_floats,
                maybe_digest(big_ints)]
    assert digest_cases(expected) == [0, 1, 3, 7, 9]
    assert digest_cases(expected, atol=1e-6) == [1, 7, 9]  # a task's own atol: tolerant from the start
    assert digest_cases([encode([0.5, 1])]) == [0]  # a mixed list is not is_floats
    assert holds_number(encode([(1,)])) and holds_number(encode({"k": True})) and holds_number(encode(2 ** 40000))
    assert not holds_number(encode([("a", None), {"x": "y"}, b"z"]))


def test_set_encoding_does_not_depend_on_the_hash_seed():
    """Sets of strings iterate in a PYTHONHASHSEED-dependent order; their encoding (and so the
    data hash of a benchmark with set-valued inputs, e.g. MBPP+ Mbpp/115) must not."""
    import os
    import subprocess
    import sys

    code = ("import json; from codistill.execution.wire import encode; "
            "print(json.dumps(encode([{'', 'e', 'gA', 'not', 'EnIODji', 'ML', 'a'}, "
            "frozenset({('x', 'y'), ('b',), 'q'}), {1: {'k', 'j', 'zz'}}])))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
            for seed in range(6)}
    assert len(outs) == 1
    enc = encode({"b", "a", "c"})
    assert enc["v"] == ["a", "b", "c"] and decode(enc) == {"a", "b", "c"}
