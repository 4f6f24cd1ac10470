"""The recipe runner: the registered stages (:mod:`codistill.recipe.stages`) in their order, each
inside :meth:`_Runner.keyed` (skipped when complete with the same key, resumed by the stage when
interrupted, re-run with its old folder set aside when its key changed).

A failure stops only what depends on it (:meth:`_Runner.run_stages`): a failing arm is recorded
(its stage marked ``failed`` in the manifest with the error, a red line on the console) and the
other arms go on, except those that use its adapter (a DPO arm's ``start``, a pipeline arm's
``arm:<name>``), which are skipped with the reason; a run stage that only feeds some arms
(``Stage.fatal=False``) likewise. The report is still built; then the call raises: the one
failure's own error when there is one (the CLI prints it and exits with its status, as before),
:class:`ArmsFailed` naming them all when there are several. KeyboardInterrupt stops everything."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from codistill.recipe.load import _check_sections, load_recipe
from codistill.recipe.manifest import _Manifest, _now, _set_aside
from codistill.recipe.spec import Recipe
from codistill.recipe.stages import Stage, _Paused, stage_names, stages, train_file
from codistill.store import atomic_write_text

__all__ = ["run_recipe", "ArmsFailed"]


class _NotRun(Exception):
    """A stage left out with --only whose output a later stage needs."""


class ArmsFailed(RuntimeError):
    """Several arms (or run stages that feed arms) of one ``codistill run`` failed; the others ran
    and the report was built. ``failures``: (arm or None, stage, error); ``exit_code``: the status
    the failures' own errors give when they agree (codistill.errors.describe), else 1."""

    def __init__(self, message: str, failures: list[tuple[str | None, str, BaseException]], exit_code: int = 1):
        super().__init__(message)
        self.failures = failures
        self.exit_code = exit_code


@dataclass
class _Failure:
    arm: str | None  # None: a run stage
    stage: str  # its name in the manifest
    error: Exception

    def label(self) -> str:
        return f"arm {self.arm} at {self.stage}" if self.arm else f"run stage {self.stage}"


