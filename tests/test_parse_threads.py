"""Python source is parsed one call at a time in codistill's process: CPython 3.11's AST
constructor keeps its recursion depth in interpreter-wide state, and two threads parsing at once
(the teacher's worker threads scoring leakage) failed with "SystemError: AST constructor
recursion depth mismatch" (python/cpython#106905) in this project's test suite."""

from __future__ import annotations

import ast
import threading
import time


def test_parsing_is_serialised_across_threads(monkeypatch):
    from codistill.evaluation.extract import _parses
    from codistill.metrics.leakage import leakage

    real, inside, most = ast.parse, [0], [0]
    lock = threading.Lock()

    def slow_parse(src, *a, **k):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)  # long enough for another thread to enter if nothing stops it
        try:
            return real(src, *a, **k)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(ast, "parse", slow_parse)
    code = "def f(xs):\n    return [x * 2 for x in xs if x]\n"

    def work():
        for _ in range(5):
            leakage(f"```python\n{code}```\nfor x in xs: keep(x)", code)
            _parses(code)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
