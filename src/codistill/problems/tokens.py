"""Python source as a token list (comments and layout dropped): the unit of n-gram overlap for
decontamination (:mod:`codistill.data.decontam`) and of leakage scores
(:mod:`codistill.metrics.leakage`). Standard library only."""

from __future__ import annotations

import io
import re
import tokenize

_FALLBACK_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\*\*|//|==|!=|<=|>=|[^\sA-Za-z0-9_]")
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENDMARKER, tokenize.ENCODING}


def _line_tokens(line: str) -> list[str]:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
                if t.type not in _SKIP and t.string.strip()]
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        return _FALLBACK_TOKEN.findall(line)


def code_tokens(code: str) -> list[str]:
    """Python tokens of ``code`` without comments/layout. Fragments that do not tokenize as a whole
    (bad indentation, an unclosed bracket) are tokenized line by line."""
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in _SKIP and tok.string.strip():
                out.append(tok.string)
        return out
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        return [t for line in code.splitlines() for t in _line_tokens(line)]
