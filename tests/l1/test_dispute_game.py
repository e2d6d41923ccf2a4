"""Dispute game (DESIGN §6) on real HFX batches and real per-step roots.

The one-step prover is the test double TestReplayProver: it returns the
honest root after a step from a table loaded with
``StateDB.roots_after_each``, after checking the step's Merkle branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import boa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from l1_contracts.bindings import (
    BatchStatus,
    GameInfo,
    GameStatus,
    Side,
    game_info_from_abi,
)
from l1_contracts.config import BPS, TEST
from proofs.commitment import merkle_branch
from proofs.game import dissection_rounds, split_points
from state.keccak import keccak256
from state.txs import encode_funding
from tests.l1.fixtures_rollup import (
    LONG,
    L1Chain,
    Posted,
    bad_root,
    now,
    report,
    set_time,
    tx_gas,
)

K = TEST.k
ZERO = b"\x00" * 32


def corrupt(honest: Sequence[bytes], from_step: int, tag: bytes = b"") -> list[bytes]:
    """A lying asserter's trace: honest roots before ``from_step``, invented ones from there on."""
    return list(honest[:from_step]) + [
        bad_root(tag + b":%d" % j) for j in range(from_step, len(honest))
    ]


def game(chain: L1Chain, gid: int) -> GameInfo:
    return game_info_from_abi(gid, chain.rollup.game(gid))


def roots_at_splits(trace: Sequence[bytes], g: GameInfo) -> list[bytes]:
    """The asserter's move: its trace at the inner split points of [lo, hi]."""
    return [trace[p] for p in split_points(g.lo, g.hi, K)[1:-1]]


def first_disputed(view: Sequence[bytes], g: GameInfo, roots: Sequence[bytes]) -> int:
    """The honest challenger's move: the first part whose end root differs from ``view``."""
    points = split_points(g.lo, g.hi, K)
    ends = list(roots) + [g.hi_root]
    for j, end in enumerate(ends):
        if view[points[j + 1]] != end:
            return j
    return len(ends) - 1


Chooser = Callable[[GameInfo, list[bytes]], int]


@dataclass
class Gas:
    """Gas per move kind (the largest seen)."""

    figures: dict[str, int] = field(default_factory=dict)

    def note(self, label: str, gas: int) -> None:
        self.figures[label] = max(gas, self.figures.get(label, 0))


def open_game(chain: L1Chain, batch: int, challenger: str) -> int:
    with boa.env.prank(challenger):
        return int(chain.rollup.createGame(batch))


def play_out(
    chain: L1Chain, gid: int, posted: Posted, asserter_trace: Sequence[bytes], choose: Chooser,
    gas: Gas | None = None,
) -> GameInfo:
    """Both sides move promptly until the game ends; the challenger proves at one step."""
    roots: list[bytes] = []
    rollup = chain.rollup
    for _ in range(200):
        g = game(chain, gid)
        if g.status != GameStatus.ACTIVE:
            return g
        set_time(now() + 7)
        if g.turn == Side.ASSERTER:
            roots = roots_at_splits(asserter_trace, g)
            with boa.env.prank(g.asserter):
                rollup.postRoots(gid, roots)
            if gas:
                gas.note(f"postRoots ({len(roots)} roots)", tx_gas(rollup, "postRoots", gid, roots))
        elif g.roots_hash != ZERO:
            part = choose(g, roots)
            with boa.env.prank(g.challenger):
                rollup.choosePart(gid, roots, part)
            if gas:
                gas.note("choosePart", tx_gas(rollup, "choosePart", gid, roots, part))
        else:
            chain.prove(posted, g.lo, g.lo_root)
            with boa.env.prank(g.challenger):
                rollup.proveStep(gid)
            if gas:
                gas.note("proveStep (result recorded by the prover)", tx_gas(rollup, "proveStep", gid))
    raise AssertionError("game did not end")


def honest_chooser(view: Sequence[bytes]) -> Chooser:
    return lambda g, roots: first_disputed(view, g, roots)


# ---------------------------------------------------------------- one game


@pytest.fixture
def chain() -> L1Chain:
    return L1Chain()


def _two_batches(chain: L1Chain, n_trades: int = 20, root: bytes | None = None) -> Posted:
    chain.post(chain.opening_batch())
    set_time(now() + 3)
    return chain.post(chain.trading_batch(n_trades), root)


