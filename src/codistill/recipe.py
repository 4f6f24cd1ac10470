"""``codistill run recipe.yaml``: data → teach → train (every arm) → eval (every arm) → report.

A recipe is one YAML file (see ``recipes/``). Each stage is the library call behind its own verb
(``prepare_dataset``, ``teach``, ``train``, ``run_eval``, ``write_report``); the runner only
wires their artifacts together inside one run directory and keeps ``run_manifest.json``::

    RUN/recipe.yaml                 the recipe as resolved (defaults filled in)
    RUN/run_manifest.json           per stage: key, output hash, status, wall time, timestamps
    RUN/data/                       codistill data   (rows.jsonl, problems.jsonl, manifest.json)
    RUN/teach/                      codistill teach  (contexts.jsonl, train.jsonl, teach_manifest.json)
    RUN/arms/<arm>/train/           codistill train  (adapter/, checkpoints/, train_log.jsonl)
    RUN/arms/<arm>/eval/            codistill eval   (results.json, tasks.jsonl, per-benchmark samples)
    RUN/report.md, report.html      codistill report

Skipping and resuming. A stage's *key* is the hash of its own resolved settings and of the
*content hash* of what it reads (data rows → teach; training examples → train; the adapter's
weights → eval). A stage whose key and recorded output are unchanged is skipped; an interrupted
stage is resumed by the stage itself (teach and eval continue from their JSONL files, train from
its newest checkpoint, data from its manifest). When a stage's key changes, its old folder is
moved to ``RUN/.stale/`` (never deleted) and the stage runs again, and so does everything
downstream of it, because their keys include its output hash. The teacher's response cache lives
outside the teach folder (``RUN/cache/teach`` unless the recipe names one), so re-teaching after
a data change asks the teacher only about new problems.

The teacher: ``teach.teacher.base_url`` points at any OpenAI-compatible server (vLLM, SGLang, a
running ``codistill serve-teacher``). When it is null the runner starts the packaged llama.cpp
teacher (``serve``) on loopback for the teach stage and stops it afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codistill.store import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["Recipe", "ArmSpec", "ServeSpec", "load_recipe", "run_recipe", "recipe_path", "RECIPE_VERSION"]

RECIPE_VERSION = 1
STAGES = ("data", "teach", "train", "eval", "report")


class ServeSpec(BaseModel):
    """The local llama.cpp teacher started when ``teach.teacher.base_url`` is null."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("qwen2.5-coder-1.5b", description="packaged teacher name or .gguf path")
    n_parallel: int = Field(4, ge=1, description="parallel slots (the teach stage's concurrency follows)")
    ctx: int = Field(3072, ge=256, description="context tokens per slot")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: the usable cores, fewer when "
                                "other processes keep some busy now; codistill.cpu.default_threads)")


class ArmSpec(BaseModel):
    """One arm of the experiment: the untouched base model, or a LoRA trained with overrides."""

    model_config = ConfigDict(extra="forbid")

    base: bool = Field(False, description="true: evaluate the student as it is (no training)")
    protocols: list[Literal["format", "standard"]] | None = Field(
        None, description="how this arm is judged: 'format' (the recipe's student format) and/or 'standard' "
        "(zero-shot, EvalPlus instruction prompt). Default: a base arm both, a trained arm 'format' only")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides deep-merged onto the recipe's train section")
    eval: dict[str, Any] = Field(default_factory=dict, description="overrides deep-merged onto the recipe's eval section")
    description: str | None = None


