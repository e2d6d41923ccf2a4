# pragma version ~=0.4.3
"""
@title HFX rollup
@license MIT
@notice Batches, bonds, the challenge window, finality, proposer fallback,
        forced inclusion, and the dispute games (docs/l1.md).
@dev Batches form a chain from the genesis batch (index 0, FINAL). A new
     batch's parent is the current head. `postBatch` parses the batch bytes
     of docs/stf.md §5.1 and keeps a commitment to them (`data_hash`, see
     IOneStepProver.BatchData), so a one-step proof shows a single step by a
     Merkle branch. When an asserter loses a game its batch is REMOVED and
     the head returns to the batch's parent: every later batch is removed
     with it, lazily (it is no longer on the canonical chain; `prune`
     releases its proposer's bond and records the status; games on it are
     closed by `cancelGame` with the challenger's bond returned). The
     queues' consumed pointers are the head's ends, so they roll back with
     the head.

     Bonds are in ether and kept as per-address balances: `bonds` (owned)
     and `locked` (behind pending batches and open games). A loser's locked
     bond goes to the winner less `BURN_BPS`, which stays in the contract
     for ever (`burnt`): the contract's balance is always
     sum(bonds) + burnt.

     Reverts carry a stable UPPER_SNAKE reason code (docs/l1.md).
"""

from . import IBridge
from . import IOneStepProver
from . import Merkle
from . import DisputeGame

initializes: DisputeGame

exports: DisputeGame.gameCount


flag BatchStatus:
    PENDING
    FINAL
    REMOVED


# A batch record as the functions see it. Stored packed (see `Packed`).
struct Batch:
    parent: uint256  # the batch this one follows
    height: uint256  # its position in the chain (genesis 0)
    post_root: bytes32  # the claimed state root after the batch
    data_hash: bytes32  # keccak256(abi_encode(IOneStepProver.BatchData))
    timestamp: uint256  # the batch's L2 time
    proposer: address
    deadline: uint256  # end of the challenge window
    status: BatchStatus  # as stored; see `_status`
    n_steps: uint256
    deposit_end: uint256  # deposit-queue items consumed up to and including this batch
    forced_end: uint256  # forced-queue items consumed up to and including this batch
    open_games: uint256  # active games against this batch


# A batch record in storage: five words.
#   chain  = parent u64 | height u64 | timestamp u64 | deadline u64
#   owner  = open_games u56 | n_steps u32 | status u8 | proposer (160 bits)
#   queues = deposit_end u128 | forced_end u128
struct Packed:
    post_root: bytes32
    data_hash: bytes32
    chain: uint256
    owner: uint256
    queues: uint256


# What the chain reports about one batch.
struct BatchInfo:
    parent: uint256
    height: uint256
    pre_root: bytes32
    post_root: bytes32
    data_hash: bytes32
    timestamp: uint256
    proposer: address
    posted_at: uint256
    deadline: uint256
    status: BatchStatus
    n_steps: uint256
    deposit_end: uint256
    forced_end: uint256
    open_games: uint256


# Largest batch accepted, in bytes: an L1 transaction must stay under the
# usual 128 KiB transaction-size limit of L1 mempools.
MAX_BATCH_BYTES: constant(uint256) = 120000
# Batch layout (docs/stf.md §5.1).
BATCH_VERSION: constant(uint256) = 1
HEADER_SIZE: constant(uint256) = 11  # version u8 | timestamp u64 | n_orders u16
ORDER_ENTRY_SIZE: constant(uint256) = 104
# Order entries are written packed (docs/stf.md §5.2), each after a length
# byte; the longest is the escape byte and a whole 104-byte entry.
WRITTEN_ENTRY_MAX: constant(uint256) = ORDER_ENTRY_SIZE + 1
# The order table's count is a u16.
MAX_ORDERS: constant(uint256) = 65535
# Each step takes at least its 2-byte length prefix.
MAX_STEPS: constant(uint256) = (MAX_BATCH_BYTES - HEADER_SIZE - 4) // 2
# Step kinds that consume a queue item (docs/stf.md §5.3).
KIND_DEPOSIT: constant(uint256) = 1
KIND_FORCED: constant(uint256) = 10
# Oracle key set bound (IOneStepProver.StepContext).
MAX_ORACLE_KEYS: constant(uint256) = 16
BPS: constant(uint256) = 10000
MASK_64: constant(uint256) = 2**64 - 1
MASK_128: constant(uint256) = 2**128 - 1
MAX_OPEN_GAMES: constant(uint256) = 2**56 - 1


