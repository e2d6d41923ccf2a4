"""Build hook: compiles the state transition and the sequencer's core to C extensions with mypyc.

The STF and its trie are the hot path of the sequencer and of every node
replaying L1 data, and the sequencer's core (matching, intake checks, the
open batch, the journal's records) is the rest of an order's path; mypyc
turns their strictly typed Python into C extensions with the same behaviour
(``tests/test_compiled_state.py`` runs the same workload through both and
compares every batch, root and receipt). The ``.py`` sources stay the
specification: ``HFX_PURE=1`` builds without compiling, and removing the
``*.so`` files returns any checkout to pure Python.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

STATE_NOT_COMPILED = frozenset({"__init__", "nodestore"})
"""The state/ modules left as Python (``nodestore`` is I/O glue around LMDB)."""

SEQUENCER_COMPILED = ("book", "exchange", "intake", "journal", "open_batch", "orders", "outcomes", "probe")
"""The sequencer/ modules compiled: the synchronous core an order goes through."""
# node/compiled_state.py holds the same two lists; test_every_listed_module_is_compiled checks them.


def _extensions() -> list[object]:
    if os.environ.get("HFX_PURE") == "1":
        return []
    from mypyc.build import mypycify

    sources = sorted(str(p) for p in Path("state").glob("*.py") if p.stem not in STATE_NOT_COMPILED)
    sources += [f"sequencer/{name}.py" for name in SEQUENCER_COMPILED]
    return list(mypycify(sources, opt_level="3", group_name="hfx_core"))


setup(ext_modules=_extensions())
