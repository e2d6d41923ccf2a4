"""Helpers for tests that compare the compiled modules with their pure-Python sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from node.compiled_state import PACKAGES, REPO

__all__ = ["REPO", "pure_sources_copy"]


def pure_sources_copy(directory: Path) -> Path:
    """A directory holding copies of the compiled packages' ``*.py`` files only (``state/``
    and ``sequencer/``); put it first on sys.path to run them as pure Python."""
    for package in PACKAGES:
        target = directory / package
        target.mkdir(parents=True)
        for source in (REPO / package).glob("*.py"):
            shutil.copy2(source, target / source.name)
    return directory
