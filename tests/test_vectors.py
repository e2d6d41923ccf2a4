"""Every stored STF vector replays from its JSON alone (format: tests/vectors.py).

Nothing here builds a world: each file's pre-state leaves, context and steps are
fed to ``state.transition.apply_step`` over a plain dict, and the receipts, the
changed leaves and both state roots must be the file's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from state.errors import Code
from state.txs import KIND_NAMES
from tests.vectors import FORMAT, VECTOR_DIR, assert_replays, load_vector, writing

FILES = sorted(VECTOR_DIR.glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_replays(path: Path) -> None:
    vector = load_vector(path)
    assert vector["format"] == FORMAT and vector["name"] == path.stem
    assert len(vector["receipts"]) == len(vector["steps"]) > 0
    assert_replays(vector)


@pytest.mark.skipif(writing(), reason="vectors are being regenerated")
def test_vectors_cover_every_kind_and_code() -> None:
    kinds_ok: set[int] = set()
    codes: set[Code] = set()
    for path in FILES:
        for r in load_vector(path)["receipts"]:
            codes.add(Code(r["code"]))
            if r["code"] == Code.OK:
                kinds_ok.add(r["kind"])
    assert kinds_ok == set(KIND_NAMES), "every step kind has an accepted vector"
    assert codes == set(Code), "every outcome code has a vector"
