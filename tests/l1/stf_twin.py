"""Helpers for the differential tests of the Vyper STF twin (l1_contracts/contracts/stf/).

The Python STF (``state.transition.apply_step``) is the reference: a step is run
on a recording ``StateView`` to learn the exact keys it touches, the twin is
given those keys' pre-values as its witness (absent keys included), and the
twin's written leaves, applied to the pre-state, must give Python's post-state
byte for byte, with the same outcome code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boa
from boa.contracts.vyper.vyper_contract import VyperContract
from eth_utils.address import to_checksum_address

from proofs.witness import referenced_orders
from state.batch import pack_entry
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.layout import GLOBAL_KEY, Global
from state.transition import Receipt, apply_step
from state.txs import KIND_DEPOSIT, KIND_FORCED
from state.view import StateView

STF_DIR = Path(__file__).resolve().parents[2] / "l1_contracts" / "contracts" / "stf"
CONTRACTS = ("StfAccounts", "StfTrade", "StfPrices", "StfLiquidation")
PART_OF = {
    "deposit": "StfAccounts", "withdraw": "StfAccounts", "cancel": "StfAccounts", "forced": "StfAccounts",
    "trade": "StfTrade", "oracle": "StfPrices", "funding": "StfPrices", "settle": "StfPrices",
    "liquidate": "StfLiquidation", "deleverage": "StfLiquidation",
}
"""The step contract that executes each kind."""
EIP170_LIMIT = 24_576
MAX_PAYLOAD = 64
"""The twin's bound on forced payloads (the bridge's is 40 bytes)."""
MAX_STEP = 19_901
"""The longest step ``Stf.execute`` takes (an oracle step of 255 entries and 255 signatures)."""

Leaves = dict[bytes, bytes]
LeafTuple = tuple[bytes, bool, bytes]


class DictSource:
    """A leaf source over a plain dict."""

    def __init__(self, leaves: Mapping[bytes, bytes]) -> None:
        self.leaves = leaves

    def get(self, key: bytes) -> bytes | None:
        return self.leaves.get(key)


@dataclass
class Twin:
    """The deployed twin: the dispatcher and the four step contracts."""

    stf: VyperContract
    parts: dict[str, VyperContract]

    def runtime_sizes(self) -> dict[str, int]:
        """Runtime bytecode size of every contract (EIP-170 applies to these)."""
        sizes = {name: len(c.bytecode) for name, c in self.parts.items()}
        sizes["Stf"] = len(self.stf.bytecode)
        return sizes


def deploy() -> Twin:
    """Deploy the four step contracts and the dispatcher bound to them."""
    parts = {name: boa.load(str(STF_DIR / f"{name}.vy")) for name in CONTRACTS}
    stf = boa.load(str(STF_DIR / "Stf.vy"), *(parts[n].address for n in CONTRACTS))
    return Twin(stf, parts)


def harness() -> VyperContract:
    """The test-only contract exposing the twin's arithmetic and codec helpers."""
    return boa.load(str(STF_DIR / "StfHarness.vy"))


# ---------------------------------------------------------------- Python side


@dataclass(frozen=True)
class PyStep:
    """One step run by the Python STF."""

    receipt: Receipt
    touched: frozenset[bytes]
    post: Leaves


def run_python(leaves: Mapping[bytes, bytes], step: bytes, ctx: BatchContext) -> PyStep:
    """Run ``step`` on ``leaves`` with the reference STF, recording the keys it touches."""
    view = StateView(DictSource(leaves), record=True)
    receipt = apply_step(view, step, ctx)
    post = dict(leaves)
    post.update(view.dirty_leaves())
    assert view.touched is not None
    return PyStep(receipt, frozenset(view.touched), post)


def witness(leaves: Mapping[bytes, bytes], keys: Sequence[bytes] | frozenset[bytes]) -> list[LeafTuple]:
    """The witness of ``keys``: each key with its presence and pre-value."""
    return [(k, k in leaves, leaves.get(k, b"")) for k in sorted(keys)]


def to_address(raw: bytes) -> str:
    """A 20-byte address as the checksummed string the ABI encoder takes."""
    return to_checksum_address(raw)


