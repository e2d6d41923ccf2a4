"""titanoboa stand-ins for what the node and the challenger read from and send to L1.

titanoboa runs the contracts in-process but keeps no chain history (no blocks
to scan, no transactions to fetch), so these helpers keep a :class:`Journal`
of the raw logs of every rollup call the tests make, each with a block number
and a synthetic transaction hash, and serve from it what an Ethereum node
would: the batch events (decoded by the node's own decoder,
``node.rollup_events``), ``GameCreated`` and ``RootsPosted``, and the bytes of
``postBatch`` transactions.

- :class:`BoaBridgeReader`: the bridge's queues, for ``node.queues.CachedQueues``;
- :class:`BoaFeed`: posts batches through ``tests.l1.fixtures_rollup.L1Chain``
  and feeds the journal's batch events to a ``Derivation`` exactly as the
  follower does (``node.follower.handle_event``);
- :class:`BoaDisputeChain`: ``challenger.chain.DisputeChain`` over titanoboa;
- :class:`BoaAsserter`: the sequencer's side of games, by the pure solver's
  asserter rules, from a trace (honest or lying).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import boa
from eth_abi.abi import decode
from eth_utils import to_checksum_address

from challenger.chain import Game, GameStatus, RollupConstants
from challenger.solver import GameState, PostRoots, Side, asserter_move
from l1_contracts.bindings import BatchData, game_info_from_abi, prove_calldata
from node.derive import Derivation
from node.follower import handle_event
from node.l1 import l1_error
from node.queues import CachedQueues
from node.rollup_events import decode_batch_log
from proofs.onestep import ProverInput
from state.batch import Batch
from state.context import L1Deposit, L1Forced
from state.keccak import keccak256
from tests.l1.fixtures_rollup import L1Chain, Posted, now

GAME_CREATED = keccak256(b"GameCreated(uint256,uint256,address,address,uint256,uint256,bytes32,bytes32,uint256)")
ROOTS_POSTED = keccak256(b"RootsPosted(uint256,uint256,uint256,uint256,bytes32[])")
CODE = re.compile(r"\b([A-Z][A-Z0-9_]{3,})\b")


def l1_call(fn: Callable[[], Any]) -> Any:
    """Run a titanoboa call; a revert raises ``node.l1.L1Error`` with the contract's reason code."""
    try:
        return fn()
    except boa.BoaError as exc:
        text = str(exc)
        codes = [c for c in CODE.findall(text) if c not in {"BOA", "REVERT"}]
        raise l1_error(codes[0] if codes else "REVERTED", text.splitlines()[0] if text else "") from exc


@dataclass
class Entry:
    """One log with where it sits."""

    block: int
    tx_hash: bytes
    log_index: int
    topics: list[bytes]
    data: bytes

    def as_web3(self) -> dict[str, Any]:
        """The log as web3 returns it."""
        return {
            "topics": self.topics, "data": self.data, "blockNumber": self.block,
            "transactionHash": self.tx_hash, "logIndex": self.log_index,
        }


@dataclass
class Journal:
    """The rollup's logs, call by call (one call = one transaction = one block)."""

    rollup: Any
    entries: list[Entry] = field(default_factory=list)
    inputs: dict[bytes, bytes] = field(default_factory=dict)
    """Transaction hash -> batch bytes, for postBatch calls."""
    block: int = 0

    def record(self, computation_of: Any, batch_bytes: bytes | None = None) -> bytes:
        """Journal the logs of ``computation_of``'s last call (a contract, or a computation)."""
        self.block += 1
        tx_hash = keccak256(b"tx:%d" % self.block)
        comp = getattr(computation_of, "_computation", computation_of)
        rollup = bytes.fromhex(str(self.rollup.address)[2:])
        for i, (_, address, topics, data) in enumerate(sorted(comp.get_raw_log_entries())):
            if bytes(address) != rollup:
                continue
            self.entries.append(Entry(
                self.block, tx_hash, i, [t.to_bytes(32, "big") for t in topics], bytes(data),
            ))
        if batch_bytes is not None:
            self.inputs[tx_hash] = batch_bytes
        return tx_hash

    def logs(self, start: int = 0) -> list[Entry]:
        """Entries from index ``start`` on."""
        return self.entries[start:]


