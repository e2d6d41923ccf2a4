"""Adversaries for the end-to-end dispute tests on anvil (docs/adversaries.md).

- :class:`Stage`: one deployment on an anvil L1 with the honest L2 state
  (a replica :class:`state.db.StateDB`) the batches are built against; it
  funds traders from their own L1 accounts, posts the honest operator's
  batches, and starts ``hfx challenger`` processes;
- :class:`Proposer`: a proposer that posts batches with the post-root of a
  trace of its choosing (:func:`lying_trace`: honest up to a chosen step,
  invented after) and defends them as the asserter with that trace, through
  the pure solver (:func:`challenger.solver.asserter_move`); it can stop
  answering after some moves. With the honest trace it is the honest asserter;
- :class:`DishonestChallenger`: disputes batches it agrees with (or any it is
  told to), plays the pure solver's challenger rules against a falsified
  trace (:class:`FalseTrace`), so it names parts whose ends it falsely
  disputes, claims a one-step win with nothing proven, and, when its claim is
  refused, proves the only root the prover records; or it stops answering.
  It runs in the test process or as its own process (:func:`main`).

No new game logic: both adversaries decide with ``challenger.solver``; only
their traces lie.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from challenger.chain import DisputeChain, Game, GameStatus
from challenger.solver import (
    ChoosePart,
    ClaimTimeout,
    GameState,
    PostRoots,
    Prove,
    Stuck,
    Trace,
    asserter_move,
    challenger_move,
)
from challenger.trace import BatchTrace
from l1_contracts.bindings import BatchStatus, Contracts, Transactor
from l1_contracts.config import RollupConfig
from l1_contracts.deploy import Deployment, Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, _die_with_parent
from node.batches import Verdict
from node.derive import Derivation
from node.follower import Follower
from node.l1 import L1Client, L1Error, error_code
from proofs.onestep import prover_input
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.db import StateDB
from state.keccak import keccak256
from state.txs import encode_deposit, encode_trade
from tests.world import BTC, BTC_PERP, ETH, ETH_PERP, USDC, World

log = logging.getLogger("hfx.adversary")

REPO = Path(__file__).resolve().parents[2]
OPERATOR_KEY = DEV_KEYS[0]
"""The deployer and designated proposer: the honest operator."""
PRICES = {ETH_PERP: 3_000_000, BTC_PERP: 6_000_000}
SPOTS = {ETH: 3_000_000, BTC: 6_000_000}


def actor_key(name: str) -> str:
    """A private key of a named L1 actor (fund it with :meth:`Stage.fund`)."""
    return "0x" + keccak256(b"adversary:" + name.encode()).hex()


def invented_root(tag: bytes, steps: int) -> bytes:
    """A root no execution produces (the lie after ``steps`` steps)."""
    return keccak256(b"invented root:" + tag + b":%d" % steps)


def lying_trace(honest: Sequence[bytes], wrong_at: int, tag: bytes = b"") -> list[bytes]:
    """A liar's roots of a batch: ``honest`` through ``wrong_at`` steps, invented after.

    So the root after step ``wrong_at`` (0-based) is the first wrong one, and
    an honest challenger ends the game proving exactly that step."""
    if not 0 <= wrong_at < len(honest) - 1:
        raise ValueError(f"no step {wrong_at} in a batch of {len(honest) - 1} steps")
    return [*honest[: wrong_at + 1], *(invented_root(tag, j) for j in range(wrong_at + 1, len(honest)))]


class FalseTrace:
    """A trace that agrees with ``inner`` through ``wrong_at`` steps and invents every root after."""

    def __init__(self, inner: Trace, wrong_at: int, tag: bytes = b"false") -> None:
        self.inner = inner
        self.wrong_at = wrong_at
        self.tag = tag

    def __getitem__(self, steps: int) -> bytes:
        """The inner root up to ``wrong_at`` steps, an invented one after."""
        return self.inner[steps] if steps <= self.wrong_at else invented_root(self.tag, steps)


def _now(w3: Any) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def _game_state(g: Game, k: int, roots: tuple[bytes, ...] | None, now: int) -> GameState:
    return GameState(g.lo, g.hi, g.lo_root, g.hi_root, g.turn, k, roots, g.expiry(), now)


# ---------------------------------------------------------------- the stage


@dataclass
class ChallengerProcess:
    """An ``hfx challenger`` child process and its status file."""

    proc: subprocess.Popen[bytes]
    status_file: Path
    log_file: Path

    def status(self) -> dict[str, Any]:
        """The last status the process wrote ({} before the first)."""
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (OSError, ValueError):
            return {}

    def wait_status(self, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Poll the status file until ``done(status)`` (AssertionError after ``timeout`` s or if the process died)."""
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.check_alive()
            st = self.status()
            if st and done(st):
                return st
            time.sleep(0.1)
        raise AssertionError(f"status not reached in {timeout} s: {st}")

    def check_alive(self) -> None:
        """Raise with the process's log if it exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output()}")

    def output(self) -> str:
        """Everything the process logged."""
        try:
            return self.log_file.read_text()
        except OSError:
            return ""

    def stop(self) -> str:
        """SIGTERM (then SIGKILL after 10 s); returns the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()


