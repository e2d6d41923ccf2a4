"""State-transition test vectors: tests that are also vectors.

A test calls :func:`check_vector` instead of ``world.run``: the batch is run
through the real STF exactly as before, and its full input and output are
captured as one JSON document. With ``HFX_WRITE_VECTORS=1`` in the environment
the document is written to ``tests/vectors/<name>.json``; otherwise the stored
file is loaded and must be equal, so any change of the STF's behaviour fails
the test until the vectors are deliberately regenerated. Every stored vector
is also replayed from its JSON alone by ``tests/test_vectors.py``.

File format (one vector = one batch; JSON, sorted keys, 1-space indent,
byte strings as lower-case hex with ``0x``, integers as JSON numbers, which
may exceed 2**53: parse them as arbitrary-precision integers)::

    {
      "format": "hfx-stf-vector/1",
      "name": "<file stem>",
      "context": {                    # everything the STF reads besides the state
        "time": <u64>,                # the batch timestamp
        "chain_id": <uint>,           # EIP-712 domain: L1 chain id ...
        "rollup": "0x<20 bytes>",     # ... and rollup contract address
        "oracle_keys": ["0x<20 bytes>", ...],   # the oracle key set, sorted
        "oracle_threshold": <int>,
        "orders": ["0x<bytes>", ...], # the batch's order table, in order (refs are indices)
        "deposits": [{"owner": "0x<20 bytes>", "amount": <int>}, ...],
        "forced": [{"sender": "0x<20 bytes>", "payload": "0x<bytes>"}, ...]
      },                              # deposits/forced: the whole L1 queues from
                                      # position 0 (the global leaf's next_deposit /
                                      # next_forced say where the batch starts)
      "pre": {
        "root": "0x<32 bytes>",       # state root of the pre-state
        "leaves": {"0x<32-byte key>": "0x<value>", ...}   # every leaf of the pre-state
      },
      "steps": ["0x<step bytes>", ...],                # applied in order
      "receipts": [{"kind": <int>, "code": <int>, "name": "<Code name>"}, ...],
      "post": {
        "root": "0x<32 bytes>",       # state root after every step
        "leaves": {"0x<key>": "0x<value>", ...}   # only leaves whose bytes changed or
      }                                           # that are new (keys are never deleted)
    }

The state root is that of ``trie.HexaryTrie`` holding every leaf under its
32-byte key (docs/stf.md §4). The post-state is the pre-state updated with
``post.leaves``. To replay a vector: rebuild the leaves, build a
``BatchContext`` from ``context`` (with ``ListQueues``), apply each step with
``state.transition.apply_step`` on one ``StateView`` over the leaves, compare
the receipts, fold ``view.dirty_leaves()`` into the leaves and compare the
root (:func:`replay_vector` does exactly this).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trie.hexary import HexaryTrie

from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.errors import Code
from state.transition import Receipt, apply_step
from state.view import StateView
from tests.world import World

FORMAT = "hfx-stf-vector/1"
VECTOR_DIR = Path(__file__).resolve().parent / "vectors"
WRITE_ENV = "HFX_WRITE_VECTORS"
_NAME = re.compile(r"^[a-z0-9_]+$")

Vector = dict[str, Any]


def writing() -> bool:
    """True when vectors are being (re)generated rather than checked."""
    return os.environ.get(WRITE_ENV) == "1"


def hx(data: bytes) -> str:
    """Bytes as a 0x-prefixed lower-case hex string."""
    return "0x" + data.hex()


def unhx(text: str) -> bytes:
    """Inverse of :func:`hx`."""
    if not text.startswith("0x"):
        raise ValueError(f"not a 0x hex string: {text!r}")
    return bytes.fromhex(text[2:])


def state_root(leaves: Mapping[bytes, bytes]) -> bytes:
    """Root of the hexary Merkle-Patricia trie holding ``leaves``."""
    t = HexaryTrie({})
    with t.squash_changes() as batch:
        for key in sorted(leaves):
            batch[key] = leaves[key]
    return bytes(t.root_hash)


def _leaves_json(leaves: Mapping[bytes, bytes]) -> dict[str, str]:
    return {hx(k): hx(v) for k, v in sorted(leaves.items())}


def _leaves_from_json(leaves: Mapping[str, str]) -> dict[bytes, bytes]:
    return {unhx(k): unhx(v) for k, v in leaves.items()}


def _receipts_json(receipts: Sequence[Receipt]) -> list[dict[str, Any]]:
    return [{"kind": r.kind, "code": int(r.code), "name": r.code.name} for r in receipts]


def changed_leaves(pre: Mapping[bytes, bytes], post: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """Leaves of ``post`` that are new or whose bytes differ from ``pre``."""
    return {k: v for k, v in post.items() if pre.get(k) != v}


def build_vector(
    name: str, world: World, steps: Sequence[bytes], orders: Sequence[bytes] = (),
    time: int | None = None,
) -> tuple[Vector, list[Receipt]]:
    """Run one batch on ``world`` (committing it, like ``world.run``) and capture it."""
    if not _NAME.match(name):
        raise ValueError(f"bad vector name {name!r}")
    pre = dict(world.leaves)
    batch_time = world.time if time is None else time
    chain = world.chain
    context = {
        "time": batch_time,
        "chain_id": chain.chain_id,
        "rollup": hx(chain.rollup),
        "oracle_keys": sorted(hx(k) for k in chain.oracle_keys),
        "oracle_threshold": chain.oracle_threshold,
        "orders": [hx(o) for o in orders],
        "deposits": [{"owner": hx(d.owner), "amount": d.amount} for d in world.queues.deposits],
        "forced": [{"sender": hx(f.sender), "payload": hx(f.payload)} for f in world.queues.forced_txs],
    }
    receipts = world.run(list(steps), list(orders), time)
    post = dict(world.leaves)
    vector: Vector = {
        "format": FORMAT,
        "name": name,
        "context": context,
        "pre": {"root": hx(state_root(pre)), "leaves": _leaves_json(pre)},
        "steps": [hx(s) for s in steps],
        "receipts": _receipts_json(receipts),
        "post": {"root": hx(state_root(post)), "leaves": _leaves_json(changed_leaves(pre, post))},
    }
    # normalise through JSON so that a fresh vector compares equal to a loaded one
    return json.loads(dump_vector(vector)), receipts


def dump_vector(vector: Vector) -> str:
    """The stable text of a vector file."""
    return json.dumps(vector, indent=1, sort_keys=True) + "\n"


def vector_path(name: str) -> Path:
    """Where vector ``name`` is stored."""
    return VECTOR_DIR / f"{name}.json"


def load_vector(path: Path) -> Vector:
    """Read one vector file."""
    with path.open() as f:
        data: Vector = json.load(f)
    return data


def replay_vector(vector: Vector) -> tuple[list[dict[str, Any]], dict[bytes, bytes], bytes, bytes]:
    """Replay a vector from its JSON alone.

    Returns the receipts (as in the file), the changed leaves, the pre root and
    the post root, all recomputed."""
    ctx_json = vector["context"]
    leaves = _leaves_from_json(vector["pre"]["leaves"])
    pre = dict(leaves)
    chain = ChainConfig(
        ctx_json["chain_id"], unhx(ctx_json["rollup"]),
        frozenset(unhx(k) for k in ctx_json["oracle_keys"]), ctx_json["oracle_threshold"],
    )
    queues = ListQueues(
        [L1Deposit(unhx(d["owner"]), d["amount"]) for d in ctx_json["deposits"]],
        [L1Forced(unhx(f["sender"]), unhx(f["payload"])) for f in ctx_json["forced"]],
    )
    ctx = BatchContext.create(ctx_json["time"], chain, queues, [unhx(o) for o in ctx_json["orders"]])
    view = StateView(leaves)
    receipts = [apply_step(view, unhx(s), ctx) for s in vector["steps"]]
    leaves.update(view.dirty_leaves())
    return _receipts_json(receipts), changed_leaves(pre, leaves), state_root(pre), state_root(leaves)


def assert_replays(vector: Vector) -> None:
    """Replaying ``vector`` from its JSON gives its receipts, changed leaves and roots."""
    receipts, changed, pre_root, post_root = replay_vector(vector)
    assert receipts == vector["receipts"]
    assert _leaves_json(changed) == vector["post"]["leaves"]
    assert hx(pre_root) == vector["pre"]["root"]
    assert hx(post_root) == vector["post"]["root"]
    for r in vector["receipts"]:
        assert Code(r["code"]).name == r["name"]


def check_vector(
    name: str, world: World, steps: Sequence[bytes], orders: Sequence[bytes] = (),
    time: int | None = None,
) -> list[Receipt]:
    """Run one batch on ``world`` and write or check vector ``name``; returns the receipts."""
    vector, receipts = build_vector(name, world, steps, orders, time)
    path = vector_path(name)
    if writing():
        assert_replays(vector)
        VECTOR_DIR.mkdir(exist_ok=True)
        path.write_text(dump_vector(vector))
        return receipts
    assert path.exists(), f"vector {path.name} is missing: regenerate with {WRITE_ENV}=1"
    stored = load_vector(path)
    for section in ("format", "name", "context", "steps", "pre", "receipts", "post"):
        assert vector[section] == stored[section], f"vector {name}: {section} differs from {path.name}"
    assert vector == stored
    return receipts