class Recipe(BaseModel):
    """A whole experiment. Sections hold the stage configs without their paths (the runner sets them)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("experiment", description="shown in the report")
    description: str | None = None
    out_dir: str | None = Field(None, description="run directory (the CLI's --out wins; default runs/<name>)")
    data_dir: str | None = Field(None, description="benchmark data folder for every stage (default: codistill's)")
    smoke: bool = Field(False, description="a smoke run: the report says its numbers are not a result")
    data: dict[str, Any] = Field(..., description="codistill data settings (PrepareConfig without out_dir)")
    teach: dict[str, Any] = Field(..., description="codistill teach settings (TeachConfig without out_dir/dataset)")
    serve: ServeSpec = Field(default_factory=ServeSpec, description="local teacher when teach.teacher.base_url is null")
    train: dict[str, Any] = Field(default_factory=dict, description="codistill train settings shared by the arms")
    eval: dict[str, Any] = Field(default_factory=dict, description="codistill eval settings shared by the arms (EvalConfig without model/adapter)")
    format: str | dict[str, Any] = Field("paper", description="the student format, declared once: how problems are "
                                         "prompted and answers laid out, for training and for judging (a packaged "
                                         "name: paper, paper-no-tests, code-only; or a mapping, see codistill.formats)")
    primary_protocol: Literal["format", "standard"] = Field(
        "format", description="the protocol declared primary before the run (the report leads with it); each "
        "arm's primary-protocol eval is in arms/<arm>/eval, any other in arms/<arm>/eval@<protocol>")
    arms: dict[str, ArmSpec] = Field(..., min_length=1, description="arm name -> spec; e.g. base, cd, cd_sa")
    report: dict[str, Any] = Field(default_factory=lambda: {"baseline": "base"}, description="baseline arm, title")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        from codistill.formats import get_format

        get_format(v)
        return v

    def student_format(self):
        from codistill.formats import get_format

        return get_format(self.format)

    def protocols(self, arm: str) -> list[str]:
        spec = self.arms[arm]
        return list(spec.protocols or (["standard", "format"] if spec.base else ["format"]))

    @field_validator("arms")
    @classmethod
    def _names(cls, arms: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        for name in arms:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"arm name {name!r}: use letters, digits, '-', '_' or '.' (it names a folder)")
        return arms


# ------------------------------------------------------------------------------------------ loading


def recipe_path(spec: str | os.PathLike) -> Path:
    """A recipe file, or the name of a packaged recipe (``demo``, ``paper-small``, ``gpu-vllm``)."""
    p = Path(spec)
    if p.is_file():
        return p
    name = str(spec).removesuffix(".yaml")
    packaged = resources.files("codistill").joinpath("recipes", f"{name}.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    known = sorted(f.name.removesuffix(".yaml") for f in resources.files("codistill").joinpath("recipes").iterdir()
                   if f.name.endswith(".yaml"))
    raise FileNotFoundError(f"recipe {spec!r} not found: give a YAML file or one of the packaged recipes {known}")


def load_recipe(spec: str | os.PathLike, sets: list[str] | None = None, **overrides) -> Recipe:
    """Read a recipe (file or packaged name) and check every stage section against its config model.
    ``sets``: dotted overrides (see :func:`apply_sets`); ``overrides``: top-level fields."""
    import yaml

    path = recipe_path(spec)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping with data, teach, train, eval and arms sections")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if sets:
        raw = apply_sets(raw, sets)
    from pydantic import ValidationError

    from codistill.errors import describe_validation_error

    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"{path}: {describe_validation_error(e, model=Recipe)}") from e
    _check_sections(recipe, path)
    return recipe


def _check_sections(recipe: Recipe, where: Path | str) -> None:
    """Validate every stage's settings (each arm's train and eval with its overrides merged in)
    now, so a typo fails before hours of work. One ValueError lists every problem, each naming
    its section, the setting, the bad value and (where there is a list) the allowed values."""
    from pydantic import ValidationError

    from codistill.data.prepare import PrepareConfig
    from codistill.errors import validation_items
    from codistill.evaluation.run import EvalConfig
    from codistill.teacher.teach import TeachConfig
    from codistill.training.config import TrainConfig

    checks = [("data", PrepareConfig, lambda: {**recipe.data, "out_dir": "x"}),
              ("teach", TeachConfig, lambda: _teach_dict(recipe, Path("x"))[0])]
    for arm, spec in recipe.arms.items():
        if not spec.base:
            checks.append((f"arms.{arm}.train", TrainConfig,
                           lambda spec=spec: _train_dict(recipe, spec, Path("x"), "x")))
        # a trained arm is evaluated with its adapter: check the backend can apply one
        for protocol in recipe.protocols(arm):
            checks.append((f"arms.{arm}.eval", EvalConfig,
                           lambda spec=spec, protocol=protocol: _eval_dict(recipe, spec, None if spec.base else "adapter",
                                                                           protocol)))
    problems: dict[str, list[str]] = {}  # problem -> the sections that have it (arms share eval/train)
    for section, model, data in checks:
        try:
            model.model_validate(data())
        except ValidationError as e:
            for item in validation_items(e, model=model):
                _add(problems.setdefault(item, []), section)
        except (ValueError, TypeError, AttributeError) as e:  # a section that is not a mapping, ...
            _add(problems.setdefault(str(e), []), section)
    if problems:
        raise ValueError(f"{where}: invalid settings: " + " | ".join(
            f"section {', '.join(sections)}: {item}" for item, sections in problems.items()))


def _add(sections: list[str], section: str) -> None:
    if section not in sections:  # an arm judged under two protocols is one section
        sections.append(section)


def apply_sets(raw: dict, sets: list[str]) -> dict:
    """``["train.num_threads=1", "eval.benchmarks=[humaneval]"]`` → ``raw`` with those values
    (YAML-parsed) set at the dotted paths; intermediate mappings are created."""
    import yaml

    raw = copy.deepcopy(raw)
    for item in sets:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--set {item!r}: write KEY.PATH=VALUE, e.g. train.num_threads=1")
        node = raw
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {k} is not a mapping in the recipe")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 5e-5 (no dot) as a string
            try:
                parsed = float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf", "infinity") else parsed
            except ValueError:
                pass
        node[keys[-1]] = parsed
    return raw


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


FORMAT_OWNED = ("prompt_mode", "prompt_template", "system_prompt", "target_sections", "section_separator",
                "format_name", "stop_after_code")


def _train_dict(recipe: Recipe, arm: ArmSpec, out: Path, train_file: str) -> dict:
    d = deep_merge(recipe.train, arm.train)
    d["output_dir"] = str(out)
    d.setdefault("data", {})
    if not isinstance(d["data"], dict):
        raise ValueError("train.data must be a mapping")
    owned = sorted(k for k in d["data"] if k in FORMAT_OWNED)
    if owned:
        raise ValueError(f"train.data sets {', '.join(owned)}: the student format is declared once, in the recipe's "
                         "top-level `format:` section (it is used for training and for judging alike)")
    fmt = recipe.student_format()
    d["data"] = {**d["data"], **fmt.data_fields(), "format_name": fmt.name, "stop_after_code": fmt.stop_after_code,
                 "train_file": train_file}
    d["resume"] = True
    return d


def _teach_dict(recipe: Recipe, run: Path) -> tuple[dict, bool]:
    """The teach stage's config, and whether the runner serves the teacher itself."""
    d = deep_merge(recipe.teach, {"out_dir": str(run / "teach"), "dataset": str(run / "data")})
    d.setdefault("cache_dir", str(run / "cache" / "teach"))
    if recipe.data_dir and not d.get("data_dir"):
        d["data_dir"] = recipe.data_dir
    teacher = d.setdefault("teacher", {})
    serve = not teacher.get("base_url") and teacher.get("backend", "openai") == "openai"
    if not serve and teacher.get("base_url", "") is None:
        del teacher["base_url"]  # llamacpp in-process: no server URL
    if serve:
        teacher["model"] = recipe.serve.model
        teacher.setdefault("concurrency", recipe.serve.n_parallel)
        teacher["base_url"] = "http://127.0.0.1:0/v1"  # placeholder, set once the server is up
    return d, serve


