"""Errors as one readable line: what the command-line verbs print instead of a traceback.

:func:`describe` turns an exception into ``(message, exit status)``; the CLI prints
``codistill VERB: message`` and exits with that status (``--verbose`` or ``CODISTILL_DEBUG=1``
prints the traceback too). Exit statuses: 2 bad input or settings (a missing file, an unknown
name, an invalid config), 1 a failure while working (a server that does not answer, a run
directory in use), or the error's own ``exit_code`` (``codistill teach``: 3 when some rows are
left to do). Exceptions of no known kind are bugs: ``describe`` returns None and the CLI shows the
traceback.
"""

from __future__ import annotations

__all__ = ["describe", "describe_validation_error", "validation_items"]


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(e, prefix: str = "", model=None) -> str:
    """A pydantic ``ValidationError`` as ``setting = value: problem`` items joined by ``; ``
    (see :func:`validation_items`)."""
    return "; ".join(validation_items(e, prefix, model)) or str(e)


def validation_items(e, prefix: str = "", model=None) -> list[str]:
    """One ``setting = value: problem`` line per error of a pydantic ``ValidationError``.

    ``prefix`` names the section (``eval``, ``arms.cd.eval``); ``model`` (the config class) lets an
    unknown setting list the allowed ones.
    """
    items = []
    for err in e.errors():
        loc = _loc(tuple(err.get("loc") or ()))
        setting = ".".join(x for x in (prefix, loc) if x)
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            known = ""
            if model is not None and len(err.get("loc") or ()) == 1:
                known = f"; allowed: {', '.join(model.model_fields)}"
            items.append(f"unknown setting {setting}{known}")
        elif err.get("type") == "missing":
            items.append(f"{setting}: required setting missing")
        elif isinstance(value, dict) or not loc:
            items.append(f"{setting + ': ' if setting else ''}{msg}")
        else:
            items.append(f"{setting} = {value!r}: {msg}")
    return items


def describe(e: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit status)`` for an error a user can act on; None for a bug."""
    from pydantic import ValidationError

    from codistill.paths import DataNotFoundError

    code = getattr(e, "exit_code", None)
    if isinstance(e, ValidationError):
        return f"invalid settings: {describe_validation_error(e)}", 2
    if isinstance(e, DataNotFoundError):
        return f"data not found: {e}", 2
    if isinstance(e, FileNotFoundError):
        return (str(e) if e.filename is None else f"{e.strerror or 'not found'}: {e.filename}"), 2
    if isinstance(e, KeyError):
        return f"KeyError: {e}", 2
    if isinstance(e, ValueError):
        return str(e) or type(e).__name__, 2
    if isinstance(e, ImportError) and type(e).__name__ == "BackendUnavailableError":
        return str(e), 2
    if isinstance(e, (RuntimeError, OSError)) and not isinstance(e, (NotImplementedError, RecursionError)):
        return str(e) or type(e).__name__, code if isinstance(code, int) else 1
    return None
