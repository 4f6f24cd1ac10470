"""Problem schema and loaders. ``load_benchmark(name)`` is the entry point."""

from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests

__all__ = ["AssertTests", "CallTests", "Problem", "StdioTests"]