event BatchPosted:
    index: indexed(uint256)
    parent: indexed(uint256)
    proposer: indexed(address)
    pre_root: bytes32
    post_root: bytes32
    data_hash: bytes32
    data: IOneStepProver.BatchData
    deadline: uint256


event BatchFinalized:
    index: indexed(uint256)
    post_root: bytes32


event BatchRemoved:
    index: indexed(uint256)
    new_head: indexed(uint256)
    game: uint256


event BatchPruned:
    index: indexed(uint256)


event BondDeposited:
    owner: indexed(address)
    amount: uint256


event BondWithdrawn:
    owner: indexed(address)
    amount: uint256


event BondPaid:
    loser: indexed(address)
    winner: indexed(address)
    game: indexed(uint256)
    amount: uint256
    burnt: uint256


BRIDGE: public(immutable(IBridge))
PROVER: public(immutable(IOneStepProver))
OPERATOR: public(immutable(address))
K: public(immutable(uint256))
CHALLENGE_WINDOW: public(immutable(uint256))
CLOCK: public(immutable(uint256))
FORCED_INCLUSION_DELAY: public(immutable(uint256))
FALLBACK_PERIOD: public(immutable(uint256))
PROPOSER_BOND: public(immutable(uint256))
CHALLENGER_BOND: public(immutable(uint256))
BURN_BPS: public(immutable(uint256))
ORACLE_THRESHOLD: public(immutable(uint256))
# keccak256(abi_encode(StepContext)): the context every step of this
# deployment runs in (part of a one-step proof's claim, IOneStepProver).
CONTEXT_HASH: public(immutable(bytes32))

oracle_keys: DynArray[address, MAX_ORACLE_KEYS]
records: HashMap[uint256, Packed]
batchCount: public(uint256)
head: public(uint256)
# height => the canonical batch at that height (valid up to the head's height)
canonical: HashMap[uint256, uint256]
lastPostTime: public(uint256)
bonds: public(HashMap[address, uint256])
locked: public(HashMap[address, uint256])
burnt: public(uint256)


@deploy
def __init__(
    bridge: IBridge,
    prover: IOneStepProver,
    operator: address,
    genesis_root: bytes32,
    genesis_time: uint256,
    oracle_keys: DynArray[address, MAX_ORACLE_KEYS],
    oracle_threshold: uint256,
    k: uint256,
    challenge_window: uint256,
    clock: uint256,
    forced_inclusion_delay: uint256,
    fallback_period: uint256,
    proposer_bond: uint256,
    challenger_bond: uint256,
    burn_bps: uint256,
):
    """
    @param bridge The bridge (deposit and forced queues).
    @param prover The one-step prover.
    @param operator The designated proposer.
    @param genesis_root The genesis state root (docs/stf.md §9).
    @param genesis_time The genesis L2 time: the first batch's timestamp is not below it.
    @param oracle_keys The oracle key set.
    @param oracle_threshold Distinct oracle signers an update needs (1..len(keys)).
    @param k The dissection arity (2..16).
    @param challenge_window Seconds after posting during which a batch can be challenged.
    @param clock Seconds on each side's clock in a game.
    @param forced_inclusion_delay Seconds after which a queued item must be consumed.
    @param fallback_period Seconds without a batch after which anyone may propose.
    @param proposer_bond Wei locked per pending batch.
    @param challenger_bond Wei locked per game.
    @param burn_bps Share of a lost bond that is burnt, in basis points (< 10000).
    """
    assert bridge.address != empty(address) and prover.address != empty(address), "ZERO_ADDRESS"
    assert operator != empty(address), "ZERO_ADDRESS"
    assert staticcall bridge.ROLLUP() == self, "BRIDGE_MISMATCH"
    assert genesis_root != empty(bytes32), "ZERO_ROOT"
    assert k >= 2 and k <= DisputeGame.MAX_K, "BAD_CONFIG"
    assert oracle_threshold >= 1 and oracle_threshold <= len(oracle_keys), "BAD_CONFIG"
    for i: uint256 in range(1, MAX_ORACLE_KEYS):
        if i >= len(oracle_keys):
            break
        # strictly increasing: the STF looks signers up by binary search
        assert convert(oracle_keys[i - 1], uint256) < convert(oracle_keys[i], uint256), "BAD_CONFIG"
    assert challenge_window > 0 and clock > 0 and forced_inclusion_delay > 0, "BAD_CONFIG"
    assert proposer_bond > 0 and challenger_bond > 0 and burn_bps < BPS, "BAD_CONFIG"
    BRIDGE = bridge
    PROVER = prover
    OPERATOR = operator
    K = k
    CHALLENGE_WINDOW = challenge_window
    CLOCK = clock
    FORCED_INCLUSION_DELAY = forced_inclusion_delay
    FALLBACK_PERIOD = fallback_period
    PROPOSER_BOND = proposer_bond
    CHALLENGER_BOND = challenger_bond
    BURN_BPS = burn_bps
    ORACLE_THRESHOLD = oracle_threshold
    self.oracle_keys = oracle_keys
    CONTEXT_HASH = keccak256(abi_encode(IOneStepProver.StepContext(
        chain_id=chain.id,
        rollup=self,
        bridge=bridge.address,
        oracle_keys=oracle_keys,
        oracle_threshold=oracle_threshold,
    )))
    self._store(0, Batch(
        parent=0,
        height=0,
        post_root=genesis_root,
        data_hash=empty(bytes32),
        timestamp=genesis_time,
        proposer=empty(address),
        deadline=block.timestamp,
        status=BatchStatus.FINAL,
        n_steps=0,
        deposit_end=0,
        forced_end=0,
        open_games=0,
    ))
    self.batchCount = 1
    self.lastPostTime = block.timestamp
    log BatchFinalized(index=0, post_root=genesis_root)


