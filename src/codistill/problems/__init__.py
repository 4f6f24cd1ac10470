"""Problem schema and loaders. ``load_benchmark(name)`` is the entry point (imported lazily)."""

from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests

__all__ = ["AssertTests", "CallTests", "Problem", "StdioTests", "load_benchmark"]


def load_benchmark(name: str, data_dir=None, limit=None, **kw):
    """See :func:`codistill.problems.loaders.load_benchmark`."""
    from codistill.problems.loaders import load_benchmark as _load

    return _load(name, data_dir=data_dir, limit=limit, **kw)