def _exit_code(e: BaseException) -> int:
    from codistill.errors import describe

    known = describe(e)
    return known[1] if known else 1


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
        self.failures: list[_Failure] = []
        self.skipped: dict[str, str] = {}  # arm or run stage -> why it was skipped
        self.paused: set[str] = set()  # arms whose training stopped before its last step
        self.failed_stage: str | None = None  # the stage keyed() saw fail last

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
        self.manifest.set(name, key=key, compat=compat, status="running", started=started,
                          folder=folder.relative_to(self.run).as_posix() if folder.is_relative_to(self.run) else str(folder))
        t0 = time.perf_counter()
        try:
            info = fn() or {}
        except BaseException as e:
            status = ("interrupted" if isinstance(e, KeyboardInterrupt) else
                      "paused" if isinstance(e, _Paused) else "failed")
            self.failed_stage = name
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
        """The registered stages in order: run stages, then each arm's stages, then end stages.
        A failure stops only what depends on it (see the module docstring); raises at the end
        when something failed."""
        try:
            for st in stages("run"):
                if st.needed(self):
                    self._run_stage(st)
            for arm in self.arms:
                self._run_arm(arm, out)
        except _NotRun as e:
            self.console.print(f"[yellow]stopped before {e}: it is not complete and --only leaves it out[/]")
        for st in stages("end"):
            if not self.failures:
                out[st.name] = st.run(self)
                continue
            try:  # the failures are what this call ends with; a report that cannot be built is said
                out[st.name] = st.run(self)
            except Exception as e:  # noqa: BLE001
                out[st.name] = None
                self.skipped[st.name] = f"it failed: {_one_line(e)}"
                self.console.print(f"[yellow]{st.name} not built: {_esc(_one_line(e))}[/]")
        self._finish(out)

    def _run_stage(self, st: Stage) -> None:
        gone = [n for n in st.needs if any(f.arm is None and f.stage == n for f in self.failures) or n in self.skipped]
        if gone:
            self._skip(st.name, f"it reads the output of run stage {gone[0]}, which did not complete in this call",
                       "run stage ")
            return
        self.failed_stage = None
        try:
            self.hashes[st.name] = st.run(self)
        except (_NotRun, _Paused):
            raise
        except Exception as e:
            if st.fatal:
                raise
            self._failed(None, st.name, e)

    def _run_arm(self, arm: str, out: dict) -> None:
        why = self._blocked(arm)
        if why:
            self._skip(arm, why, "arm ")
            return
        spec, st = self.recipe.arms[arm], None
        try:
            for st in stages("arm"):
                if st.name in spec.stages:
                    self.failed_stage = None
                    st.run(self, arm)
        except _NotRun as e:  # this arm stops here; the others go on
            if not self.wanted(str(e).split(":")[0]):
                self.console.print(f"[dim]{e}: left out by --only[/]")
            else:
                raise
        except _Paused as e:
            self.paused.add(arm)
            self.console.print(f"[yellow]{e}; run the same command again to continue[/]")
            out.setdefault("paused", []).append(str(e))
        except Exception as e:  # this arm stops here; the arms that do not use it go on
            self._failed(arm, self._stage_name(st, arm) if st else arm, e)

    def _stage_name(self, st: Stage, arm: str) -> str:
        """The manifest name of ``arm``'s stage ``st`` (eval: that of its first protocol, the primary
        one when the arm is judged under it; see stages._eval)."""
        if st.name != "eval":
            return f"{st.name}:{arm}"
        first = sorted(self.recipe.protocols(arm), key=lambda p: p != self.recipe.primary_protocol)[0]
        return f"eval:{arm}" if first == self.recipe.primary_protocol else f"eval:{arm}@{first}"

    def _blocked(self, arm: str) -> str | None:
        """Why ``arm`` cannot run in this call (None: it can): the run stage its training file comes
        from failed or was skipped, or an arm whose adapter it uses did not make one."""
        spec = self.recipe.arms[arm]
        if spec.trains():
            src = train_file(self.recipe, self.run, arm)[1]
            if any(f.arm is None and f.stage == src for f in self.failures) or src in self.skipped:
                return f"it trains on the output of run stage {src}, which did not complete in this call"
        for ref in getattr(spec, "arm_refs", lambda: [])():
            if (self.arm_hashes.get(ref) or {}).get("adapter"):
                continue  # trained (or found complete) in this call
            failed = next((f for f in self.failures if f.arm == ref), None)
            state = (f"failed at {failed.stage}" if failed else "was skipped" if ref in self.skipped
                     else "is paused (its training is not finished)" if ref in self.paused else None)
            if state:
                return f"it uses the adapter of arm {ref}, which {state}"
        return None

    def _skip(self, name: str, why: str, what: str = "") -> None:
        self.skipped[name] = why
        self.console.print(f"[yellow]{what}{name}: skipped: {_esc(why)}[/]")

    def _failed(self, arm: str | None, stage: str, e: Exception) -> None:
        """Record a failure: the stage's manifest entry says it (keyed() marks the stages it ran;
        one that failed before it began, e.g. on its settings, is marked here unless complete)."""
        import traceback

        from codistill.errors import describe

        if self.failed_stage is not None:
            stage = self.failed_stage
        elif self.manifest.get(stage).get("status") != "complete":
            self.manifest.set(stage, status="failed", error=f"{type(e).__name__}: {e}"[:500], finished=_now())
        f = _Failure(arm, stage, e)
        self.failures.append(f)
        if describe(e) is None:  # not an error a user can act on (a bug?): its traceback, now
            self.console.print("".join(traceback.format_exception(e)), markup=False, highlight=False)
        self.console.print(f"[bold red]✗ {f.label()} failed: {_esc(_one_line(e, 2000))}[/]")
        rest = "the arms that do not use it go on" if arm else "the arms that do not train on its output go on"
        self.console.print(f"[red]  recorded in run_manifest.json; {rest}[/]")

    def _finish(self, out: dict) -> None:
        """After the end stages: what failed or was skipped, in ``out`` and on the console; then
        the one failure's own error, or :class:`ArmsFailed` for several."""
        out["failed"] = [{"arm": f.arm, "stage": f.stage, "error": _one_line(f.error, 2000)} for f in self.failures]
        out["skipped"] = dict(self.skipped)
        if not self.failures:
            return
        report = ("the report was rebuilt" if out.get("report") else
                  "the report was not rebuilt (see above)" if "report" in self.skipped else "")
        resume = (f"The other arms ran{'; ' + report if report else ''}. Fix the cause and run the same command "
                  "again to resume: complete stages are skipped, the failed and skipped ones run")
        self.console.rule("[bold red]failed")
        for f in self.failures:
            self.console.print(f"[bold red]✗ {f.label()}[/]: {_esc(_one_line(f.error))}")
        for k, v in self.skipped.items():
            self.console.print(f"[yellow]– {k}: skipped: {_esc(v)}[/]")
        self.console.print(f"[bold]{_esc(resume)}.[/]")
        failed = "; ".join(f"{f.label()} ({_one_line(f.error)})" for f in self.failures)
        skipped = "; ".join(f"{k} ({v})" for k, v in self.skipped.items())
        summary = f"{len(self.failures)} failed: {failed}" + (f". Skipped: {skipped}" if skipped else "")
        summary += f". {resume}"
        if len(self.failures) == 1:  # its own error, so the CLI's line and exit status are those of old
            e = self.failures[0].error
            e.add_note(summary)
            raise e
        codes = {_exit_code(f.error) for f in self.failures}
        raise ArmsFailed(summary, [(f.arm, f.stage, f.error) for f in self.failures],
                         codes.pop() if len(codes) == 1 else 1) from self.failures[0].error


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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
