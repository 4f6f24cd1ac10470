"""What the structure loss's signal measures, per encoder.

For HumanEval canonical programs, 1 − L_s = cos(E(reference), E(variant)) with both sides passed
through the same student→encoder bridge (the training target), for variants:
itself (sanity: 1.0), an unrelated program (the next task's), a small semantic mutant (one operator
or constant changed: a *different* program), and a renamed + re-indented equivalent (the *same*
program). A structure signal should score the equivalent above the mutant. Encoders: the packaged
MiniLM, the student's own frozen base ("self") with a few layer counts, and any local HF encoder
folders given with --encoder-path. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SWAPS = [(" + ", " - "), (" - ", " + "), (" < ", " <= "), (" > ", " >= "), (" <= ", " < "), (" >= ", " > "),
         (" == ", " != "), (" * ", " + "), (" 1", " 2"), (" 0", " 1")]


def mutant(code: str) -> str | None:
    for a, b in SWAPS:
        if a in code:
            return code.replace(a, b, 1)
    return None


def renamed_reindented(code: str, entry_point: str) -> str | None:
    """Rename every argument and local name (not builtins, not the entry point) and re-indent."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    keep = set(dir(builtins)) | {entry_point}
    imported = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    mapping: dict[str, str] = {}

    def new(name: str) -> str:
        if name in keep or name in imported or name in defined:
            return name
        return mapping.setdefault(name, f"v{len(mapping)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.arg = new(node.arg)
        elif isinstance(node, ast.Name):
            node.id = new(node.id)
    text = ast.unparse(tree)
    return "\n".join(("  " * ((len(ln) - len(ln.lstrip(" "))) // 4)) + ln.lstrip(" ") for ln in text.split("\n")) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="qwen2.5-coder-0.5b", help="packaged student (its tokenizer and, for 'self', its base)")
    ap.add_argument("--limit", type=int, default=40, help="HumanEval programs (default 40 to keep CPU time to minutes)")
    ap.add_argument("--self-layers", default="4,12,0", help="layer counts for the 'self' encoder (0 = all)")
    ap.add_argument("--encoder-path", action="append", default=[], help="local HF encoder folder (e.g. CodeBERT)")
    args = ap.parse_args()

    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from rich.console import Console
    from rich.table import Table

    from codistill.models import resolve_model
    from codistill.problems.loaders import load_benchmark
    from codistill.training.structure_loss import StructureEncoder, load_structure_encoder

    torch.set_num_threads(1)
    path = resolve_model(args.student, dtype="float32")
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    base = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    vocab = base.config.vocab_size
    student = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))

    problems = load_benchmark("humaneval", limit=args.limit)
    refs = [p.solutions[0] for p in problems]
    variants = {"itself": refs, "unrelated": [refs[(i + 1) % len(refs)] for i in range(len(refs))],
                "mutant": [mutant(r) for r in refs],
                "renamed+reindented": [renamed_reindented(r, p.entry_point) for r, p in zip(refs, problems)]}

    encoders: dict[str, StructureEncoder] = {}
    t0 = time.perf_counter()
    encoders["minilm"] = load_structure_encoder("minilm", student_tokenizer=tok, student_vocab_size=vocab)
    for n in [int(x) for x in args.self_layers.split(",") if x.strip()]:
        encoders[f"self[{n or 'all'} layers]"] = StructureEncoder.from_student(student, tok, layers=n or None)
    for p in args.encoder_path:
        encoders[Path(p).name] = load_structure_encoder(p, student_tokenizer=tok, student_vocab_size=vocab)
    build_s = time.perf_counter() - t0

    def embed(enc: StructureEncoder, texts: list[str]) -> torch.Tensor:
        out = []
        for t in texts:
            ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
            out.append(enc.embed_ids(ids, enc.valid_mask(ids))[0])
        return torch.stack(out)

    results: dict[str, dict] = {}
    for name, enc in encoders.items():
        te = time.perf_counter()
        e_ref = embed(enc, refs)
        row = {}
        for vname, texts in variants.items():
            idx = [i for i, t in enumerate(texts) if t is not None]
            e_v = embed(enc, [texts[i] for i in idx])
            cos = torch.nn.functional.cosine_similarity(e_ref[idx], e_v, dim=-1)
            row[vname] = {"mean": round(cos.mean().item(), 4), "n": len(idx), "per_task": cos.tolist()}
        mut_idx = [i for i, t in enumerate(variants["mutant"]) if t is not None]
        ren_idx = [i for i, t in enumerate(variants["renamed+reindented"]) if t is not None]
        mut = dict(zip(mut_idx, row["mutant"]["per_task"]))
        ren = dict(zip(ren_idx, row["renamed+reindented"]["per_task"]))
        both = sorted(set(mut) & set(ren))
        row["equivalent_above_mutant"] = round(sum(ren[i] > mut[i] for i in both) / max(1, len(both)), 3)
        row["seconds"] = round(time.perf_counter() - te, 1)
        results[name] = row

    table = Table(title=f"1 − L_s vs the reference ({len(refs)} HumanEval programs, student {args.student})")
    for col in ("encoder", "itself", "unrelated", "mutant", "renamed+reindented", "equivalent > mutant"):
        table.add_column(col, justify="right" if col != "encoder" else "left")
    for name, row in results.items():
        table.add_row(name, *(f"{row[v]['mean']:.4f}" for v in variants), f"{100 * row['equivalent_above_mutant']:.0f}%")
    Console(stderr=True).print(table)
    summary = {name: {**{v: row[v]["mean"] for v in variants}, "equivalent_above_mutant": row["equivalent_above_mutant"],
                      "seconds": row["seconds"]} for name, row in results.items()}
    print(json.dumps({"student": args.student, "programs": len(refs), "encoder_build_s": round(build_s, 1),
                      "encoders": summary}))


if __name__ == "__main__":
    main()