# ---------------------------------------------------------------- bonds


@external
@payable
def depositBond():
    """
    @notice Add the ether sent to the caller's bond.
    """
    self._add_bond(msg.sender, msg.value)


@external
@nonreentrant
def withdrawBond(amount: uint256):
    """
    @notice Send `amount` wei of the caller's free bond back to the caller.
    @param amount At most `freeBond(msg.sender)`.
    """
    assert amount <= self._free(msg.sender), "BOND_LOCKED"
    # cannot underflow: amount <= free <= bonds
    self.bonds[msg.sender] = unsafe_sub(self.bonds[msg.sender], amount)
    log BondWithdrawn(owner=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)


# ---------------------------------------------------------------- batches


@external
@payable
def postBatch(batch: Bytes[MAX_BATCH_BYTES], post_root: bytes32, step_count: uint256) -> uint256:
    """
    @notice Propose the next batch: its bytes (docs/stf.md §5.1) as calldata
            and the claimed state root after it.
    @dev Locks PROPOSER_BOND of the caller's bond (ether sent is added to
         it first). The caller must be the transaction's sender, so that
         the bytes are in the transaction's own calldata for every node to
         read. Refused: bytes that do not parse exactly, no steps, a step
         count other than `step_count`, a timestamp before the parent's or
         after this block's, more deposit or forced steps than queued items,
         a queued item older than FORCED_INCLUSION_DELAY left unconsumed, a
         caller other than the operator before FALLBACK_PERIOD has passed
         without a batch, and a proposer without free bond.
    @param batch The batch bytes.
    @param post_root The state root after the batch's last step.
    @param step_count The batch's step count (must equal the parsed one).
    @return The new batch's index.
    """
    assert msg.sender == tx.origin, "NOT_ORIGIN"
    assert msg.sender == OPERATOR or block.timestamp >= self.lastPostTime + FALLBACK_PERIOD, "NOT_PROPOSER"
    self._add_bond(msg.sender, msg.value)
    assert self._free(msg.sender) >= PROPOSER_BOND, "NO_FREE_BOND"
    assert post_root != empty(bytes32), "ZERO_ROOT"

    # Parse: header, order table, steps; nothing may follow.
    n: uint256 = len(batch)
    assert n >= HEADER_SIZE + 4, "BAD_BATCH"
    assert convert(slice(batch, 0, 1), uint256) == BATCH_VERSION, "BAD_BATCH"
    timestamp: uint256 = convert(slice(batch, 1, 8), uint256)
    n_orders: uint256 = convert(slice(batch, 9, 2), uint256)
    at: uint256 = HEADER_SIZE
    partial: bytes32[Merkle.MAX_DEPTH] = empty(bytes32[Merkle.MAX_DEPTH])
    # Offsets below: `at` <= n <= MAX_BATCH_BYTES and sizes < 2**16, so no
    # addition of offsets can overflow (the unsafe_adds are safe).
    for i: uint256 in range(n_orders, bound=MAX_ORDERS):
        # length u8 | the entry as written; the leaf is the hash of the entry.
        assert n > at, "BAD_BATCH"
        size: uint256 = convert(slice(batch, at, 1), uint256)
        at = unsafe_add(at, 1)
        assert size <= WRITTEN_ENTRY_MAX and n >= unsafe_add(at, size), "BAD_BATCH"
        node: bytes32 = keccak256(slice(batch, at, size))
        at = unsafe_add(at, size)
        # Merkle._push, inlined (a call would copy `partial` twice).
        c: uint256 = i
        for h: uint256 in range(Merkle.MAX_DEPTH):
            if c & 1 == 0:
                partial[h] = node
                break
            node = keccak256(concat(partial[h], node))
            c = c >> 1
    assert n >= unsafe_add(at, 4), "BAD_BATCH"
    orders_root: bytes32 = Merkle._finish(partial, n_orders)
    n_steps: uint256 = convert(slice(batch, at, 4), uint256)
    at = unsafe_add(at, 4)
    assert n_steps > 0, "NO_STEPS"
    # each step needs its 2-byte length prefix
    assert n_steps <= MAX_STEPS, "BAD_BATCH"
    assert n_steps == step_count, "STEP_COUNT"
    partial = empty(bytes32[Merkle.MAX_DEPTH])
    n_deposits: uint256 = 0
    n_forced: uint256 = 0
    for i: uint256 in range(n_steps, bound=MAX_STEPS):
        # size u16 | kind u8, read as one word where 32 bytes remain.
        size: uint256 = 0
        kind: uint256 = 0
        if unsafe_add(at, 32) <= n:
            word: uint256 = extract32(batch, at, output_type=uint256)
            size = word >> 240
            kind = (word >> 232) & 255
        else:
            assert n >= unsafe_add(at, 2), "BAD_BATCH"
            size = convert(slice(batch, at, 2), uint256)
            if size > 0 and n > unsafe_add(at, 2):
                kind = convert(slice(batch, unsafe_add(at, 2), 1), uint256)
        at = unsafe_add(at, 2)
        assert n >= unsafe_add(at, size), "BAD_BATCH"
        if size > 0:
            # the counts stay below n_steps
            if kind == KIND_DEPOSIT:
                n_deposits = unsafe_add(n_deposits, 1)
            elif kind == KIND_FORCED:
                n_forced = unsafe_add(n_forced, 1)
        # Merkle._push, inlined.
        node: bytes32 = keccak256(slice(batch, at, size))
        c: uint256 = i
        for h: uint256 in range(Merkle.MAX_DEPTH):
            if c & 1 == 0:
                partial[h] = node
                break
            node = keccak256(concat(partial[h], node))
            c = c >> 1
        at = unsafe_add(at, size)
    assert at == n, "BAD_BATCH"
    steps_root: bytes32 = Merkle._finish(partial, n_steps)

    # The chain: time, queues, forced inclusion.
    parent: uint256 = self.head
    p: Batch = self._load(parent)
    assert timestamp >= p.timestamp, "TIMESTAMP_BEFORE_PARENT"
    assert timestamp <= block.timestamp, "TIMESTAMP_IN_FUTURE"
    deposit_end: uint256 = p.deposit_end + n_deposits
    forced_end: uint256 = p.forced_end + n_forced
    deposit_count: uint256 = staticcall BRIDGE.depositCount()
    forced_count: uint256 = staticcall BRIDGE.forcedCount()
    assert deposit_end <= deposit_count, "DEPOSIT_QUEUE_SHORT"
    assert forced_end <= forced_count, "FORCED_QUEUE_SHORT"
    if deposit_end < deposit_count:
        assert block.timestamp < (staticcall BRIDGE.depositTime(deposit_end)) + FORCED_INCLUSION_DELAY, "DEPOSIT_OVERDUE"
    if forced_end < forced_count:
        assert block.timestamp < (staticcall BRIDGE.forcedTime(forced_end)) + FORCED_INCLUSION_DELAY, "FORCED_OVERDUE"

    data: IOneStepProver.BatchData = IOneStepProver.BatchData(
        orders_root=orders_root,
        steps_root=steps_root,
        timestamp=timestamp,
        n_orders=n_orders,
        n_steps=n_steps,
        deposit_start=p.deposit_end,
        deposit_end=deposit_end,
        forced_start=p.forced_end,
        forced_end=forced_end,
    )
    data_hash: bytes32 = keccak256(abi_encode(data))
    index: uint256 = self.batchCount
    height: uint256 = p.height + 1
    deadline: uint256 = block.timestamp + CHALLENGE_WINDOW
    self._store(index, Batch(
        parent=parent,
        height=height,
        post_root=post_root,
        data_hash=data_hash,
        timestamp=timestamp,
        proposer=msg.sender,
        deadline=deadline,
        status=BatchStatus.PENDING,
        n_steps=n_steps,
        deposit_end=deposit_end,
        forced_end=forced_end,
        open_games=0,
    ))
    self.batchCount = index + 1
    self.head = index
    self.canonical[height] = index
    self.lastPostTime = block.timestamp
    self.locked[msg.sender] += PROPOSER_BOND
    log BatchPosted(
        index=index,
        parent=parent,
        proposer=msg.sender,
        pre_root=p.post_root,
        post_root=post_root,
        data_hash=data_hash,
        data=data,
        deadline=deadline,
    )
    return index


