"""Atomic writes: a file is either the old one or the complete new one, never half-written.

Write to a temporary file in the same folder, flush it to disk, then ``os.replace`` it over the
target (an atomic rename on POSIX and Windows). A Colab disconnect mid-write loses nothing.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj, path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_json(obj, path) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(json.dumps(obj, indent=1), path)
