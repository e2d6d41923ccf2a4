# pragma version ~=0.4.3
"""
@title DisputeGame
@license MIT
@notice The k-ary dissection game of DESIGN §6 as a state machine: games,
        turns, chess clocks and split points. The rollup contract
        initializes this module, checks who may move, and applies the
        outcome (bonds, batch removal); this module only decides.
@dev One game is between a batch's proposer (the asserter) and one
     challenger. Agreed: root `lo_root` after `lo` steps; disputed: the
     asserter's `hi_root` after `hi` steps.

     Transition table (`turn` says whose clock runs):

     | state                    | move                         | next                          |
     |--------------------------|------------------------------|-------------------------------|
     | hi - lo >= 2, ASSERTER   | `_post_roots` (p - 1 roots)  | CHALLENGER, roots posted      |
     | roots posted, CHALLENGER | `_choose` part j             | ASSERTER, or the proof        |
     | hi - lo == 1, CHALLENGER | `_one_step`, `_prove_result` | ASSERTER_WON / CHALLENGER_WON |
     | ACTIVE, clock spent      | `_timeout`                   | the side to move loses        |
     | ACTIVE, batch removed    | `_cancel`                    | CANCELLED                     |

     p = min(k, hi - lo) parts; split point j of [lo, hi] is
     lo + (hi - lo) * j // p (j = 0..p): the players never choose where to
     cut. The asserter's roots are kept as their hash (they are in the
     `RootsPosted` event); the challenger passes them back when it chooses.
"""


flag GameStatus:
    ACTIVE
    ASSERTER_WON
    CHALLENGER_WON
    CANCELLED


flag Side:
    ASSERTER
    CHALLENGER


struct Game:
    batch: uint256  # the disputed batch
    asserter: address  # the batch's proposer
    challenger: address
    status: GameStatus
    turn: Side  # the side whose clock runs
    lo: uint256  # agreed step count
    hi: uint256  # disputed step count
    lo_root: bytes32  # agreed root after `lo` steps
    hi_root: bytes32  # the asserter's root after `hi` steps
    roots_hash: bytes32  # keccak256(abi_encode(roots)) while the challenger must choose
    asserter_clock: uint256  # seconds left to the asserter at `last_move`
    challenger_clock: uint256  # seconds left to the challenger at `last_move`
    last_move: uint256  # when the running clock started
    round: uint256  # completed dissection rounds


# Largest dissection arity.
MAX_K: constant(uint256) = 16


event GameCreated:
    game: indexed(uint256)
    batch: indexed(uint256)
    challenger: indexed(address)
    asserter: address
    lo: uint256
    hi: uint256
    lo_root: bytes32
    hi_root: bytes32
    clock: uint256


event RootsPosted:
    game: indexed(uint256)
    round: uint256
    lo: uint256
    hi: uint256
    roots: DynArray[bytes32, MAX_K - 1]


event PartChosen:
    game: indexed(uint256)
    round: uint256
    part: uint256
    lo: uint256
    hi: uint256
    lo_root: bytes32
    hi_root: bytes32


event StepProven:
    game: indexed(uint256)
    step_index: uint256
    proven_root: bytes32
    asserted_root: bytes32


event GameTimedOut:
    game: indexed(uint256)
    loser: Side


event GameResolved:
    game: indexed(uint256)
    batch: indexed(uint256)
    status: GameStatus
    winner: address
    loser: address


event GameCancelled:
    game: indexed(uint256)
    batch: indexed(uint256)


games: HashMap[uint256, Game]
gameCount: public(uint256)


@internal
def _create(
    batch: uint256,
    asserter: address,
    challenger: address,
    n_steps: uint256,
    pre_root: bytes32,
    post_root: bytes32,
    clock: uint256,
) -> uint256:
    """
    @notice Open a game on a batch of `n_steps` steps (>= 1).
    @param batch The batch index.
    @param asserter The batch's proposer.
    @param challenger The challenger.
    @param n_steps The batch's step count.
    @param pre_root The agreed root (the parent's post-state root).
    @param post_root The disputed root (the batch's post-state root).
    @param clock Seconds on each side's clock.
    @return The game id.
    """
    gid: uint256 = self.gameCount
    # A one-step batch goes straight to the proof, which is the challenger's move.
    turn: Side = Side.ASSERTER
    if n_steps == 1:
        turn = Side.CHALLENGER
    self.games[gid] = Game(
        batch=batch,
        asserter=asserter,
        challenger=challenger,
        status=GameStatus.ACTIVE,
        turn=turn,
        lo=0,
        hi=n_steps,
        lo_root=pre_root,
        hi_root=post_root,
        roots_hash=empty(bytes32),
        asserter_clock=clock,
        challenger_clock=clock,
        last_move=block.timestamp,
        round=0,
    )
    self.gameCount = gid + 1
    log GameCreated(
        game=gid,
        batch=batch,
        challenger=challenger,
        asserter=asserter,
        lo=0,
        hi=n_steps,
        lo_root=pre_root,
        hi_root=post_root,
        clock=clock,
    )
    return gid