HFX_CHALLENGER = ("tests.e2e.devnet", "challenger")
"""``hfx challenger`` (``node.cli.main``) with the contracts' ABIs read from ``$HFX_TEST_ABIS``."""
DISHONEST_CHALLENGER = ("tests.e2e.actors",)
"""The dishonest challenger's process (:func:`main`)."""


def spawn_challenger(
    entry: Sequence[str], rpc: str, workdir: Path, name: str, key: str, abis: Path, deployment: Path,
    genesis: Path, *args: str,
) -> ChallengerProcess:
    """Start ``python -m *entry`` (a challenger's command line, :data:`HFX_CHALLENGER` or
    :data:`DISHONEST_CHALLENGER`) signing as ``key``, its data in ``workdir/name``, its status in
    ``workdir/name.status.json``, its log in ``workdir/name.log``."""
    status = workdir / f"{name}.status.json"
    log_path = workdir / f"{name}.log"
    env = dict(os.environ, HFX_CHALLENGER_KEY=key, HFX_TEST_ABIS=str(abis), PYTHONPATH=str(REPO))
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *entry, "--rpc", rpc, "--deployment", str(deployment), "--genesis", str(genesis),
             "--data-dir", str(workdir / name), "--status-file", str(status), "--log-level", "WARNING", *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # a test that dies leaves no challenger behind
        )
    return ChallengerProcess(proc, status, log_path)


