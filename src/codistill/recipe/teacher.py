"""The teacher for a recipe stage that asks one (teach, hsft, reer, correct, pairs, ELAD's claer):
the configured server, or the local llama.cpp teacher the runner starts for the stage
(``serve:``, when ``teach.teacher.base_url`` is null)."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["with_teacher"]


def with_teacher(r, serve: bool, cfg: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(cfg)``; when ``serve``, with the local teacher running and ``cfg.teacher.base_url`` its URL."""
    if not serve:
        return fn(cfg)
    from codistill.serving import start_server

    s = r.recipe.serve
    r.console.print(f"starting the local teacher ({s.model}, {s.n_parallel} slots)")
    with start_server(s.model, n_parallel=s.n_parallel, ctx=s.ctx, threads=s.threads, quiet=True) as srv:
        return fn(cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"base_url": srv.base_url})}))


def teach_stage(r, name: str, settings: dict, serve: bool) -> str:
    """A run stage that is a teach run of its own (``hsft``: mode hierarchical; ``reer``: mode
    reverse) into ``<run>/<name>``: keyed by its TeachConfig's key and the data hash; complete when
    every row has its answer and some training rows came out."""
    import json

    from codistill.recipe.manifest import _file_hash, _hash
    from codistill.teacher import TeachConfig
    from codistill.teacher.teach import incomplete_error, teach

    folder = r.run / name
    cfg = TeachConfig.model_validate(settings)
    key = _hash([name, cfg.key(), r.hashes.get("data")])

    def go() -> dict[str, Any]:
        m = with_teacher(r, serve, cfg, teach)
        err = incomplete_error(m, "the same `codistill run` command")
        if err is not None:
            raise err
        c = m.get("counts", {})
        if not c.get("train_rows"):
            raise RuntimeError(f"the {name} stage produced no training rows ({json.dumps(c)}); see {folder}")
        return {k: c.get(k) for k in ("rows", "valid", "invalid", "train_rows", "teacher_errors")} | {
            "teacher_tokens": m.get("tokens", {}).get("total")}

    return r.keyed(name, key, folder, go, lambda: _file_hash(folder / "train.jsonl"))