def from_address(addr: Any) -> bytes:
    """An address returned by a contract call, as 20 bytes."""
    text = str(addr)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def vyper_context(
    leaves: Mapping[bytes, bytes], step: bytes, time: int, chain: ChainConfig,
    orders: Sequence[bytes], queues: ListQueues,
) -> tuple[Any, ...]:
    """The twin's ``Context`` for ``step``: the referenced order entries and the queue
    item at the global leaf's pointer (for deposit and forced steps)."""
    refs = sorted({r for r in referenced_orders(step) if r < len(orders)})
    entries = [(r, pack_entry(orders[r])) for r in refs]  # as the batch writes them
    queue: tuple[Any, ...] = (0, False, to_address(bytes(20)), 0, b"")
    if step in (bytes([KIND_DEPOSIT]), bytes([KIND_FORCED])) and GLOBAL_KEY in leaves:
        g = Global.decode(leaves[GLOBAL_KEY])
        if step[0] == KIND_DEPOSIT:
            d = queues.deposit(g.next_deposit)
            if d is not None:
                queue = (g.next_deposit, True, to_address(d.owner), d.amount, b"")
            else:
                queue = (g.next_deposit, False, to_address(bytes(20)), 0, b"")
        else:
            f = queues.forced(g.next_forced)
            if f is not None:
                assert len(f.payload) <= MAX_PAYLOAD
                queue = (g.next_forced, True, to_address(f.sender), 0, f.payload)
            else:
                queue = (g.next_forced, False, to_address(bytes(20)), 0, b"")
    keys = [to_address(k) for k in sorted(chain.oracle_keys)]
    return (time, chain.domain, keys, chain.oracle_threshold, len(orders), entries, queue)


# ---------------------------------------------------------------- the differential check


@dataclass(frozen=True)
class Outcome:
    """One step through the twin."""

    code: int
    writes: list[LeafTuple]
    gas: int


def run_twin(twin: Twin, step: bytes, context: tuple[Any, ...], leaves: list[LeafTuple]) -> Outcome:
    """Run ``step`` through the dispatcher and return its code, writes and execution gas
    (a step longer than MAX_STEP writes nothing and is decided by ``long_step_code``)."""
    if len(step) > MAX_STEP:
        return Outcome(int(twin.stf.long_step_code(step[0])), [], 0)
    code, writes = twin.stf.execute(step, context, leaves)
    gas = int(twin.stf._computation.get_gas_used())
    return Outcome(int(code), [(bytes(k), bool(p), bytes(v)) for k, p, v in writes], gas)


def apply_writes(leaves: Mapping[bytes, bytes], writes: Sequence[LeafTuple]) -> Leaves:
    """The leaves after the twin's writes."""
    post = dict(leaves)
    for key, present, value in writes:
        assert present, "the twin never deletes a key"
        post[key] = value
    return post


def check_step(
    twin: Twin, leaves: Mapping[bytes, bytes], step: bytes, ctx: BatchContext,
    orders: Sequence[bytes], queues: ListQueues,
) -> tuple[PyStep, Outcome]:
    """Run ``step`` in Python and in the twin on the same pre-state; assert they agree."""
    py = run_python(leaves, step, ctx)
    context = vyper_context(leaves, step, ctx.time, ctx.chain, orders, queues)
    out = run_twin(twin, step, context, witness(leaves, py.touched))
    assert out.code == int(py.receipt.code), (
        f"step {step.hex()}: twin code {out.code}, Python {py.receipt.code!r}"
    )
    written = {k for k, _, _ in out.writes}
    assert written <= py.touched, "the twin writes a key the Python STF does not touch"
    post = apply_writes(leaves, out.writes)
    if post != py.post:
        diff = {k.hex(): (post.get(k, b"").hex(), py.post.get(k, b"").hex())
                for k in set(post) | set(py.post) if post.get(k) != py.post.get(k)}
        raise AssertionError(f"step {step.hex()} ({py.receipt.code!r}): leaves differ {diff}")
    return py, out


def run_batch(
    twin: Twin, leaves: Leaves, steps: Sequence[bytes], time: int, chain: ChainConfig,
    orders: Sequence[bytes], queues: ListQueues,
) -> tuple[Leaves, list[tuple[PyStep, Outcome]]]:
    """Check every step of a batch in order; returns the final leaves and each step's results."""
    ctx = BatchContext.create(time, chain, queues, list(orders))
    results = []
    for step in steps:
        py, out = check_step(twin, leaves, step, ctx, orders, queues)
        leaves = py.post
        results.append((py, out))
    return leaves, results


def queues_of(deposits: Sequence[L1Deposit], forced: Sequence[L1Forced]) -> ListQueues:
    """In-memory queues."""
    return ListQueues(list(deposits), list(forced))