class Stage:
    """One deployment on anvil plus the honest L2 state its batches should have.

    The caller makes ``l1_contracts.deploy.compile_contract`` cheap first
    (``tests.challenger.anvil_l1.patch_compile``) and writes the ABIs for child
    processes to ``workdir / "abis.json"`` (``anvil_l1.write_abis``)."""

    def __init__(self, anvil: Anvil, config: RollupConfig, workdir: Path, world: World | None = None) -> None:
        self.anvil = anvil
        self.config = config
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.w3 = anvil.web3()
        self.world = world or World(time=anvil.timestamp_of() - 120)
        self.replica = StateDB.in_memory()
        self.genesis_leaves = dict(self.world.leaves)
        genesis_root = self.replica.initialize(self.world.leaves)
        keys = sorted(Web3.to_checksum_address(a) for a in self.world.chain.oracle_keys)
        self.deployment: Deployment = deploy_web3(
            anvil.url, OPERATOR_KEY, Genesis(genesis_root, self.world.time, keys, self.world.oracle_threshold), config
        )
        chain = self.world.chain
        self.chain = ChainConfig(
            self.deployment.chain_id, bytes.fromhex(self.deployment.rollup[2:]), chain.oracle_keys, chain.oracle_threshold
        )
        self.world.chain, self.world.domain = self.chain, self.chain.domain
        self.queues = ListQueues()
        self.operator = self.connect(OPERATOR_KEY)
        self.procs: list[ChallengerProcess] = []
        (workdir / "deployment.json").write_text(self.deployment.to_json())
        leaves = {"0x" + k.hex(): "0x" + v.hex() for k, v in self.world.leaves.items()}
        (workdir / "genesis.json").write_text(json.dumps({"leaves": leaves}))

    # -------------------------------------------------------- accounts

    def connect(self, key: str | bytes) -> Contracts:
        """The contracts' clients signing as ``key``."""
        return Contracts.connect(self.w3, self.deployment, Transactor(self.w3, Account.from_key(key)))

    def fund(self, key: str, wei: int = 10**21) -> str:
        """Give the account of ``key`` ether on L1; returns its address."""
        address = str(Account.from_key(key).address)
        self.anvil.set_balance(address, wei)
        return address

    def deposit(self, name: str, amount: int) -> None:
        """Trader ``name`` deposits ``amount`` through the bridge from its own L1 account."""
        acct = Account.from_key(World.key(name))
        self.anvil.set_balance(acct.address, 10**20)
        self.operator.token.mint(acct.address, amount)
        own = self.connect(World.key(name))
        own.token.approve(self.deployment.bridge, amount)
        own.bridge.deposit(amount)
        self.queues.deposits.append(L1Deposit(self.world.address(name), amount))

    def force(self, name: str, payload: bytes) -> None:
        """Trader ``name`` queues a forced transaction on the bridge."""
        acct = Account.from_key(World.key(name))
        self.anvil.set_balance(acct.address, 10**20)
        self.connect(World.key(name)).bridge.force_transaction(payload)
        self.queues.forced_txs.append(L1Forced(self.world.address(name), payload))

    # -------------------------------------------------------- batches

    def context(self, batch: Batch) -> BatchContext:
        """The STF context of ``batch`` (this deployment's chain, the bridge's queues)."""
        return BatchContext.create(batch.timestamp, self.chain, self.queues, list(batch.orders))

    def honest_roots(self, batch: Batch) -> list[bytes]:
        """The honest roots after 0..n steps of ``batch`` on the honest head."""
        return self.replica.roots_after_each(self.replica.root, batch.steps, self.context(batch))

    def post_honest(self, batch: Batch) -> int:
        """The operator posts ``batch`` with its honest root; the replica applies it. Returns the index."""
        roots = self.honest_roots(batch)
        self.operator.rollup.post_batch(batch.encode(), roots[-1], len(batch.steps), value=self.config.proposer_bond)
        self.replica.apply_batch(batch, self.context(batch))
        return int(self.operator.rollup.head())

    def learn_accounts(self, names: Iterable[str]) -> None:
        """Record the account index of each named trader (after its deposit is applied)."""
        for name in names:
            idx = self.replica.view.account_index(self.world.address(name))
            if idx is None:
                raise KeyError(f"{name} has no account")
            self.world.index[name] = idx

    def open_market(self, traders: Sequence[str] = ("maker", "taker"), amount: int = 1_000_000 * USDC) -> int:
        """Deposits for ``traders`` and a price update, posted by the operator; returns the batch index."""
        for name in traders:
            self.deposit(name, amount)
        t = self.anvil.timestamp_of()
        self.world.time = t
        prices = self.world.oracle_step(PRICES, SPOTS, timestamp=t)
        index = self.post_honest(Batch(t, (), (*(encode_deposit() for _ in traders), prices)))
        self.learn_accounts(traders)
        return index

    def trading_batch(self, n_trades: int) -> Batch:
        """A fresh price update, then ``n_trades`` one-unit fills between maker and taker (every step
        changes the state), at the latest block's time."""
        t = self.anvil.timestamp_of()
        if t <= self.world.time:  # the oracle update must be newer than the last one
            self.anvil.increase_time(self.world.time + 1 - t)
            t = self.anvil.timestamp_of()
        self.world.time = t
        orders = (self.world.order("maker", ETH_PERP, False, 3_000_000, n_trades),
                  self.world.order("taker", ETH_PERP, True, 3_000_000, n_trades))
        prices = self.world.oracle_step(PRICES, SPOTS, timestamp=t)
        return Batch(t, orders, (prices, *(encode_trade(0, 1, 1) for _ in range(n_trades))))

    # -------------------------------------------------------- observers

    def node(self, directory: Path) -> tuple[Derivation, Follower]:
        """A node of our own following this deployment from L1 alone."""
        d = self.deployment
        derivation = Derivation.open(directory, self.chain, bytes.fromhex(d.genesis_root.removeprefix("0x")),
                                     self.genesis_leaves, sync=False)
        follower = Follower.over_bridge(L1Client(self.anvil.url), d.rollup, d.bridge, derivation, start_block=d.block)
        return derivation, follower

    def spawn_challenger(self, key: str, name: str, *args: str, entry: Sequence[str] = HFX_CHALLENGER) -> ChallengerProcess:
        """Start a challenger process (``hfx challenger`` by default, :data:`DISHONEST_CHALLENGER`
        for the dishonest one) signing as ``key``, on this deployment."""
        p = spawn_challenger(
            entry, self.anvil.url, self.workdir, name, key, self.workdir / "abis.json",
            self.workdir / "deployment.json", self.workdir / "genesis.json", *args,
        )
        self.procs.append(p)
        return p

    def stop_all(self) -> dict[str, str]:
        """Stop every process started here; returns their logs by status-file name."""
        return {p.status_file.name: p.stop() for p in self.procs}

    def bonds(self, address: str) -> int:
        """``bonds(address)`` on the rollup."""
        return int(self.operator.rollup._call("bonds", address))

    def burnt(self) -> int:
        """``burnt()`` on the rollup."""
        return int(self.operator.rollup._call("burnt"))

    def balance(self) -> int:
        """The rollup's ether balance."""
        return int(self.w3.eth.get_balance(self.deployment.rollup))


