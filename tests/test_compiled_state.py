"""The mypyc-compiled modules against their pure-Python sources (docs/compiled-state.md).

The sources are the specification; the compiled extensions must behave the
same on every input. One workload (``tests/compiled_worker.py``: the
standard flow through the sequencer, every batch replayed, and corrupted
batches applied) runs in two interpreters, one on this checkout's modules and
one on a copy of the ``*.py`` files of ``state/`` and ``sequencer/`` alone;
every line must agree. The Hypothesis
scenarios of ``test_stf_properties`` add a pure-Python replay beside the
in-process one as well.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sequencer.exchange
import state.transition
from node import compiled_state
from node.compiled_state import (
    compiled_modules,
    expected_compiled,
    missing_extensions,
    stale_extensions,
)
from tests.pure_state import REPO, pure_sources_copy

WORKER = Path(__file__).resolve().with_name("compiled_worker.py")
PURE_BUILD = os.environ.get("HFX_PURE") == "1"


def run_worker(*args: str) -> list[str]:
    """The worker's output lines (it runs in a fresh interpreter)."""
    proc = subprocess.run(
        [sys.executable, str(WORKER), *args], cwd=REPO, text=True, capture_output=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.skipif(PURE_BUILD, reason="HFX_PURE=1: built without compiling")
def test_every_listed_module_is_compiled() -> None:
    """A normal install compiles the whole STF and the sequencer's core; a module left as
    Python would be a silent slowdown."""
    assert compiled_modules() == expected_compiled()
    assert not str(state.transition.__file__).endswith(".py")
    assert not str(sequencer.exchange.__file__).endswith(".py")
    assert missing_extensions() == []


def test_setup_compiles_the_listed_modules() -> None:
    """setup.py (which runs before the package is importable) holds the same two lists."""
    assigned = {
        node.targets[0].id: node.value
        for node in ast.parse((REPO / "setup.py").read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    state_call = assigned["STATE_NOT_COMPILED"]
    assert isinstance(state_call, ast.Call)
    assert frozenset(ast.literal_eval(state_call.args[0])) == compiled_state.STATE_NOT_COMPILED
    assert ast.literal_eval(assigned["SEQUENCER_COMPILED"]) == compiled_state.SEQUENCER_COMPILED


def test_compiled_and_pure_state_agree_on_the_workload(tmp_path: Path) -> None:
    here = run_worker()
    pure = run_worker(str(pure_sources_copy(tmp_path)))
    assert pure[0] == "pure"
    assert here[0] == ("pure" if PURE_BUILD else "compiled")
    applied = sum(1 for line in pure if line.startswith("mutated") and " refused " not in line)
    assert applied >= 50, "the corrupted batches should mostly decode and run"
    assert len(here) == len(pure)
    for mine, theirs in zip(here[1:], pure[1:], strict=True):
        assert mine == theirs


def test_a_source_newer_than_its_extension_is_reported() -> None:
    """Newer than the module's extension and the group's shared library (which holds the code)."""
    if PURE_BUILD:
        pytest.skip("HFX_PURE=1: nothing compiled")
    source = Path(state.transition.__file__).with_name("transition.py")
    built = max(p.stat().st_mtime for p in [Path(state.transition.__file__), *REPO.glob("hfx_core__mypyc.*")])
    before = source.stat()
    try:
        os.utime(source, (before.st_atime, built + 10))
        assert "state/transition.py" in stale_extensions()
        os.utime(source, (before.st_atime, built - 10))
        assert "state/transition.py" not in stale_extensions()
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stale_extensions() == []