@pytest.fixture
def real_chain() -> L1Chain:
    """A deployment with the real one-step prover."""
    return L1Chain(real_prover=True)


def test_honest_challenger_beats_a_wrong_root(chain: L1Chain) -> None:
    _honest_challenger_wins(chain)


def test_real_prover_honest_challenger_beats_a_wrong_root(real_chain: L1Chain) -> None:
    """The same game, ended by the real one-step prover executing the trade step."""
    _honest_challenger_wins(real_chain)


def _honest_challenger_wins(chain: L1Chain) -> None:
    chain.post(chain.opening_batch())
    set_time(now() + 3)
    batch = chain.trading_batch(20)
    honest = chain.honest_roots(batch)
    lie = corrupt(honest, 9, b"lie")
    wrong = chain.post(batch, lie[-1])
    assert wrong.roots == honest and not wrong.honest
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, TEST.challenger_bond)
    seq_bond = chain.rollup.bonds(chain.sequencer)
    gid = open_game(chain, wrong.index, challenger)
    g = play_out(chain, gid, wrong, lie, honest_chooser(honest))
    assert g.status == GameStatus.CHALLENGER_WON
    assert (g.lo, g.hi) == (8, 9)  # the first wrong step
    assert chain.rollup.batchStatus(wrong.index) == BatchStatus.REMOVED
    assert chain.rollup.head() == wrong.index - 1
    burn = TEST.proposer_bond * TEST.burn_bps // BPS
    assert chain.rollup.bonds(challenger) == TEST.challenger_bond + TEST.proposer_bond - burn
    assert chain.rollup.bonds(chain.sequencer) == seq_bond - TEST.proposer_bond
    assert chain.rollup.burnt() == burn
    assert chain.rollup.locked(challenger) == 0


def test_honest_asserter_beats_a_lying_challenger(chain: L1Chain) -> None:
    _honest_asserter_wins(chain)


def test_real_prover_honest_asserter_beats_a_lying_challenger(real_chain: L1Chain) -> None:
    """The same game, ended by the real one-step prover confirming the asserter's root."""
    _honest_asserter_wins(real_chain)


def _honest_asserter_wins(chain: L1Chain) -> None:
    posted = _two_batches(chain)
    assert posted.honest and posted.roots is not None
    liar = chain.actor("liar")
    chain.fund_bond(liar, TEST.challenger_bond)
    gid = open_game(chain, posted.index, liar)
    g = play_out(chain, gid, posted, posted.roots, lambda g, roots: len(roots))
    assert g.status == GameStatus.ASSERTER_WON
    assert chain.rollup.batchStatus(posted.index) == BatchStatus.PENDING
    burn = TEST.challenger_bond * TEST.burn_bps // BPS
    assert chain.rollup.bonds(liar) == 0
    assert chain.rollup.burnt() == burn
    set_time(chain.rollup.batch(posted.index).deadline)
    chain.rollup.finalize(posted.index - 1)
    chain.rollup.finalize(posted.index)


def test_one_step_batch_goes_straight_to_the_proof(chain: L1Chain) -> None:
    posted = chain.post(chain.batch([encode_funding()]), bad_root(b"one"))
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, TEST.challenger_bond)
    gid = open_game(chain, posted.index, challenger)
    g = game(chain, gid)
    assert (g.lo, g.hi, g.turn) == (0, 1, Side.CHALLENGER)
    with boa.env.prank(chain.sequencer), boa.reverts("NOT_YOUR_TURN"):
        chain.rollup.postRoots(gid, [])
    with boa.reverts("STEP_NOT_PROVEN"):
        chain.rollup.proveStep(gid)
    chain.prove_game(gid)
    assert game(chain, gid).status == GameStatus.CHALLENGER_WON