def _student(recipe: Recipe) -> str:
    return recipe.train.get("model", "qwen2.5-coder-0.5b")


def _eval_dict(recipe: Recipe, arm: ArmSpec, adapter: str | None, protocol: str = "format") -> dict:
    d = deep_merge(recipe.eval, arm.eval)
    train = deep_merge(recipe.train, arm.train)
    d.setdefault("model", train.get("model", _student(recipe)))
    d["adapter"] = adapter
    if "format" in d:
        raise ValueError("eval.format: the student format is declared once, in the recipe's top-level `format:` "
                         "section; choose how each arm is judged with arms.<arm>.protocols")
    d["format"] = recipe.student_format().model_dump() if protocol == "format" else "standard"
    if recipe.data_dir and not d.get("data_dir"):
        d["data_dir"] = recipe.data_dir
    return d


# ------------------------------------------------------------------------------------------ helpers


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Manifest:
    def __init__(self, run: Path, recipe: Recipe):
        self.path = run / "run_manifest.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.update({"recipe_version": RECIPE_VERSION, "name": recipe.name, "smoke": recipe.smoke})
        self.data.setdefault("stages", {})
        self.data.setdefault("created", _now())
        self.data["versions"] = _versions()

    def get(self, stage: str) -> dict:
        return self.data["stages"].get(stage, {})

    def set(self, stage: str, **fields) -> None:
        """Update one stage's record: read-modify-write under a lock, so two runners working on
        different arms of one run directory (e.g. one per core) do not lose each other's updates."""
        import fcntl

        with open(self.path.with_name(".run_manifest.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                disk = json.loads(self.path.read_text())
                self.data["stages"] = {**disk.get("stages", {}), **{k: v for k, v in self.data["stages"].items()
                                                                     if k == stage}}
            self.data["stages"][stage] = {**self.data["stages"].get(stage, {}), **fields}
            self.data["updated"] = _now()
            atomic_write_json(self.path, self.data)


def _versions() -> dict:
    from codistill.store import package_versions

    return package_versions("codistill", "torch", "transformers", "peft", "accelerate", "xllamacpp", "datasets")


def _set_aside(run: Path, folder: Path, why: str) -> None:
    if not folder.exists():
        return
    dest = run / ".stale" / f"{folder.relative_to(run).as_posix().replace('/', '__')}-{int(time.time())}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(dest))
    log.warning("%s: %s; the old folder was moved to %s", folder.relative_to(run), why, dest)


# ------------------------------------------------------------------------------------------ runner


class _Runner:
    def __init__(self, recipe: Recipe, run: Path, console, only: set[str] | None, arms: list[str] | None):
        self.recipe, self.run, self.console = recipe, run, console
        self.manifest = _Manifest(run, recipe)
        self.only = only
        unknown = set(arms or []) - set(recipe.arms)
        if unknown:
            raise ValueError(f"unknown arm(s) {sorted(unknown)}; the recipe has {sorted(recipe.arms)}")
        self.arms = arms or list(recipe.arms)

    def _wanted(self, stage: str) -> bool:
        return self.only is None or stage in self.only

    def _stage(self, name: str, key: str, folder: Path, fn, output_hash, compat: str | None = None) -> str:
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
        if not self._wanted(name.split(":")[0]):
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

    # -- stages ----------------------------------------------------------------------------
    def data(self) -> str:
        from codistill.data.prepare import PrepareConfig, prepare_dataset

        r = self.recipe
        folder = self.run / "data"
        cfg = PrepareConfig.model_validate({**r.data, "out_dir": str(folder),
                                            **({"data_dir": r.data_dir} if r.data_dir and not r.data.get("data_dir") else {})})
        key = _hash(["data", cfg.key()])

        def go():
            m = prepare_dataset(cfg)
            return {"rows": m["counts"]["rows"], "problems": m["counts"]["problems"]}

        return self._stage("data", key, folder, go, lambda: _file_hash(folder / "rows.jsonl", folder / "problems.jsonl"))

    def teach(self, data_hash: str) -> str:
        from codistill.teacher.teach import TeachConfig, incomplete_error, teach

        r = self.recipe
        folder = self.run / "teach"
        base, serve = _teach_dict(r, self.run)
        cfg = TeachConfig.model_validate(base)
        key = _hash(["teach", cfg.key(), data_hash])

        def go():
            if not serve:
                m = teach(cfg)
            else:
                from codistill.serving import start_server

                self.console.print(f"starting the local teacher ({r.serve.model}, {r.serve.n_parallel} slots)")
                with start_server(r.serve.model, n_parallel=r.serve.n_parallel, ctx=r.serve.ctx,
                                  threads=r.serve.threads, quiet=True) as srv:
                    m = teach(cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"base_url": srv.base_url})}))
            # rows left to do (teacher errors) keep the stage from completing: the next run asks them again
            err = incomplete_error(m, "the same `codistill run` command")
            if err is not None:
                raise err
            c = m.get("counts", {})
            if not c.get("train_rows"):
                raise RuntimeError(f"the teach stage produced no training rows ({json.dumps(c)}); see {folder}")
            return {k: c.get(k) for k in ("rows", "valid", "invalid", "train_rows", "teacher_errors")}

        return self._stage("teach", key, folder, go, lambda: _file_hash(folder / "train.jsonl"))

    def train(self, arm: str, teach_hash: str) -> str:
        from codistill.training.config import TrainConfig
        from codistill.training.trainer import train

        folder = self.run / "arms" / arm / "train"
        cfg = TrainConfig.model_validate(_train_dict(self.recipe, self.recipe.arms[arm], folder,
                                                     str(self.run / "teach" / "train.jsonl")))
        key = _hash(["train", cfg.key(), teach_hash])  # settings that change the update (TrainConfig.key)

        def go():
            s = train(cfg)
            if s.get("stopped_early") or not s.get("adapter_dir"):
                raise _Paused(f"arm {arm}: training stopped at step {s.get('steps')} of {s.get('total_steps')}")
            return {k: s.get(k) for k in ("steps", "total_steps", "dtype", "tokens_per_s", "peak_rss_gib", "wall_s")}

        adapter = folder / "adapter"
        return self._stage(f"train:{arm}", key, folder, go,
                           lambda: _file_hash(adapter / "adapter_config.json", adapter / "adapter_model.safetensors"))

    def check_budget(self) -> dict | None:
        """Before any arm is trained or judged: the eval budget against the training targets'
        lengths in the run's format (what the trainer will store with each adapter), so a budget
        too short for the trained arms stops the run now, not after hours of judging."""
        from codistill.formats import ProtocolError, required_budget

        r = self.recipe
        train_file = self.run / "teach" / "train.jsonl"
        uses = [a for a in self.arms if "format" in r.protocols(a)]
        if not uses or not train_file.is_file():
            return None
        from transformers import AutoTokenizer

        from codistill.models import resolve_model
        from codistill.training.config import DataConfig
        from codistill.training.data import format_record, load_records

        dcfg = DataConfig.model_validate(_train_dict(r, ArmSpec(), Path("x"), str(train_file))["data"])
        tok = AutoTokenizer.from_pretrained(str(resolve_model(_student(r))))
        rec = format_record(load_records(train_file), tok, dcfg)
        from codistill.evaluation.config import EvalConfig

        st = rec["generation_tokens"]
        problems = []
        for arm in uses:
            ecfg = EvalConfig.model_validate(_eval_dict(r, r.arms[arm], None, "format"))
            need = required_budget(st, ecfg.budget_margin)
            if need is not None and ecfg.max_new_tokens < need and not ecfg.allow_short_budget:
                problems.append(f"{arm}: max_new_tokens={ecfg.max_new_tokens} < {need} (margin {ecfg.budget_margin})")
        if problems:
            raise ProtocolError(
                f"the eval budget is shorter than what the students are trained to write in format "
                f"{rec['format']['name']!r}: 99th percentile of the training targets (up to where generation may "
                f"stop) = {st['p99']} tokens (median {st['p50']}, max {st['max']}); {'; '.join(problems)}. Raise "
                "eval.max_new_tokens (--set eval.max_new_tokens=N), or set eval.allow_short_budget: true to judge "
                "with the short budget on purpose (recorded)")
        return rec

    def eval(self, arm: str, adapter_hash: str | None, protocol: str = "format") -> str:
        from codistill.evaluation.run import EvalConfig, run_eval

        spec = self.recipe.arms[arm]
        primary = protocol == self.recipe.primary_protocol
        folder = self.run / "arms" / arm / ("eval" if primary else f"eval@{protocol}")
        adapter = None if spec.base else str(self.run / "arms" / arm / "train" / "adapter")
        cfg = EvalConfig.model_validate(_eval_dict(self.recipe, spec, adapter, protocol))
        key = _hash(["eval", cfg.key(), adapter_hash])
        # run_eval keeps the generations of a run whose benchmarks or limit change
        compat = _hash(["eval", cfg.compat_key(), adapter_hash])

        def go():
            res = run_eval(cfg, folder, progress=True)
            return {b: {"pass@1": (v.get("pass@k") or {}).get("pass@1"), "tasks": v.get("tasks")}
                    for b, v in res.get("benchmarks", {}).items()}

        name = f"eval:{arm}" if primary else f"eval:{arm}@{protocol}"
        return self._stage(name, key, folder, go, lambda: _file_hash(folder / "results.json"), compat=compat)

    def report(self) -> dict | None:
        if not self._wanted("report"):
            return None
        from codistill.report.build import write_report

        self.console.rule("[bold]report")
        t0 = time.perf_counter()
        rep = write_report([self.run], out=self.run, baseline=self.recipe.report.get("baseline", "base"),
                           title=self.recipe.report.get("title") or self.recipe.name)
        self.manifest.set("report", status="complete", finished=_now(), wall_s=round(time.perf_counter() - t0, 1))
        return rep


