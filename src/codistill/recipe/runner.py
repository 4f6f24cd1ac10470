"""The recipe runner: the registered stages (:mod:`codistill.recipe.stages`) in their order, each
inside :meth:`_Runner.keyed` (skipped when complete with the same key, resumed by the stage when
interrupted, re-run with its old folder set aside when its key changed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from codistill.recipe.load import _check_sections, load_recipe
from codistill.recipe.manifest import _Manifest, _now, _set_aside
from codistill.recipe.spec import Recipe
from codistill.recipe.stages import _Paused, stage_names, stages
from codistill.store import atomic_write_text

__all__ = ["run_recipe"]


class _NotRun(Exception):
    """A stage left out with --only whose output a later stage needs."""


class _Runner:
    def __init__(self, recipe: Recipe, run: Path, console, only: set[str] | None, arms: list[str] | None):
        self.recipe, self.run, self.console = recipe, run, console
        self.manifest = _Manifest(run, recipe)
        self.only = only
        unknown = set(arms or []) - set(recipe.arms)
        if unknown:
            raise ValueError(f"unknown arm(s) {sorted(unknown)}; the recipe has {sorted(recipe.arms)}")
        self.arms = arms or list(recipe.default_arms or recipe.arms)
        self.hashes: dict[str, str | None] = {}  # run stage -> its output hash
        self.arm_hashes: dict[str, dict[str, str | None]] = {a: {} for a in self.arms}  # arm -> what its stages made

    def wanted(self, stage: str) -> bool:
        return self.only is None or stage in self.only

    def keyed(self, name: str, key: str, folder: Path, fn, output_hash, compat: str | None = None) -> str:
        """Run ``fn`` unless the stage is complete with this key; returns the stage's output hash.
        ``compat``: a second key; when only ``key`` changed but ``compat`` did not, the stage's
        folder is kept and the stage itself reuses what it can (eval: more benchmarks)."""
        rec = self.manifest.get(name)
        if rec.get("status") == "complete" and rec.get("key") == key:
            try:
                current = output_hash()
            except FileNotFoundError:
                current = None
            if current and current == rec.get("output_hash"):
                self.console.print(f"[dim]✓ {name}: complete (key {key[:10]}), skipped[/]")
                return current
            self.console.print(f"[yellow]{name}: output changed or missing since it completed: running it again[/]")
        elif rec.get("key") and rec.get("key") != key and not (compat and rec.get("compat") == compat):
            _set_aside(self.run, folder, "its inputs or settings changed")
        if not self.wanted(name.split(":")[0]):
            raise _NotRun(name)
        self.console.rule(f"[bold]{name}")
        started = _now()
        self.manifest.set(name, key=key, compat=compat, status="running", started=started)
        t0 = time.perf_counter()
        try:
            info = fn() or {}
        except BaseException as e:
            status = ("interrupted" if isinstance(e, KeyboardInterrupt) else
                      "paused" if isinstance(e, _Paused) else "failed")
            self.manifest.set(name, status=status,
                              error=f"{type(e).__name__}: {e}"[:500], wall_s=round(time.perf_counter() - t0, 1))
            raise
        out_hash = output_hash()
        prev = rec.get("wall_s_total", 0.0) if rec.get("key") == key else 0.0
        wall = round(time.perf_counter() - t0, 1)
        self.manifest.set(name, status="complete", output_hash=out_hash, finished=_now(), wall_s=wall,
                          wall_s_total=round(prev + wall, 1), info=info, error=None)
        return out_hash

    def run_stages(self, out: dict) -> None:
        """The registered stages in order: run stages, then each arm's stages, then end stages."""
        recipe, console = self.recipe, self.console
        try:
            for st in stages("run"):
                if st.needed(self):
                    self.hashes[st.name] = st.run(self)
            for arm in self.arms:
                spec = recipe.arms[arm]
                try:
                    for st in stages("arm"):
                        if st.name in spec.stages:
                            st.run(self, arm)
                except _NotRun as e:  # this arm stops here; the others go on
                    if not self.wanted(str(e).split(":")[0]):
                        console.print(f"[dim]{e}: left out by --only[/]")
                    else:
                        raise
                except _Paused as e:
                    console.print(f"[yellow]{e}; run the same command again to continue[/]")
                    out.setdefault("paused", []).append(str(e))
        except _NotRun as e:
            console.print(f"[yellow]stopped before {e}: it is not complete and --only leaves it out[/]")
        for st in stages("end"):
            out[st.name] = st.run(self)


def run_recipe(recipe: Recipe | str | os.PathLike, out_dir: str | os.PathLike | None = None,
               only: list[str] | None = None, arms: list[str] | None = None, console=None) -> dict:
    """Run (or resume) every stage of ``recipe``; returns the run manifest (+ the report's tables)."""
    from rich.console import Console

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    else:
        _check_sections(recipe, f"recipe {recipe.name!r}")
    console = console or Console(emoji=False)
    run = Path(out_dir or recipe.out_dir or Path("runs") / recipe.name)
    run.mkdir(parents=True, exist_ok=True)
    if only:
        bad = set(only) - set(stage_names())
        if bad:
            raise ValueError(f"--only: unknown stage(s) {sorted(bad)}; stages are {', '.join(stage_names())}")
    resolved = recipe.model_dump(mode="json")
    resolved["out_dir"] = str(run)
    import yaml

    atomic_write_text(run / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))
    runner = _Runner(recipe, run, console, set(only) if only else None, arms)
    banner = "[bold yellow]smoke run: the numbers it prints are not a result[/]" if recipe.smoke else ""
    console.print(f"[bold]codistill run[/] {recipe.name} → {run} (arms: {', '.join(runner.arms)}) {banner}")
    t0 = time.perf_counter()
    out: dict = {"run_dir": str(run)}
    runner.run_stages(out)
    out["manifest"] = runner.manifest.data
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out