def test_move_rules(chain: L1Chain) -> None:
    posted = _two_batches(chain)
    assert posted.roots is not None
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, 2 * TEST.challenger_bond)
    with boa.env.prank(chain.sequencer), boa.reverts("SELF_CHALLENGE"):
        chain.rollup.createGame(posted.index)
    poor = chain.actor("poor")
    with boa.env.prank(poor), boa.reverts("NO_FREE_BOND"):
        chain.rollup.createGame(posted.index)
    with boa.env.prank(challenger), boa.reverts("NOT_PENDING"):
        chain.rollup.createGame(0)
    gid = open_game(chain, posted.index, challenger)
    g = game(chain, gid)
    roots = roots_at_splits(posted.roots, g)
    with boa.env.prank(challenger), boa.reverts("NOT_ASSERTER"):
        chain.rollup.postRoots(gid, roots)
    with boa.env.prank(chain.sequencer), boa.reverts("WRONG_ROOT_COUNT"):
        chain.rollup.postRoots(gid, roots[:-1])
    with boa.env.prank(challenger), boa.reverts("NOT_YOUR_TURN"):
        chain.rollup.choosePart(gid, roots, 0)
    with boa.reverts("NOT_ONE_STEP"):
        chain.rollup.proveStep(gid)
    with boa.env.prank(chain.sequencer):
        chain.rollup.postRoots(gid, roots)
    with boa.env.prank(chain.sequencer), boa.reverts("NOT_YOUR_TURN"):
        chain.rollup.postRoots(gid, roots)
    with boa.env.prank(chain.sequencer), boa.reverts("NOT_CHALLENGER"):
        chain.rollup.choosePart(gid, roots, 0)
    with boa.env.prank(challenger), boa.reverts("WRONG_ROOTS"):
        chain.rollup.choosePart(gid, roots[::-1], 0)
    with boa.env.prank(challenger), boa.reverts("BAD_PART"):
        chain.rollup.choosePart(gid, roots, len(roots) + 1)
    with boa.reverts("CLOCK_RUNNING"):
        chain.rollup.timeout(gid)
    with boa.reverts("BATCH_LIVE"):
        chain.rollup.cancelGame(gid)
    # walk to one step, then a proof with the wrong batch data or a wrong branch
    with boa.env.prank(challenger):
        chain.rollup.choosePart(gid, roots, 0)
    g = game(chain, gid)
    while g.hi - g.lo > 1:
        r = roots_at_splits(posted.roots, g)
        with boa.env.prank(chain.sequencer):
            chain.rollup.postRoots(gid, r)
        with boa.env.prank(challenger):
            chain.rollup.choosePart(gid, r, 0)
        g = game(chain, gid)
    # a result recorded for other batch data, or another context, is not this game's
    steps = posted.batch.steps
    branch = merkle_branch([keccak256(s) for s in steps], g.lo)
    bad = posted.data.as_tuple()[:4] + (posted.data.n_steps + 1,) + posted.data.as_tuple()[5:]
    chain.prover.prove(g.lo_root, g.lo, bad, chain.context(), steps[g.lo], branch)
    other_ctx = chain.context()[:4] + (int(chain.context()[4]) + 1,)
    chain.prover.prove(g.lo_root, g.lo, posted.data.as_tuple(), other_ctx, steps[g.lo], branch)
    with boa.reverts("STEP_NOT_PROVEN"):
        chain.rollup.proveStep(gid)
    with boa.reverts("BAD_STEP_PROOF"):
        chain.prover.prove(g.lo_root, g.lo + 1, posted.data.as_tuple(), chain.context(), steps[g.lo], branch)
    chain.prove_game(gid)
    assert game(chain, gid).status == GameStatus.ASSERTER_WON
    with boa.reverts("GAME_OVER"):
        chain.rollup.timeout(gid)
    # the window closes for new games
    set_time(chain.rollup.batch(posted.index).deadline)
    with boa.env.prank(challenger), boa.reverts("WINDOW_CLOSED"):
        chain.rollup.createGame(posted.index)


def test_split_points_match_python(chain: L1Chain) -> None:
    for lo, hi in [(0, 1), (0, 2), (0, 7), (0, 8), (0, 9), (3, 4096), (100, 117), (5, 5 + 10**6)]:
        assert list(chain.rollup.splitPoints(lo, hi)) == split_points(lo, hi, K)
    with boa.reverts("EMPTY_RANGE"):
        chain.rollup.splitPoints(4, 4)


# ---------------------------------------------------------------- clocks


