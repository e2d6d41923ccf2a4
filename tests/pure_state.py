"""Helpers for tests that compare the compiled ``state/`` with its pure-Python sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from node.compiled_state import STATE_DIR

REPO = STATE_DIR.parent


def pure_state_copy(directory: Path) -> Path:
    """A directory whose ``state`` package is a copy of ``state/*.py`` only; put it first on sys.path."""
    target = directory / "state"
    target.mkdir(parents=True)
    for source in STATE_DIR.glob("*.py"):
        shutil.copy2(source, target / source.name)
    return directory