@internal
def _post_roots(gid: uint256, caller: address, roots: DynArray[bytes32, MAX_K - 1], k: uint256):
    """
    @notice The asserter's move: its roots at the p-1 inner split points of [lo, hi].
    @param gid The game.
    @param caller The caller (must be the asserter).
    @param roots The roots after split points 1..p-1, in order.
    @param k The deployment's dissection arity.
    """
    g: Game = self._active(gid)
    assert caller == g.asserter, "NOT_ASSERTER"
    assert g.turn == Side.ASSERTER, "NOT_YOUR_TURN"
    # cannot underflow: lo < hi in every active game
    span: uint256 = unsafe_sub(g.hi, g.lo)
    parts: uint256 = min(k, span)
    assert len(roots) + 1 == parts, "WRONG_ROOT_COUNT"
    g = self._charge(g)
    g.roots_hash = keccak256(abi_encode(roots))
    g.turn = Side.CHALLENGER
    self.games[gid] = g
    log RootsPosted(game=gid, round=g.round, lo=g.lo, hi=g.hi, roots=roots)


@internal
def _choose(
    gid: uint256, caller: address, roots: DynArray[bytes32, MAX_K - 1], part: uint256, k: uint256
):
    """
    @notice The challenger's move: the part of [lo, hi] whose end root it disputes.
    @dev An honest challenger names the first such part: its start root is
         then one it agrees with.
    @param gid The game.
    @param caller The caller (must be the challenger).
    @param roots The asserter's roots of this round, as posted.
    @param part The part, 0-based, below p.
    @param k The deployment's dissection arity.
    """
    g: Game = self._active(gid)
    assert caller == g.challenger, "NOT_CHALLENGER"
    assert g.turn == Side.CHALLENGER and g.roots_hash != empty(bytes32), "NOT_YOUR_TURN"
    assert keccak256(abi_encode(roots)) == g.roots_hash, "WRONG_ROOTS"
    # cannot underflow: lo < hi in every active game
    span: uint256 = unsafe_sub(g.hi, g.lo)
    parts: uint256 = min(k, span)
    assert part < parts, "BAD_PART"
    g = self._charge(g)
    lo: uint256 = self._split_point(g.lo, g.hi, parts, part)
    hi: uint256 = self._split_point(g.lo, g.hi, parts, part + 1)
    if part > 0:
        g.lo_root = roots[part - 1]
    if part + 1 < parts:
        g.hi_root = roots[part]
    g.lo = lo
    g.hi = hi
    g.roots_hash = empty(bytes32)
    g.round += 1
    # At one step the proof is due, and it is the challenger's burden.
    if hi - lo == 1:
        g.turn = Side.CHALLENGER
    else:
        g.turn = Side.ASSERTER
    self.games[gid] = g
    log PartChosen(
        game=gid, round=g.round, part=part, lo=lo, hi=hi, lo_root=g.lo_root, hi_root=g.hi_root
    )


@internal
def _one_step(gid: uint256) -> Game:
    """
    @notice The game, checked to be at its one-step stage with the challenger's clock running.
    @dev Charges the challenger's clock up to now.
    @param gid The game.
    @return The game (lo, lo_root, hi_root say what to prove).
    """
    g: Game = self._active(gid)
    assert g.hi - g.lo == 1 and g.turn == Side.CHALLENGER, "NOT_ONE_STEP"
    g = self._charge(g)
    self.games[gid] = g
    return g