@external
def finalize(index: uint256):
    """
    @notice Make a batch final: its window has passed, its parent is final
            and no game against it is open. Releases its proposer's bond.
    @param index A pending batch on the canonical chain.
    """
    b: Batch = self._live(index)
    assert block.timestamp >= b.deadline, "WINDOW_OPEN"
    assert self._load(b.parent).status == BatchStatus.FINAL, "PARENT_NOT_FINAL"
    assert b.open_games == 0, "GAME_OPEN"
    self._set_owner_word(index, b.proposer, BatchStatus.FINAL, b.n_steps, b.open_games)
    # cannot underflow: a pending batch holds PROPOSER_BOND locked
    self.locked[b.proposer] = unsafe_sub(self.locked[b.proposer], PROPOSER_BOND)
    log BatchFinalized(index=index, post_root=b.post_root)


@external
def prune(index: uint256):
    """
    @notice Record a batch removed with an earlier one (off the canonical
            chain) as REMOVED and release its proposer's bond.
    @param index A batch stored as pending but no longer canonical.
    """
    assert index < self.batchCount, "NO_BATCH"
    b: Batch = self._load(index)
    assert b.status == BatchStatus.PENDING and not self._is_canonical(index), "NOT_PRUNABLE"
    self._set_owner_word(index, b.proposer, BatchStatus.REMOVED, b.n_steps, b.open_games)
    # cannot underflow: a pending batch holds PROPOSER_BOND locked
    self.locked[b.proposer] = unsafe_sub(self.locked[b.proposer], PROPOSER_BOND)
    log BatchPruned(index=index)


