"""Which modules run compiled, and whether any is older than its source.

A normal install compiles the STF (``state/``) and the sequencer's core with
mypyc (``setup.py``); the ``.py`` files stay the specification. A checkout
whose sources were edited (or pulled) after the build would run the old
extensions, so ``hfx`` warns on start, and the test suite refuses to run
(``tests/conftest.py``).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import state

REPO = Path(state.__file__).resolve().parent.parent
STATE_DIR = REPO / "state"
STATE_NOT_COMPILED = frozenset({"__init__", "nodestore"})
"""The state/ modules left as Python."""
SEQUENCER_COMPILED = ("book", "exchange", "intake", "journal", "open_batch", "orders", "outcomes", "probe")
"""The sequencer/ modules compiled. ``setup.py`` holds the same lists (it runs before the
package is importable); ``test_every_listed_module_is_compiled`` fails if they differ."""
GROUP = "hfx_core"
"""mypyc's group name in ``setup.py``."""
PACKAGES = ("state", "sequencer")
"""The packages that hold compiled modules."""


def expected_compiled() -> set[str]:
    """The modules a normal install compiles, as dotted names."""
    found = {f"state.{p.stem}" for p in STATE_DIR.glob("*.py") if p.stem not in STATE_NOT_COMPILED}
    return found | {f"sequencer.{name}" for name in SEQUENCER_COMPILED}


def _extensions() -> list[tuple[str, Path]]:
    """``(dotted module, file)`` for each extension module in the compiled packages."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)  # ".cpython-311-...so" before ".so"
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).iterdir()):
            suffix = next((s for s in suffixes if path.name.endswith(s)), None)
            if suffix is not None:
                found.append((f"{package}.{path.name[: -len(suffix)]}", path))
    return found


def compiled_modules() -> set[str]:
    """The modules that have a compiled extension, as dotted names."""
    return {name for name, _ in _extensions()}


def _group_built() -> float:
    """When the shared library of the compiled group (``hfx_core__mypyc``, which holds the
    code; each module's own extension only loads it) was last written; 0 if none."""
    return max((p.stat().st_mtime for p in REPO.glob(f"{GROUP}__mypyc.*")), default=0.0)


def stale_extensions() -> list[str]:
    """Sources edited after their extension was built (sorted paths such as ``state/trie.py``)."""
    stale = []
    group = _group_built()
    for name, ext in _extensions():
        package, module = name.split(".")
        source = REPO / package / f"{module}.py"
        if source.exists() and source.stat().st_mtime > max(ext.stat().st_mtime, group):
            stale.append(f"{package}/{module}.py")
    return sorted(stale)


def missing_extensions() -> list[str]:
    """Modules a normal install compiles that have no extension, when others have one (a
    build older than the list: say, a checkout pulled after it was built)."""
    compiled = compiled_modules()
    if not compiled:  # a pure build (HFX_PURE=1): nothing is missing
        return []
    return sorted(f"{name.replace('.', '/')}.py" for name in expected_compiled() - compiled)


def stale_warning() -> str | None:
    """A one-line warning when compiled modules are stale or missing, else None."""
    stale = stale_extensions() + missing_extensions()
    if not stale:
        return None
    return (
        f"compiled modules are older than their sources, or missing ({', '.join(stale)}): the old code "
        "would run; "
        "rebuild with `.venv/bin/pip install -e .`, or delete state/*.so and sequencer/*.so to run the "
        "Python sources"
    )