@internal
def _prove_result(gid: uint256, proven_root: bytes32) -> bool:
    """
    @notice Settle a one-step game with the prover's root.
    @param gid The game (at its one-step stage).
    @param proven_root The root the prover computed after step `lo`.
    @return True if the asserter won (its root equals the proven one).
    """
    g: Game = self.games[gid]
    log StepProven(game=gid, step_index=g.lo, proven_root=proven_root, asserted_root=g.hi_root)
    return self._resolve(gid, proven_root == g.hi_root)


@internal
def _timeout(gid: uint256) -> bool:
    """
    @notice End a game whose running clock is spent: the side to move loses.
    @param gid The game.
    @return True if the asserter won.
    """
    g: Game = self._active(gid)
    assert block.timestamp > self._expiry(g), "CLOCK_RUNNING"
    log GameTimedOut(game=gid, loser=g.turn)
    return self._resolve(gid, g.turn == Side.CHALLENGER)


@internal
def _cancel(gid: uint256):
    """
    @notice Close a game whose batch was removed (no winner, no loser).
    @param gid The game.
    """
    g: Game = self._active(gid)
    self.games[gid].status = GameStatus.CANCELLED
    log GameCancelled(game=gid, batch=g.batch)


@internal
def _resolve(gid: uint256, asserter_won: bool) -> bool:
    """
    @notice Record the winner of a game.
    @param gid The game.
    @param asserter_won Which side won.
    @return `asserter_won`.
    """
    g: Game = self.games[gid]
    status: GameStatus = GameStatus.CHALLENGER_WON
    winner: address = g.challenger
    loser: address = g.asserter
    if asserter_won:
        status = GameStatus.ASSERTER_WON
        winner = g.asserter
        loser = g.challenger
    self.games[gid].status = status
    log GameResolved(game=gid, batch=g.batch, status=status, winner=winner, loser=loser)
    return asserter_won


@internal
@view
def _active(gid: uint256) -> Game:
    """
    @notice The game, which must exist and be active.
    @param gid The game.
    @return A copy of it.
    """
    assert gid < self.gameCount, "NO_GAME"
    g: Game = self.games[gid]
    assert g.status == GameStatus.ACTIVE, "GAME_OVER"
    return g


@internal
@view
def _charge(g: Game) -> Game:
    """
    @notice Stop the running clock at now, charging the side to move.
    @dev Refuses a move once that side's clock is spent (then only
         `timeout` ends the game).
    @param g The game.
    @return The game with its clocks updated and `last_move` = now.
    """
    out: Game = g
    assert block.timestamp <= self._expiry(g), "CLOCK_SPENT"
    # cannot underflow: last_move is a past block time
    elapsed: uint256 = unsafe_sub(block.timestamp, g.last_move)
    # cannot underflow: elapsed <= the running clock, checked above
    if g.turn == Side.ASSERTER:
        out.asserter_clock = unsafe_sub(g.asserter_clock, elapsed)
    else:
        out.challenger_clock = unsafe_sub(g.challenger_clock, elapsed)
    out.last_move = block.timestamp
    return out


@internal
@view
def _expiry(g: Game) -> uint256:
    """
    @notice The time the running clock runs out (a move is allowed up to and including it).
    @param g The game.
    @return last_move + the running side's clock.
    """
    if g.turn == Side.ASSERTER:
        return g.last_move + g.asserter_clock
    return g.last_move + g.challenger_clock


@internal
@pure
def _split_point(lo: uint256, hi: uint256, parts: uint256, j: uint256) -> uint256:
    """
    @notice Split point j of [lo, hi] cut into `parts` even parts.
    @param lo The agreed step count.
    @param hi The disputed step count (> lo).
    @param parts The number of parts, min(k, hi - lo).
    @param j 0..parts.
    @return lo + (hi - lo) * j // parts.
    """
    return lo + (hi - lo) * j // parts


@internal
@pure
def _split_points(lo: uint256, hi: uint256, k: uint256) -> DynArray[uint256, MAX_K + 1]:
    """
    @notice All split points of [lo, hi], both ends included.
    @param lo The agreed step count.
    @param hi The disputed step count (> lo).
    @param k The dissection arity.
    @return The p + 1 points lo = x_0 < x_1 < ... < x_p = hi.
    """
    parts: uint256 = min(k, hi - lo)
    out: DynArray[uint256, MAX_K + 1] = []
    for j: uint256 in range(MAX_K + 1):
        if j > parts:
            break
        out.append(self._split_point(lo, hi, parts, j))
    return out