# ---------------------------------------------------------------- games


@external
@payable
def createGame(batch_index: uint256) -> uint256:
    """
    @notice Challenge a pending batch's post-state root. Locks CHALLENGER_BOND
            of the caller's bond (ether sent is added to it first).
    @dev Open only during the batch's challenge window. Games against one
         batch run concurrently, each between the proposer and one challenger.
    @param batch_index The batch.
    @return The game id.
    """
    b: Batch = self._live(batch_index)
    assert block.timestamp < b.deadline, "WINDOW_CLOSED"
    assert msg.sender != b.proposer, "SELF_CHALLENGE"
    self._add_bond(msg.sender, msg.value)
    assert self._free(msg.sender) >= CHALLENGER_BOND, "NO_FREE_BOND"
    self.locked[msg.sender] += CHALLENGER_BOND
    assert b.open_games < MAX_OPEN_GAMES, "TOO_MANY_GAMES"
    self._set_owner_word(batch_index, b.proposer, b.status, b.n_steps, b.open_games + 1)
    return DisputeGame._create(
        batch_index,
        b.proposer,
        msg.sender,
        b.n_steps,
        self.records[b.parent].post_root,
        b.post_root,
        CLOCK,
    )


@external
def postRoots(game: uint256, roots: DynArray[bytes32, DisputeGame.MAX_K - 1]):
    """
    @notice Asserter's move: the roots after the inner split points of [lo, hi].
    @param game The game.
    @param roots min(K, hi - lo) - 1 roots, in order.
    """
    self._game_live(game)
    DisputeGame._post_roots(game, msg.sender, roots, K)


@external
def choosePart(game: uint256, roots: DynArray[bytes32, DisputeGame.MAX_K - 1], part: uint256):
    """
    @notice Challenger's move: the first part whose end root it disputes.
    @param game The game.
    @param roots The roots the asserter posted this round (from `RootsPosted`).
    @param part The part, 0-based.
    """
    self._game_live(game)
    DisputeGame._choose(game, msg.sender, roots, part, K)


