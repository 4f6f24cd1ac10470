"""One batch of candidate problems through the student and the judge: k samples each, the step
ablations of the first ``ablate_samples`` samples, every program's outcome cluster, a verdict per
cluster, and the problem's record (see :mod:`codistill.select.run` for the record's fields)."""

from __future__ import annotations

import time
from typing import Any

from codistill.select.scores import inter_uncertainty, intra_uncertainty
from codistill.select.steps import ablate, reasoning_of, split_steps

__all__ = ["NO_CODE", "BatchScorer"]

NO_CODE = "no_code"  # the outcome cluster of an answer from which no program can be read


class BatchScorer:
    """``scorer(problems) -> records``; holds the student (generator + tokenizer), the format and the judge."""

    def __init__(self, cfg, fmt, generator: Any, tokenizer: Any, judge: Any):
        self.cfg, self.fmt, self.gen, self.tok, self.judge = cfg, fmt, generator, tokenizer, judge
        self.stops = tuple(fmt.stop_strings())

    # -- prompts and programs -------------------------------------------------------------
    def prompt(self, problem) -> str:
        return self.fmt.render_prompt(self.tok, problem.prompt)[0]

    def count(self, text: str) -> int | None:
        if self.tok is None:
            return None
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def program(answer: str, problem) -> str | None:
        """The program of an answer, or None when it holds no code (eval's rules)."""
        from codistill.evaluation.extract import build_program
        from codistill.evaluation.judging import has_code

        if not has_code(answer, problem.entry_point, "chat"):
            return None
        return build_program(answer, problem.code_prefix, problem.entry_point, "chat")

    # -- a batch ----------------------------------------------------------------------------
    def __call__(self, problems: list) -> list[dict]:
        from codistill.backends import SamplingParams
        from codistill.evaluation.strategies.reasoner_coder import coder_prefill

        cfg = self.cfg
        t0 = time.perf_counter()
        prompts = [self.prompt(p) for p in problems]
        sp = SamplingParams(n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p if cfg.temperature > 0 else 1.0,
                            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, stop=self.stops)
        answers = self.gen.generate(prompts, sp)
        samples: list[list[dict]] = []
        ab_prompts: list[str] = []
        ab_meta: list[tuple[int, int, int | None, str]] = []  # (problem, sample, step or None = baseline, prefill)
        for pi, (p, prompt, texts) in enumerate(zip(problems, prompts, answers)):
            rows = []
            for si, text in enumerate(texts[:cfg.k]):
                reasoning = reasoning_of(text, self.fmt)
                spans = split_steps(reasoning)
                rows.append({"index": si, "completion": text, "reasoning": reasoning, "steps": len(spans),
                             "tokens": self.count(text), "program": self.program(text, p)})
                if si < cfg.ablate_samples and spans:
                    for j in [None, *range(min(len(spans), cfg.max_steps))]:
                        prefill = coder_prefill(self.fmt, reasoning if j is None else ablate(reasoning, spans, j))
                        ab_prompts.append(prompt + prefill)
                        ab_meta.append((pi, si, j, prefill))
            samples.append(rows)
        regenerated: list[list[str]] = []
        if ab_prompts:
            temp = cfg.ablation_temperature
            ap = SamplingParams(n=1, temperature=temp, top_p=cfg.top_p if temp > 0 else 1.0,
                                max_new_tokens=cfg.code_max_new_tokens, seed=cfg.seed, stop=self.stops)
            regenerated = self.gen.generate(ab_prompts, ap)
        gen_s = time.perf_counter() - t0

        # judge: every program's outcome, then one verdict per (problem, outcome cluster)
        t1 = time.perf_counter()
        ablations: list[dict] = []
        for (pi, si, j, prefill), texts in zip(ab_meta, regenerated):
            text = texts[0] if texts else ""
            ablations.append({"problem": pi, "sample": si, "step": j, "completion": text, "tokens": self.count(text),
                              "program": self.program(prefill + text, problems[pi])})
        items = [(problems[pi], s) for pi, rows in enumerate(samples) for s in rows] + \
                [(problems[a["problem"]], a) for a in ablations]
        self._outcomes(items)
        self._verdicts(problems, samples)
        judge_s = time.perf_counter() - t1
        return [self._record(p, samples[pi], [a for a in ablations if a["problem"] == pi], gen_s / len(problems),
                             judge_s / len(problems)) for pi, p in enumerate(problems)]

    def _outcomes(self, items: list[tuple[Any, dict]]) -> None:
        from codistill.execution.outcomes import program_outcomes

        runnable = [(p, d) for p, d in items if d["program"] is not None]
        for p, d in items:
            if d["program"] is None:
                d.update(outcome=NO_CODE, kind=NO_CODE)
        for (p, d), o in zip(runnable, program_outcomes(self.judge, [(p, d["program"]) for p, d in runnable])):
            d.update(outcome=o["signature"], kind=o["kind"])

    def _verdicts(self, problems: list, samples: list[list[dict]]) -> None:
        """``passed`` of every sample: the judge's verdict on one program per outcome cluster (the
        same outputs on every test input give the same verdict)."""
        reps: dict[tuple[int, str], dict] = {}
        for pi, rows in enumerate(samples):
            for s in rows:
                if s["program"] is not None:
                    reps.setdefault((pi, s["outcome"]), s)
        keys = list(reps)

        def one(key):
            pi, _ = key
            return bool(self.judge.judge(problems[pi], reps[key]["program"])["passed"])

        passed = dict(zip(keys, self.judge.sandbox.map(one, keys))) if keys else {}
        for pi, rows in enumerate(samples):
            for s in rows:
                s["passed"] = passed.get((pi, s["outcome"]), False)

    # -- the record -------------------------------------------------------------------------
    def _record(self, problem, rows: list[dict], abl: list[dict], gen_s: float, judge_s: float) -> dict:
        from codistill.store import sha256_json

        inter = inter_uncertainty([s["outcome"] for s in rows])
        per_sample = []
        for si in sorted({a["sample"] for a in abl}):
            mine = [a for a in abl if a["sample"] == si]
            base = next(a for a in mine if a["step"] is None)
            variants = [a for a in mine if a["step"] is not None]
            per_sample.append({
                "sample": si, "steps": rows[si]["steps"], "ablated": len(variants),
                "baseline": {"outcome": base["outcome"], "kind": base["kind"], "completion": base["completion"]},
                "variants": [{"step": a["step"], "outcome": a["outcome"], "kind": a["kind"],
                              "changed": a["outcome"] != base["outcome"], "completion": a["completion"]}
                             for a in variants]})
        intra = intra_uncertainty([{"baseline": a["baseline"]["outcome"], "steps": [v["outcome"] for v in a["variants"]]}
                                   for a in per_sample])
        student = next((s for s in rows if not s["passed"]), rows[0]) if rows else None
        counted = [x["tokens"] for x in rows + abl]
        n_var = sum(a["ablated"] for a in per_sample)
        return {
            "problem_id": problem.id,
            "problem_hash": sha256_json(problem.model_dump(exclude={"meta"}))[:16],
            "samples": [{k: s[k] for k in ("index", "completion", "steps", "tokens", "outcome", "kind", "passed")}
                        for s in rows],
            "ablations": per_sample,
            "clusters": inter["clusters"], "entropy": inter["entropy"], "inter_norm": inter["inter_norm"],
            "intra": intra,
            "pass_rate": sum(s["passed"] for s in rows) / len(rows) if rows else 0.0,
            "student": None if student is None else {
                "sample": student["index"], "reasoning": student["reasoning"], "steps": student["steps"],
                "code": student["program"], "passed": student["passed"], "outcome": student["outcome"]},
            "cost": {"samples": len(rows), "ablations": n_var, "baselines": len(per_sample),
                     "generated_tokens": None if any(c is None for c in counted) else sum(counted),
                     "generate_s": round(gen_s, 3), "judge_s": round(judge_s, 3)},
        }
