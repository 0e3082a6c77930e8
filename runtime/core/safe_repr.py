"""A bounded ``repr`` for values a client sent, so that an error message about them can always be built.

A plain ``{value!r}`` of an attacker's structure can raise (``RecursionError`` on a list nested a thousand deep) or
grow without limit (a megabyte string); ``bounded_repr`` stops at a few levels and a few dozen characters, and never
raises. Imports nothing but the standard library.
"""

from __future__ import annotations

import reprlib

MAX_CHARS = 80

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlong = 40
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_REPR, _name, 4)


def bounded_repr(value: object, max_chars: int = MAX_CHARS) -> str:
    """``repr(value)`` cut to a few levels and at most ``max_chars`` characters; never raises."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose own repr fails is still named, by its type
        text = f"<{type(value).__name__}>"
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def describe_exception(exc: BaseException, max_chars: int = 200) -> str:
    """``"TypeName: message"`` with the message cut to ``max_chars`` (it may quote what the client sent)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