@external
def proveStep(game: uint256):
    """
    @notice Settle a game at one step with the prover's recorded result
            (anyone may send it; it is due on the challenger's clock). The
            step must have been proven first (`OneStepProver.prove`, any
            sender): the root after step `lo` from `lo_root`, recorded under
            the claim of this batch and deployment. A result other than the
            asserter's `hi_root` makes the asserter lose, an equal one the
            challenger.
    @param game The game, at one step (hi = lo + 1).
    """
    b: Batch = self._game_live(game)
    g: DisputeGame.Game = DisputeGame._one_step(game)
    claim: bytes32 = keccak256(abi_encode(g.lo_root, g.lo, b.data_hash, CONTEXT_HASH))
    proven: bytes32 = staticcall PROVER.result(claim)
    assert proven != empty(bytes32), "STEP_NOT_PROVEN"
    self._settle(game, DisputeGame._prove_result(game, proven))


@external
@view
def stepClaim(game: uint256) -> bytes32:
    """
    @notice The claim under which `proveStep` looks up a game's one-step
            result (IOneStepProver).
    @param game The game.
    @return keccak256(abi_encode(lo_root, lo, data_hash, CONTEXT_HASH)).
    """
    g: DisputeGame.Game = DisputeGame.games[game]
    b: Batch = self._load(g.batch)
    return keccak256(abi_encode(g.lo_root, g.lo, b.data_hash, CONTEXT_HASH))


@external
def timeout(game: uint256):
    """
    @notice End a game whose running clock is spent: the side to move loses.
    @param game The game.
    """
    self._game_live(game)
    self._settle(game, DisputeGame._timeout(game))


@external
def cancelGame(game: uint256):
    """
    @notice Close a game whose batch has been removed; the challenger's bond is released.
    @param game The game.
    """
    g: DisputeGame.Game = DisputeGame._active(game)
    assert self._status(g.batch) == BatchStatus.REMOVED, "BATCH_LIVE"
    DisputeGame._cancel(game)
    # cannot underflow: an active game holds CHALLENGER_BOND locked
    self.locked[g.challenger] = unsafe_sub(self.locked[g.challenger], CHALLENGER_BOND)


# ---------------------------------------------------------------- views


@external
@view
def batch(index: uint256) -> BatchInfo:
    """
    @notice Everything the chain keeps about batch `index`.
    @param index A batch below `batchCount`.
    @return Its record, with the effective status (a pending batch off the canonical chain reads REMOVED).
    """
    assert index < self.batchCount, "NO_BATCH"
    b: Batch = self._load(index)
    pre_root: bytes32 = empty(bytes32)
    posted_at: uint256 = b.deadline
    if index != 0:
        pre_root = self.records[b.parent].post_root
        posted_at = b.deadline - CHALLENGE_WINDOW
    return BatchInfo(
        parent=b.parent,
        height=b.height,
        pre_root=pre_root,
        post_root=b.post_root,
        data_hash=b.data_hash,
        timestamp=b.timestamp,
        proposer=b.proposer,
        posted_at=posted_at,
        deadline=b.deadline,
        status=self._status(index),
        n_steps=b.n_steps,
        deposit_end=b.deposit_end,
        forced_end=b.forced_end,
        open_games=b.open_games,
    )


@external
@view
def batchStatus(index: uint256) -> BatchStatus:
    """
    @notice The effective status of batch `index`.
    @param index A batch below `batchCount`.
    @return PENDING, FINAL or REMOVED.
    """
    assert index < self.batchCount, "NO_BATCH"
    return self._status(index)


@external
@view
def finalizedRoot(batch_index: uint256) -> bytes32:
    """
    @notice The post-state root of a final batch (what withdrawals are proven against).
    @param batch_index Any index.
    @return The root, or zero if the batch does not exist or is not final.
    """
    if batch_index >= self.batchCount:
        return empty(bytes32)
    if self._load(batch_index).status != BatchStatus.FINAL:
        return empty(bytes32)
    return self.records[batch_index].post_root


@external
@view
def game(game: uint256) -> DisputeGame.Game:
    """
    @notice A game's state.
    @param game A game below `gameCount`.
    @return The game.
    """
    assert game < DisputeGame.gameCount, "NO_GAME"
    return DisputeGame.games[game]