# ---------------------------------------------------------------- the proposer / asserter


@dataclass
class Proposer:
    """A proposer defending its batches as the asserter with its own traces (honest or lying).

    ``stop_after``: the number of moves it makes before it stops answering
    (None: it answers to the end; 0: it never answers)."""

    contracts: Contracts
    w3: Any
    k: int
    bond: int
    stop_after: int | None = None
    traces: dict[int, Sequence[bytes]] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)
    finished: dict[int, GameStatus] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The proposer's account."""
        tx = self.contracts.rollup.tx
        if tx is None:
            raise RuntimeError("a proposer needs a signing client")
        return str(tx.address)

    def post(self, batch: Batch, trace: Sequence[bytes]) -> int:
        """Post ``batch`` claiming ``trace[-1]`` and remember the trace to defend it with; returns the index."""
        if len(trace) != len(batch.steps) + 1:
            raise ValueError("a trace has one root per step count, 0..n")
        self.contracts.rollup.post_batch(batch.encode(), trace[-1], len(batch.steps), value=self.bond)
        index = int(self.contracts.rollup.head())
        self.traces[index] = trace
        return index

    def silent(self) -> bool:
        """It has stopped answering."""
        return self.stop_after is not None and len(self.moves) >= self.stop_after

    def tick(self, only: set[int] | None = None) -> list[str]:
        """One move in every active game against its batches, or only in the games ``only``
        (nothing once silent)."""
        done: list[str] = []
        rollup = self.contracts.rollup
        for gid in range(int(rollup.game_count())):
            if self.stop_after is not None and len(self.moves) + len(done) >= self.stop_after:
                break
            if gid in self.finished or (only is not None and gid not in only):
                continue
            g = Game.of(rollup.game(gid))
            if g.asserter.lower() != self.address.lower() or g.batch not in self.traces:
                continue
            if g.status != GameStatus.ACTIVE:
                self.finished[gid] = g.status
                continue
            move = asserter_move(_game_state(g, self.k, None, _now(self.w3)), self.traces[g.batch])
            try:
                if isinstance(move, PostRoots):
                    rollup.post_roots(gid, list(move.roots))
                    done.append(f"postRoots {gid} [{g.lo}, {g.hi}]")
                elif isinstance(move, ClaimTimeout):
                    rollup.timeout(gid)
                    done.append(f"timeout {gid}")
            except L1Error as exc:  # the game moved meanwhile: decide afresh next tick
                log.info("proposer: game %d: %s", gid, error_code(exc))
        self.moves += done
        return done