def test_asserter_timeout(chain: L1Chain) -> None:
    posted = _two_batches(chain)
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, TEST.challenger_bond)
    gid = open_game(chain, posted.index, challenger)
    set_time(now() + TEST.clock)
    with boa.reverts("CLOCK_RUNNING"):
        chain.rollup.timeout(gid)
    set_time(now() + 1)
    assert posted.roots is not None
    with boa.env.prank(chain.sequencer), boa.reverts("CLOCK_SPENT"):
        chain.rollup.postRoots(gid, roots_at_splits(posted.roots, game(chain, gid)))
    chain.rollup.timeout(gid)
    assert game(chain, gid).status == GameStatus.CHALLENGER_WON
    assert chain.rollup.batchStatus(posted.index) == BatchStatus.REMOVED


def test_challenger_timeout_and_clock_accounting(chain: L1Chain) -> None:
    posted = _two_batches(chain)
    assert posted.roots is not None
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, TEST.challenger_bond)
    gid = open_game(chain, posted.index, challenger)
    set_time(now() + 100)
    g = game(chain, gid)
    roots = roots_at_splits(posted.roots, g)
    with boa.env.prank(chain.sequencer):
        chain.rollup.postRoots(gid, roots)
    g = game(chain, gid)
    assert g.asserter_clock == TEST.clock - 100 and g.challenger_clock == TEST.clock
    set_time(now() + TEST.clock - 50)
    with boa.env.prank(challenger):
        chain.rollup.choosePart(gid, roots, 0)
    g = game(chain, gid)
    assert g.challenger_clock == 50 and g.turn == Side.ASSERTER
    r = roots_at_splits(posted.roots, g)
    with boa.env.prank(chain.sequencer):
        chain.rollup.postRoots(gid, r)
    set_time(now() + 51)
    chain.rollup.timeout(gid)
    assert game(chain, gid).status == GameStatus.ASSERTER_WON


# ---------------------------------------------------------------- rollback cascade


def test_rollback_cascade(chain: L1Chain) -> None:
    """B1 honest; B2 wrong (consumes a deposit); B3, B4 on top. The challenger of B2
    wins: B2..B4 are removed, games on them closed with bonds returned, the queue
    pointers and the head go back to B1, and the chain continues from B1."""
    b1 = chain.post(chain.opening_batch())
    set_time(now() + 3)
    chain.deposit("whale", 5_000)
    from state.txs import encode_deposit

    b2_batch = chain.batch([encode_deposit(), encode_funding()])
    b2 = chain.post(b2_batch, bad_root(b"b2"), commit=False)
    b3 = chain.post(chain.batch([encode_funding()]), bad_root(b"b3"))
    b4 = chain.post(chain.batch([encode_funding()]), bad_root(b"b4"))
    assert chain.rollup.depositConsumed() == 3
    honest = chain.actor("honest")
    other = chain.actor("other")
    late = chain.actor("late")
    for who in (honest, other, late):
        chain.fund_bond(who, TEST.challenger_bond)
    g_b2 = open_game(chain, b2.index, honest)
    g_b2_other = open_game(chain, b2.index, other)
    g_b4 = open_game(chain, b4.index, late)
    assert b2.roots is not None
    lie = corrupt(b2.roots, 1, b"b2")
    lie[-1] = b2.post_root
    g = play_out(chain, g_b2, b2, lie, honest_chooser(b2.roots))
    assert g.status == GameStatus.CHALLENGER_WON
    for b in (b2, b3, b4):
        assert chain.rollup.batchStatus(b.index) == BatchStatus.REMOVED
    assert chain.rollup.head() == b1.index
    assert chain.rollup.depositConsumed() == 2 and chain.rollup.forcedConsumed() == 0
    # moves on removed batches are refused; the games are cancelled, bonds returned
    with boa.reverts("BATCH_REMOVED"):
        chain.rollup.timeout(g_b4)
    for gid, who in ((g_b2_other, other), (g_b4, late)):
        assert chain.rollup.locked(who) == TEST.challenger_bond
        chain.rollup.cancelGame(gid)
        assert game(chain, gid).status == GameStatus.CANCELLED
        assert chain.rollup.locked(who) == 0 and chain.rollup.bonds(who) == TEST.challenger_bond
    # cascaded batches release their proposer's bond when pruned; B2's was lost
    locked = chain.rollup.locked(chain.sequencer)
    with boa.reverts("NOT_PRUNABLE"):
        chain.rollup.prune(b2.index)
    with boa.reverts("NOT_PRUNABLE"):
        chain.rollup.prune(b1.index)
    chain.rollup.prune(b3.index)
    chain.rollup.prune(b4.index)
    assert chain.rollup.locked(chain.sequencer) == locked - 2 * TEST.proposer_bond == TEST.proposer_bond
    # the chain continues from B1: the deposit is consumed again, at height 2
    again = chain.post(b2_batch)
    info = chain.rollup.batch(again.index)
    assert again.honest and info.parent == b1.index and info.height == 2
    assert info.pre_root == b1.post_root and chain.rollup.depositConsumed() == 3
    assert chain.rollup.batchStatus(b3.index) == BatchStatus.REMOVED
    set_time(info.deadline)
    chain.rollup.finalize(b1.index)
    chain.rollup.finalize(again.index)
    assert chain.rollup.finalizedRoot(again.index) == chain.db.root


