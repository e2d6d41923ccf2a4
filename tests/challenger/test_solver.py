"""The dispute solver (challenger/solver.py), driven by a pure game simulation.

The simulation applies moves exactly as DisputeGame.vy does (split points
from proofs.game, the new range and roots of `_choose`), so a solver that
wins here wins on L1; tests/challenger/test_player.py plays the same solver
against the contracts.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from challenger.solver import (
    ChoosePart,
    ClaimTimeout,
    GameState,
    PostRoots,
    Prove,
    Side,
    Stuck,
    Wait,
    asserter_move,
    asserter_roots,
    challenger_move,
    check_choice,
    first_disputed_part,
    new_range,
    points_needed,
    rounds_bound,
)
from proofs.game import dissection_rounds, split_points
from state.keccak import keccak256


def honest_trace(n: int) -> list[bytes]:
    return [keccak256(b"honest:%d" % i) for i in range(n + 1)]


def garbage(tag: str) -> bytes:
    return keccak256(b"garbage:" + tag.encode())


def start(n: int, k: int, hi_root: bytes, lo_root: bytes) -> GameState:
    """A new game (createGame): the asserter moves first unless the batch has one step."""
    return GameState(0, n, lo_root, hi_root, Side.ASSERTER if n > 1 else Side.CHALLENGER, k)


sizes = st.integers(min_value=1, max_value=5_000)
arities = st.integers(min_value=2, max_value=16)


# ---------------------------------------------------------------- the honest challenger


@given(n=sizes, k=arities, data=st.data())
def test_honest_challenger_always_reaches_a_step_it_can_prove(n: int, k: int, data: st.DataObject) -> None:
    """Against any asserter whose posted root is wrong — a consistent liar (a trace wrong at
    any set of positions, the last among them) or one posting arbitrary roots each round —
    the honest challenger ends at one step with lo_root right and hi_root wrong, within
    ⌈log_k n⌉ rounds, every choice keeping the honest rules."""
    honest = honest_trace(n)
    consistent = data.draw(st.booleans(), label="consistent liar")
    wrong = data.draw(st.sets(st.integers(1, n), max_size=8), label="wrong positions") | {n}
    liar = [garbage(f"liar:{i}") if i in wrong else r for i, r in enumerate(honest)]
    state = start(n, k, liar[n], honest[0])
    rounds = 0
    while True:
        if state.turn == Side.ASSERTER:
            if consistent:
                roots = asserter_roots(state.lo, state.hi, k, liar)
            else:
                inner = split_points(state.lo, state.hi, k)[1:-1]
                roots = tuple(
                    honest[p] if data.draw(st.booleans(), label=f"honest root at {p}") else garbage(f"{rounds}:{p}")
                    for p in inner
                )
            assert isinstance(challenger_move(state, honest), Wait)
            state = replace(state, roots=roots, turn=Side.CHALLENGER)
        move = challenger_move(state, honest)
        if isinstance(move, Prove):
            break
        assert isinstance(move, ChoosePart), move
        assert check_choice(state, honest, move.part) is None
        state = new_range(state, move.part)
        assert (state.lo, state.hi) == (move.lo, move.hi)
        rounds += 1
    assert state.hi - state.lo == 1
    assert state.lo_root == honest[state.lo]
    assert state.hi_root != honest[state.hi]
    assert (move.step_index, move.pre_root) == (state.lo, honest[state.lo])
    assert move.expected_root == honest[state.hi] != move.disputed_root
    assert rounds <= rounds_bound(n, k)
    if consistent:
        # the proof lands where the liar's trace turns wrong: right before, wrong after
        assert state.lo not in wrong and state.hi in wrong


@given(n=sizes, k=arities)
def test_the_bound_is_dissection_rounds(n: int, k: int) -> None:
    """⌈log_k n⌉ is what always choosing the longest part takes (proofs.game.dissection_rounds)."""
    assert dissection_rounds(n, k) == rounds_bound(n, k)


# ---------------------------------------------------------------- the honest asserter


@given(n=sizes, k=arities, data=st.data())
def test_a_lying_challenger_always_ends_on_a_proven_root_equal_to_hi_root(
    n: int, k: int, data: st.DataObject
) -> None:
    """Against the honest asserter, a challenger choosing any parts — at random, or honestly
    by a wrong trace of its own — ends at a step whose proven root (the true root after the
    step from the agreed lo_root) equals hi_root: the asserter wins."""
    honest = honest_trace(n)
    by_trace = data.draw(st.booleans(), label="plays by a wrong trace")
    wrong = data.draw(st.sets(st.integers(1, n), min_size=1, max_size=8), label="its wrong positions")
    own = [garbage(f"own:{i}") if i in wrong else r for i, r in enumerate(honest)]
    state = start(n, k, honest[n], honest[0])
    rounds = 0
    while not state.at_one_step:
        move = asserter_move(state, honest)
        assert isinstance(move, PostRoots)
        assert len(move.roots) == len(split_points(state.lo, state.hi, k)) - 2
        state = replace(state, roots=move.roots, turn=Side.CHALLENGER)
        assert isinstance(asserter_move(state, honest), Wait)
        parts = len(move.roots) + 1
        if by_trace:
            part = first_disputed_part(state, own)
            if part is None:
                part = parts - 1
        else:
            part = data.draw(st.integers(0, parts - 1), label="part")
        state = new_range(state, part)
        rounds += 1
    assert rounds <= rounds_bound(n, k)
    assert state.lo_root == honest[state.lo]
    assert state.hi_root == honest[state.hi]
    proven = honest[state.lo + 1]  # what the prover records from lo_root
    assert proven == state.hi_root
    assert isinstance(asserter_move(state, honest), Wait)


# ---------------------------------------------------------------- single rules


def test_one_step_batch_goes_straight_to_the_proof() -> None:
    honest = honest_trace(1)
    state = start(1, 8, garbage("x"), honest[0])
    move = challenger_move(state, honest)
    assert move == Prove(0, honest[0], honest[1], garbage("x"))


def test_clocks() -> None:
    honest = honest_trace(10)
    state = GameState(0, 10, honest[0], garbage("x"), Side.ASSERTER, 8, expiry=100, now=100)
    assert isinstance(challenger_move(state, honest), Wait)  # a move at the expiry second is allowed
    late = replace(state, now=101)
    assert challenger_move(late, honest) == ClaimTimeout()
    assert isinstance(asserter_move(late, honest), Stuck)
    mine = replace(late, turn=Side.CHALLENGER, roots=asserter_roots(0, 10, 8, honest))
    assert isinstance(challenger_move(mine, honest), Stuck)
    assert asserter_move(mine, honest) == ClaimTimeout()


def test_states_honest_play_never_reaches_are_stuck() -> None:
    honest = honest_trace(10)
    # the agreed root is not ours
    s = GameState(0, 10, garbage("lo"), garbage("hi"), Side.CHALLENGER, 8, roots=tuple(honest[1:8]))
    assert isinstance(challenger_move(s, honest), Stuck)
    # we agree with everything, the asserted root included
    s = GameState(0, 10, honest[0], honest[10], Side.CHALLENGER, 8,
                  roots=asserter_roots(0, 10, 8, honest))
    assert isinstance(challenger_move(s, honest), Stuck)
    # at one step, agreeing with hi_root
    s = GameState(3, 4, honest[3], honest[4], Side.CHALLENGER, 8)
    assert isinstance(challenger_move(s, honest), Stuck)
    # a wrong number of roots
    s = GameState(0, 10, honest[0], garbage("hi"), Side.CHALLENGER, 8, roots=(honest[1],))
    assert isinstance(challenger_move(s, honest), Stuck)


def test_choice_names_the_first_disputed_part() -> None:
    honest = honest_trace(64)
    roots = asserter_roots(0, 64, 8, honest)
    lying = roots[:3] + tuple(garbage(str(i)) for i in range(3, 7))
    s = GameState(0, 64, honest[0], garbage("hi"), Side.CHALLENGER, 8, roots=lying)
    move = challenger_move(s, honest)
    assert move == ChoosePart(3, lying, 24, 32)
    assert check_choice(s, honest, 3) is None
    assert check_choice(s, honest, 4) == "the new lo_root is disputed"
    assert check_choice(s, honest, 2) == "the new hi_root is agreed"
    assert points_needed(s) == split_points(0, 64, 8)
    assert points_needed(new_range(s, 3)) == [24, 32]


def test_game_state_refuses_empty_ranges() -> None:
    with pytest.raises(ValueError):
        GameState(5, 5, b"", b"", Side.ASSERTER, 8)
    with pytest.raises(ValueError):
        GameState(0, 5, b"", b"", Side.ASSERTER, 1)
