"""``codistill eval``: generate with a model, judge in the sandbox, compute the paper's metrics."""
