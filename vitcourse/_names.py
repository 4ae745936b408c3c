"""The message for a name that is not known (a model, a data set, a ViT part): the closest known
names, then all of them, so that a typo is fixed from the message alone."""
from __future__ import annotations

import difflib
from typing import Iterable


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names ``name`` may have meant: those it begins (``vit_tiny`` for the
    ``vit_tiny_patch16_224``s, whose long suffix puts them below difflib's similarity cutoff), else
    difflib's closest."""
    known = sorted(known)
    starting = [k for k in known if name and k.startswith(name)]
    return starting[:n] or difflib.get_close_matches(name, known, n=n)


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown <kind> 'name'. Did you mean 'a', 'b' or 'c'? Known <kind>s: ...``"""
    known = sorted(known)
    close = [repr(k) for k in close_names(name, known)]
    hint = ""
    if close:
        options = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        hint = f" Did you mean {options}?"
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}."
