"""Turn a model's answer into a program, robustly and without running it.

Written on the standard library's ``ast`` (EvalPlus's tree-sitter ``sanitize`` cannot be a
dependency here: evalplus pins protobuf<5 through google-generativeai, which conflicts with
tensorboard). Rules, in order:

1. fenced code blocks (```python ... ``` or ``` ... ```), empty ones ignored: prefer the block that
   defines the entry point, else the longest block that parses; when no block defines it, the
   parsing text between any two fence lines that does (mis-paired fences);
2. no fences: the longest prefix of the answer, starting at its first code-looking line, that
   parses (trailing prose is dropped);
3. if the code defines the entry point, the program is the prompt's import lines + the code,
   sanitised to its top-level definitions (see :func:`sanitize`);
   otherwise the code is taken as a continuation of the prompt (a function body), as in
   completion-style HumanEval.
"""

from __future__ import annotations

import ast
import re

from codistill.problems._common import parse_quietly

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def |[A-Za-z_][A-Za-z0-9_]* *=)")


def _parses(code: str) -> bool:
    try:
        parse_quietly(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _defines(code: str, name: str | None) -> bool:
    if not name:
        return False
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):
        return bool(re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
    return False


_LANG_LINE = re.compile(r"^[ \t]*(python3?|py)[ \t]*\n", re.I)


def fenced_blocks(text: str) -> list[str]:
    """Python (or untagged) fenced blocks; a language name alone on the block's first line
    (seen from small models: "```\npython\n...") is dropped."""
    return [_LANG_LINE.sub("", m.group(2), count=1) for m in _FENCE.finditer(text)
            if m.group(1).lower() in ("", "python", "py", "python3")]


_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
         ast.AnnAssign)


def sanitize(code: str) -> str:
    """Keep only top-level definitions: imports, functions, classes and assignments.

    Drops what a model adds around its solution -- example calls, prints, its own asserts,
    ``if __name__ == "__main__":`` blocks -- which would otherwise run before the tests (EvalPlus's
    ``sanitize`` does the same). Code that does not parse is returned unchanged.
    """
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):
        return code
    lines = code.split("\n")
    kept = []
    for node in tree.body:
        if isinstance(node, _KEEP):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            kept.append("\n".join(lines[start:node.end_lineno]))
    return "\n".join(kept).rstrip() + "\n" if kept else code


def _longest_parsing_prefix(lines: list[str]) -> str:
    for end in range(len(lines), 0, -1):
        code = "\n".join(lines[:end])
        if _parses(code):
            return code
    return "\n".join(lines)


def _fence_segments(text: str) -> list[str]:
    """The text between fence lines, whatever pairs them."""
    return [_LANG_LINE.sub("", p.lstrip("\n"), count=1) for p in re.split(r"^[ \t]*```[^\n]*$", text, flags=re.M)]


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code in a model answer (see module docstring for the rules)."""
    blocks = [b for b in fenced_blocks(text) if b.strip()]
    if entry_point and not any(_defines(b, entry_point) for b in blocks):
        # fences that pair up wrongly, e.g. one opened and closed at once before the real block
        # ("```\n```\ndef f(): ...\n```", seen from a fine-tuned 0.5B): the code lies between them
        segments = [s for s in _fence_segments(text) if s.strip() and _parses(s) and _defines(s, entry_point)]
        blocks = segments or blocks
    if blocks:
        defining = [b for b in blocks if _defines(b, entry_point)]
        pool = defining or [b for b in blocks if _parses(b)] or blocks
        return max(pool, key=len).rstrip() + "\n"
    text = re.sub(r"^[ \t]*```.*$", "", text, flags=re.M)  # a stray (unpaired) fence line
    lines = text.split("\n")
    start = next((i for i, ln in enumerate(lines) if _CODE_START.match(ln)), None)
    if start is None:
        return text
    if _parses(text) and start > 0 and all(not ln.strip() or ln.startswith((" ", "\t")) for ln in lines[:start]):
        return text  # an indented body followed by code: keep as is
    return _longest_parsing_prefix(lines[start:]).rstrip() + "\n"


def _prompt_imports(prompt: str) -> str:
    keep = [ln for ln in prompt.split("\n") if re.match(r"^(import |from \S+ import )", ln)]
    return "\n".join(keep) + ("\n" if keep else "")


def build_program(answer: str, prompt_code: str, entry_point: str | None, mode: str) -> str:
    """The program to judge for a model answer.

    ``prompt_code`` is the code the model was asked to complete (HumanEval prompt, or "" when the
    prompt is prose only). ``mode`` is "completion" (the answer continues the prompt) or "chat".
    """
    if mode == "completion" and not answer.lstrip().startswith("```"):
        program = prompt_code + answer
        if _parses(program) or not _defines(answer, entry_point):
            return program
    code = extract_code(answer, entry_point)
    if _defines(code, entry_point):
        return _prompt_imports(prompt_code) + sanitize(code)
    if prompt_code and code.startswith((" ", "\t")):
        return prompt_code + code
    return (prompt_code + "\n" + code) if prompt_code else code