# ---------------------------------------------------------------- the dishonest challenger


@dataclass
class DishonestChallenger:
    """Disputes batches it agrees with, playing the solver against a falsified trace.

    ``targets``: the batches it disputes (None: every pending batch its
    derivation agrees with). ``wrong_at``: where its trace turns false (None:
    only the batch's last root). ``answers``: False opens games and never moves."""

    chain: DisputeChain
    derivation: Derivation
    targets: set[int] | None = None
    wrong_at: int | None = None
    answers: bool = True
    games: dict[int, int] = field(default_factory=dict)
    """Game -> batch, active games."""
    challenged: set[int] = field(default_factory=set)
    """Batches it has opened a game on (one game per batch)."""
    outcomes: dict[int, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    """The reason codes of its moves L1 refused."""
    moves: list[str] = field(default_factory=list)

    def _wanted(self, index: int, verdict: Verdict) -> bool:
        if self.targets is not None:
            return index in self.targets
        return verdict == Verdict.MATCH

    def tick(self) -> list[str]:
        """Open games on its targets, then one move in each of its active games."""
        done: list[str] = []
        now = self.chain.now()
        constants = self.chain.constants()
        for gid in self.chain.my_games():  # after a restart, or a createGame whose receipt was lost
            if gid not in self.games and gid not in self.outcomes:
                self.games[gid] = self.chain.game(gid).batch
                self.challenged.add(self.games[gid])
        for rec in self.derivation.records(status=BatchStatus.PENDING):
            if rec.index in self.challenged or not self._wanted(rec.index, rec.verdict) or now >= rec.deadline:
                continue
            if self.chain.batch_status(rec.index) != int(BatchStatus.PENDING):
                continue
            try:
                gid = self.chain.create_game(rec.index, max(0, constants.challenger_bond - self.chain.free_bond()))
            except L1Error as exc:
                self.refused.append(error_code(exc))
                continue
            self.games[gid] = rec.index
            self.challenged.add(rec.index)
            done.append(f"createGame {gid} on batch {rec.index}")
        for gid in sorted(self.games):
            try:
                move = self._play(gid, constants.k, now)
            except L1Error as exc:
                self.refused.append(error_code(exc))
                continue
            if move:
                done.append(move)
        self.moves += done
        return done

    def _play(self, gid: int, k: int, now: int) -> str:
        g = self.chain.game(gid)
        if g.status != GameStatus.ACTIVE:
            self.outcomes[gid] = g.status.name
            del self.games[gid]
            return ""
        if self.chain.batch_status(g.batch) == int(BatchStatus.REMOVED):
            self.chain.cancel_game(gid)
            return f"cancelGame {gid}"
        if not self.answers or self.derivation.record(g.batch) is None:
            return ""
        roots = self.chain.round_roots(gid, g.round) if g.roots_posted else None
        honest = BatchTrace(self.derivation, g.batch)
        wrong_at = self.wrong_at if self.wrong_at is not None else len(self.derivation.batch(g.batch).steps) - 1
        move = challenger_move(_game_state(g, k, roots, now), FalseTrace(honest, wrong_at))
        if isinstance(move, ChoosePart):
            self.chain.choose_part(gid, move.roots, move.part)
            return f"choosePart {gid} {move.part} -> [{move.lo}, {move.hi}]"
        if isinstance(move, Prove):
            return self._claim(g, move)
        if isinstance(move, ClaimTimeout):
            self.chain.timeout(gid)
            return f"timeout {gid}"
        if isinstance(move, Stuck):
            log.info("dishonest challenger: game %d stuck: %s", gid, move.reason)
        return ""

    def _claim(self, g: Game, move: Prove) -> str:
        """Claim the one-step win with nothing proven; once refused, prove what the prover accepts."""
        try:
            self.chain.prove_step(g.game)
        except L1Error as exc:
            self.refused.append(error_code(exc))
        else:
            return f"proveStep {g.game} (unproven claim accepted?)"
        if self.chain.step_result(g.game) == bytes(32):
            rec = self.derivation.record(g.batch)
            if rec is None:
                return ""
            witness = self.derivation.step_witness(g.batch, move.step_index)
            self.chain.prove(move.pre_root, move.step_index, rec.data, prover_input(witness))
        self.chain.prove_step(g.game)
        return f"proveStep {g.game} step {move.step_index}"

    def status(self) -> dict[str, Any]:
        """Games, outcomes and refusals, for the status file."""
        return {
            "address": self.chain.address,
            "active": sorted(self.games),
            "outcomes": {str(g): s for g, s in sorted(self.outcomes.items())},
            "refused": list(self.refused),
            "moves": list(self.moves),
        }


# ---------------------------------------------------------------- as a process


def main(argv: list[str] | None = None) -> int:
    """Run a dishonest challenger as its own process (arguments as ``hfx challenger``'s, plus its own)."""
    from challenger.cli import DeploymentInfo, load_genesis
    from challenger.web3_chain import Web3DisputeChain

    p = argparse.ArgumentParser(prog="dishonest-challenger")
    p.add_argument("--rpc", required=True)
    p.add_argument("--deployment", required=True)
    p.add_argument("--genesis", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--key-env", default="HFX_CHALLENGER_KEY")
    p.add_argument("--targets", default="", help="comma-separated batch indices (default: every batch it agrees with)")
    p.add_argument("--wrong-at", type=int, default=None)
    p.add_argument("--silent", action="store_true", help="open games, never move")
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--status-file", default=None)
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level)
    key = os.environ.get(args.key_env)
    if not key:
        print(f"error: set the private key in ${args.key_env}", file=sys.stderr)
        return 2
    d = DeploymentInfo.load(args.deployment)
    l1 = L1Client(args.rpc)
    derivation = Derivation.open(args.data_dir, d.chain(), d.genesis_root, load_genesis(args.genesis), sync=False)
    follower = Follower.over_bridge(l1, d.rollup, d.bridge, derivation, start_block=d.block)
    chain = Web3DisputeChain(l1, d.rollup, d.prover, Account.from_key(key), start_block=d.block)
    targets = {int(t) for t in args.targets.split(",") if t} or None
    actor = DishonestChallenger(chain, derivation, targets, args.wrong_at, answers=not args.silent)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    end = time.monotonic() + args.max_seconds
    try:
        while not stopping and time.monotonic() < end:
            follower.poll()
            actor.tick()
            if args.status_file:
                tmp = Path(args.status_file + ".tmp")
                tmp.write_text(json.dumps({"player": actor.status(), "head": follower.status()["head"]}))
                tmp.replace(args.status_file)
            time.sleep(args.interval)
    finally:
        derivation.close()
    return 0


if __name__ == "__main__":
    import l1_contracts.deploy as _deploy
    import tests.challenger.run_challenger as _abis  # the ABIs come from $HFX_TEST_ABIS

    _deploy.compile_contract = _abis._from_file  # type: ignore[assignment]
    raise SystemExit(main(sys.argv[1:]))
