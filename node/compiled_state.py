"""Which ``state/`` modules run compiled, and whether any is older than its source.

A normal install compiles the STF with mypyc (``setup.py``); the ``.py``
files stay the specification. A checkout whose ``state/*.py`` was edited (or
pulled) after the build would run the old extensions, so ``hfx`` warns on
start, and the test suite refuses to run (``tests/conftest.py``).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import state

STATE_DIR = Path(state.__file__).resolve().parent
NOT_COMPILED = frozenset({"__init__", "nodestore"})
"""The state/ modules left as Python. ``setup.py`` holds the same set (it runs before the
package is importable); ``test_every_listed_module_is_compiled`` fails if they differ."""


def expected_compiled() -> set[str]:
    """The state/ modules a normal install compiles."""
    return {p.stem for p in STATE_DIR.glob("*.py")} - NOT_COMPILED


def _extensions() -> list[tuple[str, Path]]:
    """``(module, file)`` for each extension module in state/."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)  # ".cpython-311-...so" before ".so"
    found = []
    for path in sorted(STATE_DIR.iterdir()):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is not None:
            found.append((path.name[: -len(suffix)], path))
    return found


def compiled_modules() -> set[str]:
    """The state/ modules that have a compiled extension."""
    return {name for name, _ in _extensions()}


def stale_extensions() -> list[str]:
    """Sources of state/ edited after their extension was built (sorted file names)."""
    stale = []
    for name, ext in _extensions():
        source = STATE_DIR / f"{name}.py"
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            stale.append(source.name)
    return sorted(stale)


def stale_warning() -> str | None:
    """A one-line warning when compiled modules are stale, else None."""
    stale = stale_extensions()
    if not stale:
        return None
    return (
        f"state/ was edited after it was compiled ({', '.join(stale)}): the old code would run; "
        "rebuild with `.venv/bin/pip install -e .`, or delete state/*.so to run the Python sources"
    )