class BoaBridgeReader:
    """``node.queues.QueueReader`` over the titanoboa bridge."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.calls = 0

    def deposits(self, start: int, end: int) -> list[L1Deposit]:
        self.calls += 1
        out = []
        for i in range(start, end):
            item = l1_call(lambda i=i: self.bridge.depositAt(i))
            out.append(L1Deposit(bytes.fromhex(str(item[0])[2:]), int(item[1])))
        return out

    def forced(self, start: int, end: int) -> list[L1Forced]:
        self.calls += 1
        out = []
        for i in range(start, end):
            item = l1_call(lambda i=i: self.bridge.forcedAt(i))
            out.append(L1Forced(bytes.fromhex(str(item[0])[2:]), bytes(item[1])))
        return out


class BoaFeed:
    """Posts batches on a titanoboa L1Chain and feeds the batch events to a derivation."""

    def __init__(self, chain: L1Chain, derivation: Derivation, journal: Journal | None = None) -> None:
        self.chain = chain
        self.derivation = derivation
        self.journal = journal or Journal(chain.rollup)
        self.reader = BoaBridgeReader(chain.bridge)
        self.queues = CachedQueues(self.reader)
        self.done = 0
        """Journal entries fed so far."""

    def post(self, batch: Batch, root: bytes | None = None, **kw: Any) -> Posted:
        """Post ``batch`` (``L1Chain.post``), journal its logs and feed them."""
        posted = self.chain.post(batch, root, **kw)
        self.journal.record(self.chain.rollup, batch.encode())
        self.sync()
        return posted

    def sync(self) -> list[int]:
        """Feed every journalled batch event not fed yet; returns the batches changed."""
        changed: list[int] = []
        for entry in self.journal.logs(self.done):
            event = decode_batch_log(entry.as_web3())
            if event is not None:
                changed += handle_event(self.derivation, self.queues, event, self.journal.inputs.get)
            self.done += 1
        if self.journal.entries:
            last = self.journal.entries[-1]
            self.derivation.set_progress(last.block, keccak256(b"block:%d" % last.block))
        return changed


class BoaDisputeChain:
    """``challenger.chain.DisputeChain`` over titanoboa, for ``address``."""

    def __init__(self, chain: L1Chain, journal: Journal, address: str) -> None:
        self.chain = chain
        self.journal = journal
        self._address = to_checksum_address(address)
        self.sent: list[str] = []

    @property
    def address(self) -> str:
        return self._address

    def constants(self) -> RollupConstants:
        r = self.chain.rollup
        return RollupConstants(int(r.K()), int(r.CHALLENGER_BOND()), int(r.CLOCK()))

    def now(self) -> int:
        return now()

    def free_bond(self) -> int:
        return int(self.chain.rollup.freeBond(self._address))

    def batch_status(self, index: int) -> int:
        return int(self.chain.rollup.batchStatus(index))

    def my_games(self) -> list[int]:
        me = bytes(12) + bytes.fromhex(self._address[2:])
        return [
            int.from_bytes(e.topics[1], "big") for e in self.journal.entries
            if e.topics[0] == GAME_CREATED and e.topics[3] == me
        ]

    def game(self, gid: int) -> Game:
        return Game.of(game_info_from_abi(gid, self.chain.rollup.game(gid)))

    def round_roots(self, gid: int, round_: int) -> tuple[bytes, ...] | None:
        for e in self.journal.entries:
            if e.topics[0] == ROOTS_POSTED and int.from_bytes(e.topics[1], "big") == gid:
                r, _lo, _hi, roots = decode(["uint256", "uint256", "uint256", "bytes32[]"], e.data)
                if int(r) == round_:
                    return tuple(bytes(x) for x in roots)
        return None

    def batch_bytes(self, tx_hash: bytes) -> bytes | None:
        return self.journal.inputs.get(tx_hash)

    def _send(self, name: str, fn: Callable[[], Any]) -> Any:
        with boa.env.prank(self._address):
            out = l1_call(fn)
        self.journal.record(self.chain.rollup)
        self.sent.append(name)
        return out

    def create_game(self, batch: int, value: int) -> int:
        boa.env.set_balance(self._address, boa.env.get_balance(self._address) + value)
        return int(self._send("createGame", lambda: self.chain.rollup.createGame(batch, value=value)))

    def choose_part(self, gid: int, roots: tuple[bytes, ...], part: int) -> None:
        self._send("choosePart", lambda: self.chain.rollup.choosePart(gid, list(roots), part))

    def prove(self, pre_root: bytes, step_index: int, data: BatchData, args: ProverInput) -> None:
        prover, ctx = self.chain.prover, self.chain.context()
        if args.is_long:
            call = prover.prove_long_step.prepare_calldata(
                pre_root, step_index, data.as_tuple(), ctx, args.step, args.step_branch
            )
        else:
            call = prove_calldata(prover.prove.prepare_calldata(
                pre_root, step_index, data.as_tuple(), ctx, args.step, args.step_branch,
                args.order_tuples(), args.leaf_tuples(), args.proof_sizes,
            ), args.proofs)
        l1_call(lambda: boa.env.raw_call(prover.address, sender=self._address, data=call))
        self.sent.append("prove")

    def step_result(self, gid: int) -> bytes:
        return bytes(self.chain.prover.result(self.chain.rollup.stepClaim(gid)))

    def prove_step(self, gid: int) -> None:
        self._send("proveStep", lambda: self.chain.rollup.proveStep(gid))

    def timeout(self, gid: int) -> None:
        self._send("timeout", lambda: self.chain.rollup.timeout(gid))

    def cancel_game(self, gid: int) -> None:
        self._send("cancelGame", lambda: self.chain.rollup.cancelGame(gid))


class BoaAsserter:
    """The sequencer's side of every game on its batches: the solver's asserter rules over ``traces``."""

    def __init__(self, chain: L1Chain, journal: Journal, traces: dict[int, Sequence[bytes]]) -> None:
        self.chain = chain
        self.journal = journal
        self.traces = traces
        """Batch index -> the roots the asserter claims after each step count."""
        self.moves = 0

    def tick(self) -> None:
        rollup = self.chain.rollup
        k = int(rollup.K())
        for gid in range(int(rollup.gameCount())):
            g = Game.of(game_info_from_abi(gid, rollup.game(gid)))
            if g.status != GameStatus.ACTIVE or g.batch not in self.traces or g.turn != Side.ASSERTER:
                continue
            state = GameState(g.lo, g.hi, g.lo_root, g.hi_root, g.turn, k, None, g.expiry(), now())
            move = asserter_move(state, self.traces[g.batch])
            if isinstance(move, PostRoots):
                with boa.env.prank(g.asserter):
                    rollup.postRoots(gid, list(move.roots))
                self.journal.record(rollup)
                self.moves += 1
