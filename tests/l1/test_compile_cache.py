"""The compilation cache of ``l1_contracts.deploy.compile_cached``: a second compile is served from
disk, a change to the contract or to a module it imports compiles again, a damaged entry is
replaced, never trusted. A two-file contract in a temporary directory keeps it fast (~1 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l1_contracts import deploy
from l1_contracts.deploy import cache_dir, compile_cached

LIB = """
@internal
@pure
def scale(x: uint256) -> uint256:
    return x * {factor}
"""

MAIN = """
import lib

@external
@pure
def f(x: uint256) -> uint256:
    return lib.scale(x)
"""


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    d = tmp_path / "contracts"
    (d / "sub").mkdir(parents=True)
    (d / "lib.vy").write_text(LIB.format(factor=2))
    (d / "sub" / "Main.vy").write_text(MAIN.replace("import lib", "from .. import lib"))
    (d / "Main.vy").write_text(MAIN)
    return d


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "compiled").glob("*.json"))


def test_the_second_compile_is_a_hit_and_an_imported_change_a_miss(contracts: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, hit = compile_cached("Main", contracts=contracts, cache=cache)
    assert not hit and first.abi[0]["name"] == "f" and first.bytecode
    [entry] = _entries(cache)
    second, hit = compile_cached("Main", contracts=contracts, cache=cache)
    assert hit and second == first
    # the imported module changes: compiled again, to other code, and cached again
    (contracts / "lib.vy").write_text(LIB.format(factor=3))
    third, hit = compile_cached("Main", contracts=contracts, cache=cache)
    assert not hit and third.bytecode != first.bytecode
    assert compile_cached("Main", contracts=contracts, cache=cache) == (third, True)
    # the contract's own source changes (a comment is a change of bytes)
    (contracts / "Main.vy").write_text(MAIN + "\n# another version\n")
    assert not compile_cached("Main", contracts=contracts, cache=cache)[1]
    assert compile_cached("Main", contracts=contracts, cache=cache)[1]
    # a contract in a subdirectory (``sub/Main``) has its own entry
    sub, hit = compile_cached("sub/Main", contracts=contracts, cache=cache)
    assert not hit and sub.name == "sub/Main"
    assert compile_cached("sub/Main", contracts=contracts, cache=cache) == (sub, True)
    # one entry per contract and version of its own source (an import's change replaces it)
    assert entry in _entries(cache) and len(_entries(cache)) == 3
    assert not [p for p in (cache / "compiled").iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("damage", ["truncated", "bytecode", "garbage", "empty"])
def test_a_damaged_entry_is_compiled_again_and_replaced(contracts: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    good, _ = compile_cached("Main", contracts=contracts, cache=cache)
    [entry] = _entries(cache)
    text = entry.read_text()
    if damage == "truncated":
        entry.write_text(text[: len(text) // 2])
    elif damage == "bytecode":  # valid JSON, one byte of code changed: the checksum catches it
        raw = json.loads(text)
        code = raw["body"]["bytecode"]
        raw["body"]["bytecode"] = code[:-2] + ("00" if code[-2:] != "00" else "01")
        entry.write_text(json.dumps(raw))
    elif damage == "garbage":
        entry.write_bytes(b"\xff\x00not json")
    else:
        entry.write_text("")
    again, hit = compile_cached("Main", contracts=contracts, cache=cache)
    assert not hit and again == good
    assert json.loads(entry.read_text())["body"]["bytecode"] == good.bytecode.hex()
    assert compile_cached("Main", contracts=contracts, cache=cache) == (good, True)


def test_the_cache_directory_and_refusals(contracts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFX_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    compile_cached("Main", contracts=contracts)
    assert _entries(tmp_path / "elsewhere")
    monkeypatch.delenv("HFX_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "hfx"
    with pytest.raises(FileNotFoundError):
        compile_cached("Missing", contracts=contracts, cache=tmp_path / "c")
    # a cache that cannot be written still compiles
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    assert not compile_cached("Main", contracts=contracts, cache=blocked)[1]


def test_the_real_contracts_go_through_the_cache(tmp_path: Path) -> None:
    token, hit = compile_cached("Token", cache=tmp_path)
    assert not hit
    again, hit = compile_cached("Token", cache=tmp_path)
    assert hit and again == token and deploy.compile_contract("Token").abi == token.abi