# ---------------------------------------------------------------- 4,096 steps


@dataclass
class Big:
    """A chain at its first batch, a 4,096-step batch of real fills on top, its honest roots (in the prover)."""

    chain: L1Chain
    batch: object
    roots: list[bytes]


@pytest.fixture(scope="module")
def big() -> Big:
    c = L1Chain()
    c.post(c.opening_batch())
    set_time(now() + 3)
    batch = c.trading_batch(4_095)
    assert len(batch.steps) == 4_096
    roots = c.honest_roots(batch)
    from l1_contracts.bindings import BatchData, parse_batch

    c.load_roots(BatchData.of(parse_batch(batch.encode()), 2, 0).steps_root, roots)
    return Big(c, batch, roots)


def _post_big(big: Big, root: bytes) -> Posted:
    c = big.chain
    posted = c.post(big.batch, root, load=False, commit=False, roots=big.roots)  # type: ignore[arg-type]
    return posted


def test_4096_steps_honest_challenger(big: Big) -> None:
    c = big.chain
    lie = corrupt(big.roots, 2_345, b"big")
    gas = Gas()
    wrong = _post_big(big, lie[-1])
    encoded = big.batch.encode()  # type: ignore[attr-defined]
    gas.note("postBatch (4,096 steps, 61 kB)", tx_gas(c.rollup, "postBatch", encoded, lie[-1], 4_096))
    challenger = c.actor("challenger")
    c.fund_bond(challenger, TEST.challenger_bond)
    gid = open_game(c, wrong.index, challenger)
    gas.note("createGame", tx_gas(c.rollup, "createGame", wrong.index))
    g = play_out(c, gid, wrong, lie, honest_chooser(big.roots), gas)
    gas.note("timeout", 0)
    assert g.status == GameStatus.CHALLENGER_WON
    assert (g.lo, g.hi) == (2_344, 2_345)
    assert g.round == 4 == dissection_rounds(4_096, K)
    for label, value in gas.figures.items():
        if value:
            report(label, value)


