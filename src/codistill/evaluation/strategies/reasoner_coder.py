"""``reasoner-coder``: a Reasoner writes M plans from the statement alone, the Coder (the eval's
model) writes T programs from statement + plan (Li & Mooney 2024, "Distilling Algorithmic
Reasoning from LLMs via Explaining Solution Programs"; with the teacher as Reasoner it is the
paper's upper bound: the student with a large model's context in its prompt).

The Reasoner is prompted one of two ways:

* **plan template** (``templates/reasoner_plan.txt``, through the model's chat template): the
  teach stage's five sections (intent, steps, formulas, edge cases, built-ins), no code, written
  from the statement only. The answer is normalised to the teach stage's context layout
  (``### Intent`` …) when its headings are found, else kept as written.
* **its training format**, when the Reasoner is an adapter trained by codistill: the prompt it was
  trained on, generation stopped where its code section would begin; the plan is what it wrote
  before (the context section's header removed). That is a context-distilled student used as a
  Reasoner without any new prompt.

The Coder sees the plan as follows:

* standard protocol, chat: ``templates/coder_plan_chat.txt`` (EvalPlus's instruction prompt with
  the plan after the problem);
* standard protocol, completion: the plan as comment lines above the prompt;
* a student format: the format's prompt followed by the answer's sections up to the code, with the
  plan as the context; the Coder continues inside its code block. ``completion_raw`` then holds the
  prefilled sections + what it wrote, so it is read like any answer in that format, and
  ``n_tokens`` counts only what it wrote.

Every answer keeps its plan: ``plan_index``, ``plan``, ``plan_raw``, ``plan_tokens`` (the
Reasoner's tokens for that plan), ``plan_leakage`` (the teach stage's leakage score of the plan
against the task's reference solution: 1 = the plan was the code). Samples are plan-major:
sample ``j*T + t`` is code ``t`` of plan ``j``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from codistill.evaluation.strategies.base import InferenceStrategy, Unit

PLAN_MODE = "explain"  # the teach stage's section layout a plan is normalised to


def _template(name: str) -> str:
    return resources.files("codistill").joinpath("templates", name).read_text()


def normalise_plan(text: str) -> tuple[str, bool]:
    """(the plan in the teach stage's context layout, whether its sections were found)."""
    from codistill.teacher.parse import split_sections
    from codistill.teacher.templates import MODES, render_context

    sections = split_sections(text, MODES[PLAN_MODE].aliases)
    rendered = render_context(sections, PLAN_MODE) if sections else ""
    return (rendered, True) if rendered.strip() else (text.strip(), False)


def format_plan_cut(fmt) -> tuple[str, list[str]]:
    """For a student format: (the context section's header, the stops where the section after it
    begins). ValueError when the format has no context section before its code."""
    from codistill.formats import SECTION_FIELDS

    kinds = [next(f for f in SECTION_FIELDS if "{" + f + "}" in s) for s in fmt.sections]
    if "context" not in kinds or kinds.index("context") > kinds.index("code"):
        raise ValueError(f"format {fmt.name!r} has no context section before its code: an adapter trained in it "
                         "cannot be a Reasoner (it was never taught to write a plan)")
    i = kinds.index("context")
    header = fmt.sections[i].split("{context}")[0]
    stops = []
    for s in fmt.sections[i + 1:]:
        field = next(f for f in SECTION_FIELDS if "{" + f + "}" in s)
        first = s.split("{" + field + "}")[0].split("\n")[0]
        if first.strip():
            stops.append(fmt.section_separator + first)
    return header, stops


def coder_prefill(fmt, plan: str) -> str:
    """A student format's answer up to where the code begins, the plan as its context."""
    parts = []
    for s in fmt.sections:
        if "{code}" in s:
            parts.append(s.split("{code}")[0])
            break
        if "{context}" in s:
            parts.append(s.replace("{context}", plan))
        # a tests section before the code has nothing to show here: left out, as in training
    return fmt.section_separator.join(parts)


class ReasonerCoderStrategy(InferenceStrategy):
    name = "reasoner-coder"

    def __init__(self, generator: Any, cfg=None, protocol=None, tokenizer=None, reasoner=None,
                 reasoner_tokenizer=None, reasoner_format=None, **options: Any):
        """``generator``: the Coder; ``reasoner``: the Reasoner's generator (built from ``cfg``
        when not given); ``reasoner_format``: the Reasoner adapter's training format, or None for
        the plan template."""
        super().__init__(generator, **options)
        if cfg is None or protocol is None:
            raise ValueError("reasoner-coder needs the eval config and protocol")
        self.cfg, self.protocol, self.tokenizer = cfg, protocol, tokenizer
        self.plans, self.codes_per_plan = cfg.plans, cfg.codes_per_plan
        self._own_reasoner = reasoner is None
        if reasoner is None:
            reasoner, reasoner_tokenizer, reasoner_format = make_reasoner(cfg)
        self.reasoner, self.reasoner_tokenizer, self.reasoner_format = reasoner, reasoner_tokenizer, reasoner_format
        if reasoner_format is not None:
            self._plan_header, self._plan_stops = format_plan_cut(reasoner_format)
            if reasoner_tokenizer is None:
                raise ValueError("a Reasoner adapter's format needs the Reasoner's tokenizer to render its prompt")
        else:
            self._plan_header, self._plan_stops = "", []
            self._plan_template = _template("reasoner_plan.txt")
        self._coder_template = _template("coder_plan_chat.txt")

    # -- prompts -----------------------------------------------------------------------------
    def reasoner_prompt(self, problem) -> str:
        if self.reasoner_format is not None:
            return self.reasoner_format.render_prompt(self.reasoner_tokenizer, problem.prompt)[0]
        return self._plan_template.replace("{problem}", problem.prompt.strip())

    def plan_of(self, raw: str) -> tuple[str, bool]:
        text = raw
        if self.reasoner_format is not None:
            head = self._plan_header.strip()
            stripped = text.lstrip()
            if head and stripped.startswith(head):
                text = stripped[len(head):]
        return normalise_plan(text)

    def coder_prompt(self, unit: Unit, plan: str) -> tuple[str, str]:
        """(the Coder's prompt, the text prefilled into its answer)."""
        fmt = self.protocol.fmt
        if fmt is not None:
            prefill = coder_prefill(fmt, plan)
            return fmt.render_prompt(self.tokenizer, unit.problem.prompt)[0] + prefill, prefill
        if self.protocol.mode == "completion":
            comment = "".join(f"# {line}".rstrip() + "\n" for line in ["Plan:", *plan.splitlines()])
            return comment + unit.prompt, ""
        return self._coder_template.replace("{plan}", plan).replace("{prompt}", unit.problem.prompt.strip()), ""

    # -- answers -----------------------------------------------------------------------------
    def answer(self, units: list[Unit], params) -> list[list[dict]]:
        from codistill.backends import SamplingParams

        m, t = self.plans, self.codes_per_plan
        if params.n != m * t:
            raise ValueError(f"reasoner-coder draws plans x codes_per_plan = {m * t} programs per task, asked {params.n}")
        temp = self.cfg.reasoner_temperature if self.cfg.reasoner_temperature is not None else params.temperature
        rparams = SamplingParams(n=m, temperature=temp, top_p=params.top_p, seed=params.seed,
                                 max_new_tokens=self.cfg.reasoner_max_new_tokens, stop=tuple(self._plan_stops),
                                 stop_on_loop=params.stop_on_loop)
        raw_plans = self.reasoner.generate([self.reasoner_prompt(u.problem) for u in units], rparams)

        prompts, meta = [], []
        for u, plans in zip(units, raw_plans):
            for j, raw in enumerate(plans[:m]):
                plan, parsed = self.plan_of(raw)
                prompt, prefill = self.coder_prompt(u, plan)
                prompts.append(prompt)
                meta.append((u, j, raw, plan, parsed, prefill))
        stops = tuple(dict.fromkeys(s for u in units for s in u.stops))
        codes = self.generator.generate(prompts, params.model_copy(update={"n": t, "stop": stops}))

        out: dict[str, list[dict]] = {u.key: [] for u in units}
        for (u, j, raw, plan, parsed, prefill), comps in zip(meta, codes):
            info = {"plan_index": j, "plan": plan, "plan_raw": raw, "plan_parsed": parsed,
                    "plan_tokens": self._count(self.reasoner_tokenizer, raw), "plan_leakage": _leakage(plan, u.problem)}
            for text in comps[:t]:
                ans = {"completion_raw": prefill + text, **info}
                if prefill:
                    ans["n_tokens"] = self._count(self.tokenizer, text)
                out[u.key].append(ans)
        return [out[u.key] for u in units]

    @staticmethod
    def _count(tokenizer, text: str) -> int | None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else None

    def usages(self) -> dict:
        return {"usage": self.usage, "reasoner_usage": getattr(self.reasoner, "usage", None)}

    @property
    def concurrent(self) -> bool:
        # no overlap of batches: the Reasoner and the Coder are often one server, and a batch's plans
        # beside the previous batch's code would put twice its slots' requests in its queue (timeouts)
        return False

    def record(self, totals: dict | None = None) -> dict:
        """results.json ``pipeline``: who reasoned, how, and what it cost. ``reasoner_usage``: the
        Reasoner's tokens summed over every generation batch of the run (``totals``: results.json
        ``generation``, from ``generation_log.jsonl``), so a resumed eval counts the batches of its
        earlier calls too; ``reasoner_usage_this_call``: this call's alone. Without per-batch
        records (``totals`` None or without ``reasoner_usage``) both are this call's."""
        usage = getattr(self.reasoner, "usage", None)
        this_call = usage.as_dict() if usage is not None else None
        total = (totals or {}).get("reasoner_usage") if usage is not None else None
        return {"strategy": self.name, "reasoner": self.cfg.reasoner, "plans": self.plans,
                "codes_per_plan": self.codes_per_plan,
                "reasoner_prompt": f"format {self.reasoner_format.name}" if self.reasoner_format is not None
                else "plan template (templates/reasoner_plan.txt)",
                "reasoner_usage": total if total is not None else this_call,
                "reasoner_usage_this_call": this_call}

    def close(self) -> None:
        if self._own_reasoner and self.reasoner is not None:
            self.reasoner.close()


def _leakage(plan: str, problem) -> float | None:
    from codistill.metrics.leakage import leakage_score

    return leakage_score(plan, problem.solutions[0], public=problem.prompt) if problem.solutions else None


def make_reasoner(cfg) -> tuple[Any, Any, Any]:
    """(generator, tokenizer, training format or None) of ``cfg.reasoner`` (``MODEL[+ADAPTER]``).

    An adapter with codistill's format record is prompted in that format (completion prompts
    rendered here); anything else gets the plan template through its chat template."""
    import json
    from pathlib import Path

    from codistill.backends import backend_kind, make_generator
    from codistill.evaluation.config import _SET_BY_EVAL
    from codistill.evaluation.run import load_tokenizer
    from codistill.formats import FORMAT_FILE, StudentFormat

    model, adapter = cfg.reasoner_spec()
    fmt = None
    if adapter and (Path(adapter) / FORMAT_FILE).is_file():
        fmt = StudentFormat.model_validate(json.loads((Path(adapter) / FORMAT_FILE).read_text())["format"])
    backend = cfg.reasoner_backend or cfg.backend
    kind = backend_kind(backend)
    owned = {"model": model, "adapter": adapter, "batch_size": cfg.batch_size, "dtype": cfg.dtype,
             "prompt_mode": "completion" if fmt is not None else "chat"}
    if adapter and "adapter" not in _SET_BY_EVAL.get(kind, ()):
        raise ValueError(f"the Reasoner's backend {backend!r} cannot apply an adapter: use hf or llama-server")
    kwargs = {k: owned[k] for k in _SET_BY_EVAL.get(kind, ("model",))}
    options = dict(cfg.backend_options) if backend_kind(cfg.backend) == kind else {}
    options.pop("prompt_mode", None)
    gen = make_generator(backend, **kwargs, **options)
    tok = gen.tokenizer if gen.capabilities.tokenizer else load_tokenizer(model, cfg.dtype)
    return gen, tok, fmt