@external
@view
def splitPoints(lo: uint256, hi: uint256) -> DynArray[uint256, DisputeGame.MAX_K + 1]:
    """
    @notice The split points of [lo, hi] with this deployment's K, both ends included.
    @param lo The agreed step count.
    @param hi The disputed step count (> lo).
    @return The points.
    """
    assert hi > lo, "EMPTY_RANGE"
    return DisputeGame._split_points(lo, hi, K)


@external
@view
def freeBond(owner: address) -> uint256:
    """
    @notice The part of `owner`'s bond not locked behind batches or games.
    @param owner Any address.
    @return bonds - locked.
    """
    return self._free(owner)


@external
@view
def depositConsumed() -> uint256:
    """
    @notice Deposit-queue items consumed by the canonical chain (the next batch's deposit_start).
    @return The head's deposit_end.
    """
    return self.records[self.head].queues >> 128


@external
@view
def forcedConsumed() -> uint256:
    """
    @notice Forced-queue items consumed by the canonical chain (the next batch's forced_start).
    @return The head's forced_end.
    """
    return self.records[self.head].queues & MASK_128


@external
@view
def oracleKeys() -> DynArray[address, MAX_ORACLE_KEYS]:
    """
    @notice The oracle key set (the STF's chain config, docs/stf.md §3).
    @return The keys.
    """
    return self.oracle_keys


# ---------------------------------------------------------------- internals


@internal
def _add_bond(owner: address, amount: uint256):
    """
    @notice Credit `amount` wei (received with the call) to `owner`'s bond.
    @param owner The bond's owner.
    @param amount The ether received.
    """
    if amount > 0:
        self.bonds[owner] += amount
        log BondDeposited(owner=owner, amount=amount)


@internal
def _settle(gid: uint256, asserter_won: bool):
    """
    @notice Apply a game's outcome: move the loser's bond to the winner less
            the burnt share; if the asserter lost, remove its batch and
            return the head to the batch's parent.
    @param gid The resolved game.
    @param asserter_won Which side won.
    """
    g: DisputeGame.Game = DisputeGame.games[gid]
    b: Batch = self._load(g.batch)
    # cannot underflow: an active game counts in open_games
    open_games: uint256 = unsafe_sub(b.open_games, 1)
    self._set_owner_word(g.batch, b.proposer, b.status, b.n_steps, open_games)
    # cannot underflow: an active game holds CHALLENGER_BOND locked
    self.locked[g.challenger] = unsafe_sub(self.locked[g.challenger], CHALLENGER_BOND)
    if asserter_won:
        self._pay(g.challenger, g.asserter, CHALLENGER_BOND, gid)
        return
    # cannot underflow: a pending batch holds PROPOSER_BOND locked
    self.locked[g.asserter] = unsafe_sub(self.locked[g.asserter], PROPOSER_BOND)
    self._pay(g.asserter, g.challenger, PROPOSER_BOND, gid)
    self._set_owner_word(g.batch, b.proposer, BatchStatus.REMOVED, b.n_steps, open_games)
    self.head = b.parent
    log BatchRemoved(index=g.batch, new_head=b.parent, game=gid)


@internal
def _pay(loser: address, winner: address, amount: uint256, gid: uint256):
    """
    @notice Move `amount` of `loser`'s bond to `winner`, burning BURN_BPS of it.
    @param loser Pays (its bond holds at least `amount`: it was locked).
    @param winner Receives amount - burn.
    @param amount The lost bond.
    @param gid The game that decided it.
    """
    burn: uint256 = amount * BURN_BPS // BPS
    # cannot underflow: the amount was locked in the loser's bond
    self.bonds[loser] = unsafe_sub(self.bonds[loser], amount)
    # cannot underflow: burn <= amount since BURN_BPS < BPS
    self.bonds[winner] += unsafe_sub(amount, burn)
    self.burnt += burn
    log BondPaid(loser=loser, winner=winner, game=gid, amount=amount, burnt=burn)


@internal
@view
def _free(owner: address) -> uint256:
    """
    @notice `owner`'s bond not locked.
    @param owner Any address.
    @return bonds - locked.
    """
    # cannot underflow: locked never exceeds bonds (bonds are only taken from locked amounts)
    return unsafe_sub(self.bonds[owner], self.locked[owner])


