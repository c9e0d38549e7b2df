"""What the commands print of data that others wrote (names enrolled over the API, audit
subjects): shown, never obeyed, by the operator's terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on or could not show (control
    characters, escape sequences' ESC, bidirectional overrides, lone surrogates) written as
    its Python escape, e.g. ``\\x1b``."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
