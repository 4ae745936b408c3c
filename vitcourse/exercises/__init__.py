"""Checked exercises, one module per chapter (``ch03``, ``ch07``, ...): each exercise has ``check(fn)``,
``hint()`` and ``solution()`` (``_core.Exercise``). Chapters without a module yet have prose
exercises only."""
from ._core import Case, Exercise, Mistake, compare

__all__ = ["Case", "Exercise", "Mistake", "compare"]
