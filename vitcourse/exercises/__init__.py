"""Checked exercises, one module per chapter (``ch00`` ... ``ch07``): each exercise has ``check(fn)``
(or ``check(value)``), ``hint()`` and ``solution()`` (``_core.Exercise``); each notebook's "Checked
exercises" section holds their stub cells."""
from ._core import Case, Exercise, Mistake, compare

__all__ = ["Case", "Exercise", "Mistake", "compare"]