@internal
@view
def _is_canonical(index: uint256) -> bool:
    """
    @notice Whether batch `index` is on the chain that ends at the head.
    @param index A batch below `batchCount`.
    @return True for the head and its ancestors.
    """
    h: uint256 = (self.records[index].chain >> 128) & MASK_64
    return h <= (self.records[self.head].chain >> 128) & MASK_64 and self.canonical[h] == index


@internal
@view
def _status(index: uint256) -> BatchStatus:
    """
    @notice The effective status: stored, except that a pending batch off the canonical chain is REMOVED.
    @param index A batch below `batchCount`.
    @return The status.
    """
    s: BatchStatus = convert((self.records[index].owner >> 160) & 255, BatchStatus)
    if s == BatchStatus.PENDING and not self._is_canonical(index):
        return BatchStatus.REMOVED
    return s


@internal
@view
def _live(index: uint256) -> Batch:
    """
    @notice Batch `index`, which must be pending and canonical.
    @param index The batch.
    @return Its record.
    """
    assert index < self.batchCount, "NO_BATCH"
    assert self._status(index) == BatchStatus.PENDING, "NOT_PENDING"
    return self._load(index)


@internal
@view
def _game_live(gid: uint256) -> Batch:
    """
    @notice The batch of game `gid`, which must be pending and canonical
            (otherwise the game can only be cancelled).
    @param gid The game.
    @return The batch's record.
    """
    g: DisputeGame.Game = DisputeGame._active(gid)
    assert self._status(g.batch) == BatchStatus.PENDING, "BATCH_REMOVED"
    return self._load(g.batch)


@internal
@view
def _load(index: uint256) -> Batch:
    """
    @notice Unpack batch record `index`.
    @param index The batch.
    @return The record.
    """
    r: Packed = self.records[index]
    return Batch(
        parent=r.chain >> 192,
        height=(r.chain >> 128) & MASK_64,
        post_root=r.post_root,
        data_hash=r.data_hash,
        timestamp=(r.chain >> 64) & MASK_64,
        proposer=convert(convert(r.owner & (2**160 - 1), uint160), address),
        deadline=r.chain & MASK_64,
        status=convert((r.owner >> 160) & 255, BatchStatus),
        n_steps=(r.owner >> 168) & (2**32 - 1),
        deposit_end=r.queues >> 128,
        forced_end=r.queues & MASK_128,
        open_games=r.owner >> 200,
    )


@internal
def _store(index: uint256, b: Batch):
    """
    @notice Pack and write batch record `index`.
    @dev Every field is within its width: indices, heights, times and queue
         positions are far below their bounds; n_steps < 2**32 (a u32 in
         the batch); open_games <= MAX_OPEN_GAMES (checked when a game opens).
    @param index The batch.
    @param b The record.
    """
    assert b.parent <= MASK_64 and b.height <= MASK_64 and b.timestamp <= MASK_64, "OUT_OF_RANGE"
    assert b.deadline <= MASK_64 and b.deposit_end <= MASK_128 and b.forced_end <= MASK_128, "OUT_OF_RANGE"
    self.records[index] = Packed(
        post_root=b.post_root,
        data_hash=b.data_hash,
        chain=(b.parent << 192) | (b.height << 128) | (b.timestamp << 64) | b.deadline,
        owner=self._owner_word(b.proposer, b.status, b.n_steps, b.open_games),
        queues=(b.deposit_end << 128) | b.forced_end,
    )


@internal
def _set_owner_word(
    index: uint256, proposer: address, status: BatchStatus, n_steps: uint256, open_games: uint256
):
    """
    @notice Write the proposer, status, step count and open-game count of batch `index`.
    @param index The batch.
    @param proposer Its proposer.
    @param status Its stored status.
    @param n_steps Its step count (< 2**32).
    @param open_games Its active games (<= MAX_OPEN_GAMES).
    """
    self.records[index].owner = self._owner_word(proposer, status, n_steps, open_games)


@internal
@pure
def _owner_word(proposer: address, status: BatchStatus, n_steps: uint256, open_games: uint256) -> uint256:
    """
    @notice Pack the owner word: open_games u56 | n_steps u32 | status u8 | proposer.
    @param proposer The proposer.
    @param status The stored status.
    @param n_steps The step count (< 2**32).
    @param open_games The active games (<= MAX_OPEN_GAMES).
    @return The word.
    """
    return (
        (open_games << 200)
        | (n_steps << 168)
        | (convert(status, uint256) << 160)
        | convert(convert(proposer, uint160), uint256)
    )
