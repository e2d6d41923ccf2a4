"""Helpers for the L1 contract tests: the contracts in titanoboa plus an honest
Python replica of the L2 state, so batches and roots are real HFX ones.

:class:`L1Chain` deploys token, test prover, bridge and rollup, funds actors,
queues deposits on the bridge (mirrored into the STF's queue view), builds
batches with :mod:`tests.world`'s signing helpers, computes the honest root
after every step with :meth:`state.db.StateDB.roots_after_each`, and loads
those roots into the test prover.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import boa
from eth_utils import to_checksum_address

from l1_contracts.bindings import BatchData, parse_batch, prove_calldata
from l1_contracts.config import ETHER, TEST, RollupConfig
from l1_contracts.deploy import BoaDeployment, Genesis, deploy_boa
from proofs.commitment import merkle_branch
from proofs.onestep import prover_input
from proofs.witness import build_step_witness
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.db import StateDB
from state.keccak import keccak256
from state.txs import encode_deposit, encode_trade
from tests.world import BTC, BTC_PERP, ETH, ETH_CALL, ETH_PERP, ETH_PUT, T0, USDC, World

LONG = os.environ.get("HFX_FUZZ", "").lower() == "long"
START = T0 + 3_600
"""Block time right after deployment (the genesis L2 time is T0)."""

PRICES = {ETH_PERP: 3_000_000, BTC_PERP: 6_000_000, ETH_CALL: 40_000, ETH_PUT: 30_000}
SPOTS = {ETH: 3_000_000, BTC: 6_000_000}
IVS = {ETH_CALL: 600_000, ETH_PUT: 650_000}


def now() -> int:
    """The current block time."""
    return int(boa.env.evm.patch.timestamp)


def set_time(t: int) -> None:
    """Move the block time forward to ``t``."""
    boa.env.time_travel(seconds=t - now())


def addr(raw: bytes) -> str:
    """A checksummed address from 20 bytes."""
    return to_checksum_address(raw)


def bad_root(tag: bytes) -> bytes:
    """A root no honest execution produces."""
    return keccak256(b"bad root:" + tag)


@dataclass
class Posted:
    """A batch this test posted."""

    index: int
    batch: Batch
    data: BatchData
    roots: list[bytes] | None
    """Honest roots after 0..n steps (None if the pre-state is not an honest one)."""
    post_root: bytes

    @property
    def honest(self) -> bool:
        """Whether the posted root is the honest one."""
        return self.roots is not None and self.roots[-1] == self.post_root


class L1Chain:
    """Deployed contracts plus the honest L2 state they should agree with."""

    def __init__(self, config: RollupConfig = TEST, *, real_prover: bool = False) -> None:
        set_time(max(now(), START))
        self.world = World()
        self.db = StateDB.in_memory()
        self.genesis_root = self.db.initialize(self.world.leaves)
        keys = [addr(a) for a in sorted(self.world.chain.oracle_keys)]
        self.genesis = Genesis(self.genesis_root, self.world.time, keys, self.world.oracle_threshold)
        self.sequencer = addr(bytes.fromhex(boa.env.generate_address("sequencer")[2:]))
        self.deployer = boa.env.eoa
        self.real_prover = real_prover
        self.d: BoaDeployment = deploy_boa(
            self.genesis, config, self.sequencer, test_prover=not real_prover
        )
        self.config = config
        self.rollup = self.d.rollup
        self.bridge = self.d.bridge
        self.token = self.d.token
        self.prover = self.d.prover
        chain = ChainConfig(
            boa.env.evm.patch.chain_id, bytes.fromhex(self.rollup.address[2:]),
            self.world.chain.oracle_keys, self.world.oracle_threshold,
        )
        self.world.chain = chain
        self.world.domain = chain.domain
        self.queues = ListQueues()
        self.posted: dict[int, Posted] = {}
        self.last_logs: list[object] = []
        self.fund_bond(self.sequencer, 10 * config.proposer_bond)

    # -------------------------------------------------------- actors

    def actor(self, name: str) -> str:
        """A fresh L1 address with ether."""
        a = boa.env.generate_address(name)
        boa.env.set_balance(a, 1_000 * ETHER)
        return addr(bytes.fromhex(a[2:]))

    def trader(self, name: str) -> str:
        """The L1 address of STF actor ``name`` (tests.world keys), with ether."""
        a = addr(self.world.address(name))
        boa.env.set_balance(a, 1_000 * ETHER)
        return a

    def fund_bond(self, who: str, amount: int) -> None:
        """Give ``who`` ether and deposit ``amount`` as its bond."""
        boa.env.set_balance(who, boa.env.get_balance(who) + amount + 100 * ETHER)
        with boa.env.prank(who):
            self.rollup.depositBond(value=amount)

    def deposit(self, name: str, amount: int) -> int:
        """Mint ``amount`` to trader ``name`` and queue a bridge deposit from it."""
        who = self.trader(name)
        with boa.env.prank(self.deployer):
            self.token.mint(who, amount)
        with boa.env.prank(who):
            self.token.approve(self.bridge.address, amount)
            index = self.bridge.deposit(amount)
        self.queues.deposits.append(L1Deposit(self.world.address(name), amount))
        return int(index)

    def force(self, name: str, payload: bytes) -> int:
        """Queue a forced transaction from trader ``name``."""
        who = self.trader(name)
        with boa.env.prank(who):
            index = self.bridge.forceTransaction(payload)
        self.queues.forced_txs.append(L1Forced(self.world.address(name), payload))
        return int(index)

    # -------------------------------------------------------- batches

    def batch(self, steps: Sequence[bytes], orders: Sequence[bytes] = (), timestamp: int | None = None) -> Batch:
        """A batch at ``timestamp`` (default: the current block time)."""
        return Batch(now() if timestamp is None else timestamp, tuple(orders), tuple(steps))

    def honest_roots(self, batch: Batch, pre_root: bytes | None = None) -> list[bytes]:
        """Honest roots after 0..n steps of ``batch`` from ``pre_root`` (default: the replica's)."""
        ctx = BatchContext.create(batch.timestamp, self.world.chain, self.queues, list(batch.orders))
        return self.db.roots_after_each(pre_root or self.db.root, batch.steps, ctx)

    def load_roots(self, steps_root: bytes, roots: Sequence[bytes]) -> None:
        """Load honest per-step roots into the test prover."""
        chunk = 1024
        for first in range(0, len(roots) - 1, chunk):
            self.prover.load(steps_root, first, list(roots[first : first + chunk + 1]))

    def post(
        self, batch: Batch, root: bytes | None = None, proposer: str | None = None, *,
        load: bool = True, commit: bool = True, roots: list[bytes] | None = None,
    ) -> Posted:
        """Post ``batch`` (with the honest root unless ``root`` is given).

        The honest roots (``roots``, or computed now) are loaded into the test
        prover; an honest batch is applied to the replica (``commit``).
        """
        honest = self.db.root == self.rollup.batch(self.rollup.head()).post_root
        if roots is None and honest:
            roots = self.honest_roots(batch)
        if not honest:
            roots = None
        post_root = root if root is not None else (roots[-1] if roots else bad_root(b"no honest pre-state"))
        deposit_start = int(self.rollup.depositConsumed())
        forced_start = int(self.rollup.forcedConsumed())
        with boa.env.prank(proposer or self.sequencer):
            index = int(self.rollup.postBatch(batch.encode(), post_root, len(batch.steps)))
        self.last_logs = list(self.rollup.get_logs())
        data = BatchData.of(parse_batch(batch.encode()), deposit_start, forced_start)
        if roots is not None and load and not self.real_prover:
            self.load_roots(data.steps_root, roots)
        posted = Posted(index, batch, data, roots, post_root)
        self.posted[index] = posted
        if commit and posted.honest:
            self.commit(batch)
        return posted

    def commit(self, batch: Batch) -> bytes:
        """Apply ``batch`` to the honest replica; learn account indices."""
        ctx = BatchContext.create(batch.timestamp, self.world.chain, self.queues, list(batch.orders))
        result = self.db.apply_batch(batch, ctx)
        for name in ("maker", "taker", "trader", "whale", "a", "b", "c"):
            idx = self.db.view.account_index(self.world.address(name))
            if idx is not None:
                self.world.index[name] = idx
        return result.post_root

    # -------------------------------------------------------- canned batches

    def opening_batch(self, traders: Sequence[str] = ("maker", "taker"), amount: int = 100_000 * USDC) -> Batch:
        """Deposits for ``traders`` (queued now) and a price update: a batch ready to post."""
        for name in traders:
            self.deposit(name, amount)
        t = now()
        self.world.time = t
        oracle = self.world.oracle_step(PRICES, SPOTS, IVS, timestamp=t)
        return self.batch([encode_deposit() for _ in traders] + [oracle], timestamp=t)

    def trading_batch(self, n_trades: int, size: int = 1) -> Batch:
        """A fresh price update then ``n_trades`` fills of ``size`` between maker and taker."""
        t = now()
        self.world.time = t
        total = n_trades * size
        orders = [
            self.world.order("maker", ETH_PERP, False, 3_000_000, total),
            self.world.order("taker", ETH_PERP, True, 3_000_000, total),
        ]
        oracle = self.world.oracle_step(PRICES, SPOTS, IVS, timestamp=t)
        steps = [oracle] + [encode_trade(0, 1, size) for _ in range(n_trades)]
        return self.batch(steps, orders, timestamp=t)

    # -------------------------------------------------------- game helpers

    def context(self) -> tuple[object, ...]:
        """The deployment's StepContext, as the rollup hashes it."""
        keys = [addr(bytes.fromhex(str(k)[2:])) for k in self.rollup.oracleKeys()]
        return (
            boa.env.evm.patch.chain_id, self.rollup.address, self.bridge.address, keys,
            int(self.rollup.ORACLE_THRESHOLD()),
        )

    def prove(self, posted: Posted, step_index: int, pre_root: bytes) -> bytes:
        """Have the prover record step ``step_index`` of ``posted`` from ``pre_root``
        (the real prover: with a witness built from the honest replica)."""
        if self.real_prover:
            return self._prove_for_real(posted, step_index, pre_root)
        steps = posted.batch.steps
        branch = merkle_branch([keccak256(s) for s in steps], step_index)
        return bytes(self.prover.prove(
            pre_root, step_index, posted.data.as_tuple(), self.context(), steps[step_index], branch
        ))

    def _prove_for_real(self, posted: Posted, step_index: int, pre_root: bytes) -> bytes:
        assert posted.roots is not None, "the real prover proves steps from honest states"
        batch = posted.batch
        ctx = BatchContext.create(batch.timestamp, self.world.chain, self.queues, list(batch.orders))
        witness = build_step_witness(self.db, posted.roots[0], batch, ctx, step_index)
        assert witness.pre_root == pre_root
        args = prover_input(witness)
        if args.is_long:
            return bytes(self.prover.prove_long_step(
                pre_root, step_index, posted.data.as_tuple(), self.context(), args.step, args.step_branch
            ))
        data = prove_calldata(self.prover.prove.prepare_calldata(
            pre_root, step_index, posted.data.as_tuple(), self.context(), args.step,
            args.step_branch, args.order_tuples(), args.leaf_tuples(), args.proof_sizes,
        ), args.proofs)
        return bytes(boa.env.raw_call(self.prover.address, data=data).output)

    def prove_game(self, gid: int) -> None:
        """Prove the one step game ``gid`` is at, then settle it with ``proveStep``."""
        g = self.rollup.game(gid)
        posted = self.posted[int(g.batch)]
        self.prove(posted, int(g.lo), bytes(g.lo_root))
        self.rollup.proveStep(gid)


def tx_gas(contract: object, fn_name: str, *args: object) -> int:
    """Gas of the last call to ``contract``: titanoboa's execution gas plus the intrinsic
    gas (21,000 and 16 per non-zero / 4 per zero calldata byte; refunds not subtracted)."""
    fn = getattr(contract, fn_name)
    data = fn.prepare_calldata(*args)
    intrinsic = 21_000 + sum(16 if b else 4 for b in data)
    return int(contract._computation.get_gas_used()) + intrinsic  # type: ignore[attr-defined]


def report(label: str, gas: int) -> None:
    """Print one gas figure (shown with ``pytest -s``; docs/l1.md's table comes from these)."""
    print(f"GAS | {label} | {gas:,}")