def test_4096_steps_honest_asserter(big: Big) -> None:
    c = big.chain
    honest = _post_big(big, big.roots[-1])
    assert honest.honest
    liar = c.actor("liar")
    c.fund_bond(liar, TEST.challenger_bond)
    gid = open_game(c, honest.index, liar)
    g = play_out(c, gid, honest, big.roots, lambda g, roots: len(roots) // 2)
    assert g.status == GameStatus.ASSERTER_WON and g.round == 4


def test_dissection_rounds_bound() -> None:
    assert dissection_rounds(4_096, 8) == 4
    assert dissection_rounds(4_097, 8) == 5
    assert dissection_rounds(4_096, 16) == 3
    assert dissection_rounds(4_096, 2) == 12
    for n in range(2, 600):
        assert dissection_rounds(n, K) == (n - 1).bit_length() // 3 + (1 if (n - 1).bit_length() % 3 else 0)


# ---------------------------------------------------------------- stateful fuzz


@dataclass
class BatchModel:
    """What the test knows about one posted batch."""

    index: int
    number: int  # which prepared batch (1..3)
    trace: list[bytes]  # the asserter's claimed roots after 0..n steps
    honest_pre: bool  # the pre-state root is the honest one
    honest: bool  # honest_pre and the post root is honest
    posted: Posted


@dataclass
class GameModel:
    gid: int
    batch: int
    challenger: str
    created: int


class Prepared:
    """Three real batches (deposits and prices; fills; more fills) with honest roots,
    queued and loaded into the prover in a base snapshot."""

    def __init__(self) -> None:
        c = L1Chain()
        self.chain = c
        b1 = c.opening_batch(("maker", "taker"))
        roots1 = c.honest_roots(b1)
        c.commit(b1)
        set_time(now() + 1)
        b2 = c.trading_batch(12)
        roots2 = c.honest_roots(b2)
        c.commit(b2)
        set_time(now() + 1)
        b3 = c.trading_batch(40)
        roots3 = c.honest_roots(b3)
        c.commit(b3)
        self.batches = [b1, b2, b3]
        self.roots = [roots1, roots2, roots3]
        from l1_contracts.bindings import BatchData, parse_batch

        starts = [(0, 0), (2, 0), (2, 0)]
        self.data = [
            BatchData.of(parse_batch(b.encode()), d, f) for b, (d, f) in zip(self.batches, starts, strict=True)
        ]
        for data, roots in zip(self.data, self.roots, strict=True):
            c.load_roots(data.steps_root, roots)
        self.honest_challenger = c.actor("honest challenger")
        self.liars = [c.actor("liar 1"), c.actor("liar 2")]
        c.fund_bond(self.honest_challenger, 50 * TEST.challenger_bond)
        for who in self.liars:
            c.fund_bond(who, 6 * TEST.challenger_bond)
        self.actors = [c.sequencer, self.honest_challenger, *self.liars]
        self.deposited = sum(int(c.rollup.bonds(a)) for a in self.actors)


_PREPARED: list[Prepared] = []


class DisputeMachine(RuleBasedStateMachine):
    """The sequencer posts honest or lying batches; an honest challenger and two
    liars challenge; everyone moves or stalls while time runs."""

    def __init__(self) -> None:
        super().__init__()
        self.p = _PREPARED[0]
        self.c = self.p.chain
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.batches: dict[int, BatchModel] = {}
        self.games: dict[int, GameModel] = {}
        self.roots_of: dict[int, list[bytes]] = {}

    def teardown(self) -> None:
        try:
            self._drive_to_end()
            for gm in self.games.values():
                g = game(self.c, gm.gid)
                b = self.batches[gm.batch]
                assert g.status != GameStatus.ACTIVE
                if gm.challenger == self.p.honest_challenger:
                    assert g.status in (GameStatus.CHALLENGER_WON, GameStatus.CANCELLED), g
                if b.honest:
                    assert g.status != GameStatus.CHALLENGER_WON, g
        finally:
            self._anchor.__exit__(None, None, None)

    # -------------------------------------------------------- model helpers

    def _head_height(self) -> int:
        return int(self.c.rollup.batch(self.c.rollup.head()).height)

    def _status(self, index: int) -> BatchStatus:
        return BatchStatus(self.c.rollup.batchStatus(index))

    def _live_batches(self) -> list[BatchModel]:
        return [b for b in self.batches.values() if self._status(b.index) == BatchStatus.PENDING]

    def _active_games(self) -> list[GameInfo]:
        out = []
        for gm in self.games.values():
            g = game(self.c, gm.gid)
            if g.status == GameStatus.ACTIVE:
                out.append(g)
        return out

    def _honest_to_move(self, g: GameInfo) -> bool:
        b = self.batches[g.batch]
        if g.turn == Side.ASSERTER:
            return b.honest
        return g.challenger == self.p.honest_challenger or (b.honest and g.hi - g.lo == 1)

    def _move(self, g: GameInfo, choice: int = 0) -> None:
        """One move of the side to move: the asserter follows its trace; an honest
        challenger picks the first disputed part, a liar part ``choice``."""
        b = self.batches[g.batch]
        if self._status(g.batch) != BatchStatus.PENDING:
            self.c.rollup.cancelGame(g.game)
            return
        if g.turn == Side.ASSERTER:
            roots = roots_at_splits(b.trace, g)
            with boa.env.prank(g.asserter):
                self.c.rollup.postRoots(g.game, roots)
            self.roots_of[g.game] = roots
        elif g.roots_hash != ZERO:
            roots = self.roots_of[g.game]
            if g.challenger == self.p.honest_challenger:
                part = first_disputed(self.p.roots[b.number - 1], g, roots)
            else:
                part = choice % (len(roots) + 1)
            with boa.env.prank(g.challenger):
                self.c.rollup.choosePart(g.game, roots, part)
        else:
            self.c.prove(b.posted, g.lo, g.lo_root)
            self.c.rollup.proveStep(g.game)

    def _honest_turns(self) -> None:
        """The honest challenger watches (challenges every wrong root on an honest
        pre-state) and every honest side moves at once."""
        for b in self._live_batches():
            if b.honest_pre and not b.honest and now() < self.c.rollup.batch(b.index).deadline:
                mine = [g for g in self.games.values() if g.batch == b.index and g.challenger == self.p.honest_challenger]
                if not mine:
                    self._open(b.index, self.p.honest_challenger)
        # an honest side may be to move again at once (after choosing the last
        # split the challenger owes the proof): repeat until none is
        for _ in range(64):
            due = [g for g in self._active_games() if self._honest_to_move(g) and now() <= g.expiry()]
            if not due:
                return
            for g in due:
                self._move(g)
        raise AssertionError("honest moves did not settle")

    def _open(self, index: int, who: str) -> None:
        with boa.env.prank(who):
            gid = int(self.c.rollup.createGame(index))
        self.games[gid] = GameModel(gid, index, who, now())

    def _drive_to_end(self) -> None:
        for _ in range(100):
            self._honest_turns()
            active = self._active_games()
            if not active:
                return
            set_time(now() + TEST.clock + 1)
            for g in self._active_games():
                if self._status(g.batch) != BatchStatus.PENDING:
                    self.c.rollup.cancelGame(g.game)
                elif now() > g.expiry():
                    self.c.rollup.timeout(g.game)
        raise AssertionError("games did not end")

    # -------------------------------------------------------- rules

    @precondition(lambda self: self._head_height() < 3)
    @rule(lie=st.booleans(), at=st.integers(min_value=1, max_value=60))
    def post(self, lie: bool, at: int) -> None:
        head = int(self.c.rollup.head())
        number = self._head_height() + 1
        parent = self.batches.get(head)
        honest_pre = parent is None or parent.honest
        honest = self.p.roots[number - 1]
        if honest_pre and not lie:
            trace = list(honest)
        elif honest_pre:
            trace = corrupt(honest, min(at, len(honest) - 1), b"seq")
        else:
            trace = [parent.trace[-1] if parent else honest[0]] + [
                bad_root(b"inherited:%d:%d" % (head, j)) for j in range(1, len(honest))
            ]
        batch = self.p.batches[number - 1]
        with boa.env.prank(self.c.sequencer):
            index = int(self.c.rollup.postBatch(batch.encode(), trace[-1], len(batch.steps)))
        posted = Posted(index, batch, self.p.data[number - 1], honest if honest_pre else None, trace[-1])
        self.batches[index] = BatchModel(index, number, trace, honest_pre, honest_pre and not lie, posted)

    @rule(which=st.integers(min_value=0, max_value=1), pick=st.integers(min_value=0, max_value=10))
    def liar_challenges(self, which: int, pick: int) -> None:
        live = [b for b in self._live_batches() if now() < self.c.rollup.batch(b.index).deadline]
        if live and self.c.rollup.freeBond(self.p.liars[which]) >= TEST.challenger_bond:
            self._open(live[pick % len(live)].index, self.p.liars[which])

    @rule()
    def honest_turns(self) -> None:
        self._honest_turns()

    def _liar_move(self, g: GameInfo, choice: int) -> None:
        b = self.batches[g.batch]
        if g.roots_hash == ZERO and g.turn == Side.CHALLENGER and self._status(g.batch) == BatchStatus.PENDING:
            # a proof from an invented root has no witness: the prover refuses it
            if not b.honest_pre or g.lo_root != self.p.roots[b.number - 1][g.lo]:
                with boa.reverts():
                    self._move(g, choice)
                return
        self._move(g, choice)

    def _liar_games(self) -> list[GameInfo]:
        return [g for g in self._active_games() if not self._honest_to_move(g) and now() <= g.expiry()]

    @rule(pick=st.integers(min_value=0, max_value=10), choice=st.integers(min_value=0, max_value=15))
    def liar_moves(self, pick: int, choice: int) -> None:
        games = self._liar_games()
        if games:
            self._liar_move(games[pick % len(games)], choice)

    @rule(choices=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=12))
    def play(self, choices: list[int]) -> None:
        """Everyone moves at once, the liars as drawn, until the draws run out."""
        for choice in choices:
            self._honest_turns()
            games = self._liar_games()
            if not games:
                return
            self._liar_move(games[choice % len(games)], choice)

    @rule(dt=st.sampled_from([1, 30, TEST.clock // 2, TEST.clock + 1, TEST.challenge_window, 2 * TEST.challenge_window]))
    def advance(self, dt: int) -> None:
        self._honest_turns()
        set_time(now() + dt)

    @rule()
    def housekeeping(self) -> None:
        for g in self._active_games():
            if self._status(g.batch) != BatchStatus.PENDING:
                self.c.rollup.cancelGame(g.game)
            elif now() > g.expiry():
                self.c.rollup.timeout(g.game)
        for b in self.batches.values():
            info = self.c.rollup.batch(b.index)
            if info.status == BatchStatus.REMOVED and self._stored_pending(b.index):
                self.c.rollup.prune(b.index)
            elif info.status == BatchStatus.PENDING and now() >= info.deadline and info.open_games == 0:
                if self._status(info.parent) == BatchStatus.FINAL:
                    self.c.rollup.finalize(b.index)

    def _stored_pending(self, index: int) -> bool:
        with boa.env.anchor():
            try:
                self.c.rollup.prune(index)
                return True
            except Exception:
                return False

    # -------------------------------------------------------- invariants

    @invariant()
    def bonds_are_conserved(self) -> None:
        r = self.c.rollup
        total = sum(int(r.bonds(a)) for a in self.p.actors)
        assert total + int(r.burnt()) == self.p.deposited
        assert boa.env.get_balance(r.address) == total + int(r.burnt())
        for a in self.p.actors:
            assert int(r.locked(a)) <= int(r.bonds(a))
        for who in [self.p.honest_challenger, *self.p.liars]:
            active = [g for g in self._active_games() if g.challenger == who]
            assert int(r.locked(who)) == len(active) * TEST.challenger_bond

    @invariant()
    def honest_asserter_never_loses(self) -> None:
        for b in self.batches.values():
            if b.honest:
                assert self._status(b.index) != BatchStatus.REMOVED
        for gm in self.games.values():
            if self.batches[gm.batch].honest:
                assert game(self.c, gm.gid).status != GameStatus.CHALLENGER_WON

    @invariant()
    def honest_challenger_never_loses(self) -> None:
        for gm in self.games.values():
            if gm.challenger == self.p.honest_challenger:
                assert game(self.c, gm.gid).status != GameStatus.ASSERTER_WON

    @invariant()
    def no_wrong_root_is_final(self) -> None:
        for b in self.batches.values():
            if self._status(b.index) == BatchStatus.FINAL:
                assert b.honest

    @invariant()
    def no_game_outlives_its_clocks(self) -> None:
        for g in self._active_games():
            gm = self.games[g.game]
            assert g.expiry() <= gm.created + 2 * TEST.clock
            if now() > g.expiry() and self._status(g.batch) == BatchStatus.PENDING:
                with boa.env.anchor():
                    self.c.rollup.timeout(g.game)


def test_dispute_state_machine() -> None:
    if not _PREPARED:
        _PREPARED.append(Prepared())
    examples = 200 if LONG else 12
    DisputeMachine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=30 if LONG else 20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    DisputeMachine.TestCase().runTest()


def test_gas_game_endings(chain: L1Chain) -> None:
    b1 = chain.post(chain.batch([encode_funding(), encode_funding()]), bad_root(b"g1"))
    b2 = chain.post(chain.batch([encode_funding()]), bad_root(b"g2"))
    first, second = chain.actor("first"), chain.actor("second")
    for who in (first, second):
        chain.fund_bond(who, TEST.challenger_bond)
    g1 = open_game(chain, b1.index, first)
    report("createGame (first game of a challenger)", tx_gas(chain.rollup, "createGame", b1.index))
    g2 = open_game(chain, b1.index, second)
    set_time(now() + TEST.clock + 1)
    chain.rollup.timeout(g1)
    report("timeout (asserter loses: batch removed, bonds paid)", tx_gas(chain.rollup, "timeout", g1))
    chain.rollup.cancelGame(g2)
    report("cancelGame", tx_gas(chain.rollup, "cancelGame", g2))
    chain.rollup.prune(b2.index)
    report("prune", tx_gas(chain.rollup, "prune", b2.index))
    assert chain.rollup.locked(chain.sequencer) == 0