class _NotRun(Exception):
    """A stage left out with --only whose output a later stage needs."""


class _Paused(Exception):
    """Training ended before its last step (stop_at_step): the recipe continues on the next run."""


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
        bad = set(only) - set(STAGES)
        if bad:
            raise ValueError(f"--only: unknown stage(s) {sorted(bad)}; stages are {', '.join(STAGES)}")
    resolved = recipe.model_dump(mode="json")
    resolved["out_dir"] = str(run)
    import yaml

    atomic_write_text(run / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))
    runner = _Runner(recipe, run, console, set(only) if only else None, arms)
    banner = "[bold yellow]smoke run: the numbers it prints are not a result[/]" if recipe.smoke else ""
    console.print(f"[bold]codistill run[/] {recipe.name} → {run} (arms: {', '.join(runner.arms)}) {banner}")
    t0 = time.perf_counter()
    out: dict = {"run_dir": str(run)}
    try:
        data_hash = runner.data()
        teach_hash = runner.teach(data_hash) if any(not recipe.arms[a].base for a in runner.arms) else None
        if runner._wanted("eval") or runner._wanted("train"):
            runner.check_budget()
        for arm in runner.arms:
            spec = recipe.arms[arm]
            try:
                adapter_hash = None if spec.base else runner.train(arm, teach_hash)
                for protocol in sorted(recipe.protocols(arm), key=lambda p: p != recipe.primary_protocol):
                    runner.eval(arm, adapter_hash, protocol)
            except _NotRun as e:  # this arm stops here; the others go on
                if not runner._wanted(str(e).split(":")[0]):
                    console.print(f"[dim]{e}: left out by --only[/]")
                else:
                    raise
            except _Paused as e:
                console.print(f"[yellow]{e}; run the same command again to continue[/]")
                out.setdefault("paused", []).append(str(e))
    except _NotRun as e:
        console.print(f"[yellow]stopped before {e}: it is not complete and --only leaves it out[/]")
    out["report"] = runner.report()
    out["manifest"] = runner.manifest.data
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out
