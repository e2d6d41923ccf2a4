"""Build hook: compiles the state transition's modules to C extensions with mypyc.

The STF and its trie are the hot path of the sequencer and of every node
replaying L1 data; mypyc turns their strictly typed Python into C extensions
with the same behaviour (``tests/test_compiled_state.py`` runs the same
workload through both and compares every root and receipt). The ``.py``
sources stay the specification: ``HFX_PURE=1`` builds without compiling, and
removing the ``state/*.so`` files returns any checkout to pure Python.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

NOT_COMPILED = frozenset({"__init__", "nodestore"})
"""The state/ modules left as Python (``nodestore`` is I/O glue around LMDB); node/compiled_state.py agrees."""


def _extensions() -> list[object]:
    if os.environ.get("HFX_PURE") == "1":
        return []
    from mypyc.build import mypycify

    sources = sorted(str(p) for p in Path("state").glob("*.py") if p.stem not in NOT_COMPILED)
    return list(mypycify(sources, opt_level="3", group_name="hfx_state"))


setup(ext_modules=_extensions())
