# pragma version ~=0.4.3
# pragma evm-version cancun
"""
@title OneStepProver
@license MIT
@notice Executes one step of a batch on L1 (docs/stf.md §7) against Merkle
        witnesses and records the state root after it, for the dispute game
        (IOneStepProver, docs/l1.md §5).
@dev One call proves one step:
     1. the step bytes are step `step_index` of the batch (a branch against
        `batch.steps_root`), and each order entry it references is in the
        batch's order table (branches against `batch.orders_root`);
     2. the Vyper twin of the STF (contracts/stf/) executes the step on the
        witness leaves' claimed pre-values, with the queue item read from
        the bridge for a deposit or forced step;
     3. the claims are checked while the step's writes are applied: the
        leaves, sorted by key, each carry one MPT proof. A leaf the step
        only reads is proven against `pre_root` (`MPT._get`); a leaf it
        writes is proven against the root left by the writes before it
        (`MPT._update_node`, which also reports the value it replaces: the
        key's pre-value, since earlier writes touched other keys). The last
        write leaves the post-state root; a step that writes nothing leaves
        `pre_root`. No proof carries its first node, the root node of the
        trie it is against: the pre-state's is sent once, and each write
        returns the next one.
     A witness that does not prove what it claims reverts. Whatever the
     witness, a call that does not revert records the one root the STF
     gives: the twin is a function of the step, its context and the leaf
     values, and every value it was given is proven.

     Steps longer than MAX_PROVEN_STEP bytes are refused by every kind
     (docs/stf.md §5.3, §7.5: at most 16 oracle signatures) and change
     nothing: `prove_long_step` records them after checking their branch.
"""

from . import IOneStepProver
from . import IBridge
from . import MPT
from . import Merkle
from .stf import StfTypes as T
from .stf import StfCodec as C
from .stf import StfSig as S

implements: IOneStepProver

# The longest step that can change the state: an oracle step with 255
# entries and 16 signatures (11 + 13 * 255 + 65 * 16).
MAX_PROVEN_STEP: constant(uint256) = 4366
# Bound on all of a witness's MPT proofs together. The proofs of one key are
# at most a few kB in any trie a keccak-keyed state can hold (6.6 nodes,
# 2.6 kB at 10^6 keys); deepening a path by one full branch level costs an
# adversary 16 times more hashing per level (docs/l1.md §5).
MAX_PROOFS: constant(uint256) = 65536
# Window of the calldata reads (see `_calldata`).
CHUNK: constant(uint256) = 4096

# The four step contracts share one ABI (docs/l1-stf-twin.md): the fixed-length
# kinds' contracts declare a shorter step and return leaves of at most 620
# bytes, which decode as these.
interface StepContract:
    def execute(
        step: Bytes[MAX_PROVEN_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
    ) -> (uint8, DynArray[T.Leaf, T.MAX_WRITES]): view


# An order-table entry the step references, with its branch.
struct OrderProof:
    ref: uint256
    entry: Bytes[T.WRITTEN_ENTRY_MAX]
    branch: DynArray[bytes32, Merkle.MAX_DEPTH]


# A leaf of the witness. `written`: the step writes it; its presence before
# the step is given, and its value before the step (when present) is the
# `value_len` bytes at `value_at` of the proofs region of the calldata (the
# root node and the proofs, docs/l1.md §5): the leaf's own proof holds it,
# and the write checks it. Its proof is against the root the writes before
# it (in key order) left. Otherwise the step only reads it: `present`,
# `value_at` and `value_len` are zero and the proof, against the pre-root,
# gives its presence and value.
struct WitnessLeaf:
    key: bytes32
    written: bool
    present: bool
    value_at: uint256
    value_len: uint256


event StepProven:
    claim: indexed(bytes32)
    pre_root: bytes32
    step_index: uint256
    data_hash: bytes32
    post_root: bytes32


ACCOUNTS: public(immutable(address))  # deposit, withdraw, cancel, forced
TRADE: public(immutable(address))  # trade
PRICES: public(immutable(address))  # oracle, funding, settle
LIQUIDATION: public(immutable(address))  # liquidate, deleverage

# claim => the root after the step (see IOneStepProver)
result: public(HashMap[bytes32, bytes32])


@deploy
def __init__(accounts: address, trade: address, prices: address, liquidation: address):
    """
    @notice Bind the four step contracts of the STF twin.
    @param accounts StfAccounts.
    @param trade StfTrade.
    @param prices StfPrices.
    @param liquidation StfLiquidation.
    """
    ACCOUNTS = accounts
    TRADE = trade
    PRICES = prices
    LIQUIDATION = liquidation


@external
def prove(
    pre_root: bytes32,
    step_index: uint256,
    batch: IOneStepProver.BatchData,
    ctx: IOneStepProver.StepContext,
    step: Bytes[MAX_PROVEN_STEP],
    step_branch: DynArray[bytes32, Merkle.MAX_DEPTH],
    orders: DynArray[OrderProof, 2],
    leaves: DynArray[WitnessLeaf, T.MAX_LEAVES],
    proof_sizes: DynArray[uint256, T.MAX_LEAVES + 1],
) -> bytes32:
    """
    @notice Execute step `step_index` of a batch from `pre_root` and record the root after it.
    @param pre_root The state root before the step.
    @param step_index The step's 0-based position in the batch.
    @param batch The batch's data fields (what its data_hash commits to).
    @param ctx The deployment's context.
    @param step The step's bytes (at most MAX_PROVEN_STEP; longer ones: `prove_long_step`).
    @param step_branch The step's Merkle branch into `batch.steps_root`.
    @param orders The order entries the step references that are in the table, with branches.
    @param leaves Every leaf the step reads or writes, strictly increasing by key
           (see WitnessLeaf).
    @param proof_sizes The length of the pre-state's root node, then of each
           leaf's MPT proof without its first node (the root node of the
           trie it is against, which the prover holds: the pre-state's, or
           the one the write before it built). The root node and the proofs
           follow the ABI-encoded arguments in the calldata, in this order,
           and end the calldata (so that they are read where they are
           instead of being copied whole into memory; docs/l1.md §5). The
           root node is absent (length 0) when no leaf is proven or the
           pre-state is the empty trie.
    @return The state root after the step.
    """
    assert Merkle._verify(
        keccak256(step), step_index, batch.n_steps, step_branch, batch.steps_root
    ), "BAD_STEP_BRANCH"
    for o: OrderProof in orders:
        assert Merkle._verify(
            keccak256(o.entry), o.ref, batch.n_orders, o.branch, batch.orders_root
        ), "BAD_ORDER_BRANCH"
    n: uint256 = len(leaves)
    assert len(proof_sizes) == n + 1, "BAD_WITNESS"
    total: uint256 = 0
    for size: uint256 in proof_sizes:
        assert size <= MPT.MAX_PROOF, "BAD_WITNESS"
        total += size
    assert total <= MAX_PROOFS and total <= len(msg.data), "BAD_WITNESS"
    proofs_start: uint256 = len(msg.data) - total

    # The pre-state's root node, sent once: every proof starts with the root
    # node of the trie it is against, and none repeats it.
    root_node: Bytes[MPT.MAX_NODE] = b""
    if n == 0 or pre_root == MPT.EMPTY_ROOT:
        assert proof_sizes[0] == 0, "BAD_WITNESS"
    else:
        assert proof_sizes[0] <= MPT.MAX_NODE, "BAD_WITNESS"
        root_node = self._short(proofs_start, proof_sizes[0])
        assert keccak256(root_node) == pre_root, "BAD_WITNESS"

    # The pre-values: a leaf the step only reads is proven now against the
    # pre-root, and its value is the one the proof holds; a leaf it writes
    # points at its claimed value in the proofs, proven below by the write's
    # own proof.
    pre: DynArray[T.Leaf, T.MAX_LEAVES] = []
    offset: uint256 = proofs_start + proof_sizes[0]
    for i: uint256 in range(n, bound=T.MAX_LEAVES):
        if i > 0:
            assert convert(leaves[i - 1].key, uint256) < convert(leaves[i].key, uint256), "UNSORTED_LEAVES"
        if leaves[i].written:
            claimed: Bytes[MPT.MAX_VALUE] = b""
            if leaves[i].present:
                assert leaves[i].value_len != 0 and leaves[i].value_len <= MPT.MAX_VALUE, "BAD_WITNESS"
                assert leaves[i].value_at <= total and leaves[i].value_len <= total - leaves[i].value_at, "BAD_WITNESS"
                claimed = convert(
                    self._short(proofs_start + leaves[i].value_at, leaves[i].value_len), Bytes[MPT.MAX_VALUE]
                )
            else:
                assert leaves[i].value_at == 0 and leaves[i].value_len == 0, "BAD_WITNESS"
            pre.append(T.Leaf(key=leaves[i].key, present=leaves[i].present, value=claimed))
        else:
            assert not leaves[i].present and leaves[i].value_at == 0 and leaves[i].value_len == 0, "BAD_WITNESS"
            present: bool = False
            value: Bytes[MPT.MAX_VALUE] = b""
            present, value = MPT._get(
                pre_root, leaves[i].key, self._calldata(root_node, offset, proof_sizes[i + 1])
            )
            pre.append(T.Leaf(key=leaves[i].key, present=present, value=value))
        offset += proof_sizes[i + 1]

    # Execute (steps no kind can have change nothing: docs/l1-stf-twin.md).
    writes: DynArray[T.Leaf, T.MAX_WRITES] = []
    kind: uint256 = 0
    if len(step) > 0:
        kind = convert(slice(step, 0, 1), uint256)
    target: address = self._step_contract(kind, len(step))
    if target != empty(address):
        queue: T.QueueItem = empty(T.QueueItem)
        if kind == T.STEP_DEPOSIT or kind == T.STEP_FORCED:
            # the item at the global leaf's queue pointer
            found: bool = False
            for leaf: T.Leaf in pre:
                if leaf.key == T.GLOBAL_KEY and leaf.present:
                    queue = self._queue_item(kind, batch, ctx.bridge, C._decode_global(leaf.value))
                    found = True
            assert found, "BAD_WITNESS"
        entries: DynArray[T.OrderEntry, 2] = []
        for o: OrderProof in orders:
            entries.append(T.OrderEntry(ref=o.ref, entry=o.entry))
        context: T.Context = T.Context(
            time=convert(batch.timestamp, uint64),
            domain=S._domain_separator(ctx.chain_id, ctx.rollup),
            oracle_keys=ctx.oracle_keys,
            oracle_threshold=ctx.oracle_threshold,
            n_orders=batch.n_orders,
            orders=entries,
            queue=queue,
        )
        code: uint8 = 0
        code, writes = staticcall StepContract(target).execute(step, context, pre)

    # The writes, in key order, each proven against the root the writes
    # before it left (which holds the key's pre-value: they wrote other keys),
    # whose root node is the one the write before it built.
    root: bytes32 = pre_root
    offset = proofs_start + proof_sizes[0]
    done: uint256 = 0
    for i: uint256 in range(n, bound=T.MAX_LEAVES):
        if leaves[i].written:
            value: Bytes[MPT.MAX_VALUE] = b""
            found: bool = False
            for w: T.Leaf in writes:
                if w.key == leaves[i].key:
                    value = convert(w.value, Bytes[MPT.MAX_VALUE])
                    found = True
            assert found, "WRONG_WRITES"
            present: bool = False
            old_hash: bytes32 = empty(bytes32)
            root_node, present, old_hash = MPT._update_node(
                root, leaves[i].key, value, self._calldata(root_node, offset, proof_sizes[i + 1])
            )
            root = keccak256(root_node)
            assert present == leaves[i].present, "WRONG_LEAF"
            if present:
                assert old_hash == keccak256(pre[i].value), "WRONG_LEAF"
            done += 1
        offset += proof_sizes[i + 1]
    assert done == len(writes), "WRONG_WRITES"
    self._record(pre_root, step_index, batch, ctx, root)
    return root


@external
def prove_long_step(
    pre_root: bytes32,
    step_index: uint256,
    batch: IOneStepProver.BatchData,
    ctx: IOneStepProver.StepContext,
    step: Bytes[T.MAX_BATCH_STEP],
    step_branch: DynArray[bytes32, Merkle.MAX_DEPTH],
) -> bytes32:
    """
    @notice Record a step longer than MAX_PROVEN_STEP bytes: no kind accepts
            one, so it changes nothing (docs/stf.md §5.3, §7.5).
    @param pre_root The state root before the step.
    @param step_index The step's 0-based position in the batch.
    @param batch The batch's data fields.
    @param ctx The deployment's context.
    @param step The step's bytes.
    @param step_branch The step's Merkle branch into `batch.steps_root`.
    @return `pre_root`.
    """
    assert len(step) > MAX_PROVEN_STEP, "SHORT_STEP"
    assert Merkle._verify(
        keccak256(step), step_index, batch.n_steps, step_branch, batch.steps_root
    ), "BAD_STEP_BRANCH"
    self._record(pre_root, step_index, batch, ctx, pre_root)
    return pre_root


@external
@pure
def claim_of(
    pre_root: bytes32, step_index: uint256, data_hash: bytes32, ctx_hash: bytes32
) -> bytes32:
    """
    @notice The claim a result is recorded under (see IOneStepProver).
    @param pre_root The state root before the step.
    @param step_index The step.
    @param data_hash keccak256(abi_encode(BatchData)).
    @param ctx_hash keccak256(abi_encode(StepContext)).
    @return The claim.
    """
    return keccak256(abi_encode(pre_root, step_index, data_hash, ctx_hash))


@internal
def _record(
    pre_root: bytes32,
    step_index: uint256,
    batch: IOneStepProver.BatchData,
    ctx: IOneStepProver.StepContext,
    post_root: bytes32,
):
    """
    @notice Store the root after a step under its claim.
    @param pre_root The state root before the step.
    @param step_index The step.
    @param batch The batch's data fields.
    @param ctx The deployment's context.
    @param post_root The root the step leaves.
    """
    data_hash: bytes32 = keccak256(abi_encode(batch))
    claim: bytes32 = keccak256(
        abi_encode(pre_root, step_index, data_hash, keccak256(abi_encode(ctx)))
    )
    self.result[claim] = post_root
    log StepProven(
        claim=claim, pre_root=pre_root, step_index=step_index, data_hash=data_hash,
        post_root=post_root,
    )


@internal
@view
def _short(start: uint256, n: uint256) -> Bytes[MPT.MAX_NODE]:
    """
    @notice Bytes [start, start + n) of the calldata, n <= MPT.MAX_NODE (a
            root node or a leaf's value).
    @param start The first byte.
    @param n The length (start + n <= len(msg.data)).
    @return The bytes.
    """
    assert len(msg.data) >= CHUNK, "SHORT_CALLDATA"
    lo: uint256 = min(start, len(msg.data) - CHUNK)
    window: Bytes[CHUNK] = slice(msg.data, lo, CHUNK)
    return convert(slice(window, start - lo, n), Bytes[MPT.MAX_NODE])


@internal
@view
def _calldata(prefix: Bytes[MPT.MAX_NODE], start: uint256, n: uint256) -> Bytes[MPT.MAX_PROOF]:
    """
    @notice `prefix` followed by bytes [start, start + n) of the calldata,
            read in CHUNK-byte windows.
    @dev `slice(msg.data, ...)` takes a constant length, so each window is
         CHUNK bytes, moved back to end at the calldata's end when it would
         pass it (the calldata is at least CHUNK bytes long: the client pads
         a shorter call between the arguments and the proofs).
    @param prefix Bytes to put first (a root node, or nothing).
    @param start The first byte.
    @param n The length (start + n <= len(msg.data)).
    @return The bytes, at most MPT.MAX_PROOF of them.
    """
    assert len(msg.data) >= CHUNK, "SHORT_CALLDATA"
    assert len(prefix) + n <= MPT.MAX_PROOF, "BAD_WITNESS"
    lo: uint256 = min(start, len(msg.data) - CHUNK)
    window: Bytes[CHUNK] = slice(msg.data, lo, CHUNK)
    if n <= CHUNK - (start - lo):
        return concat(prefix, slice(window, start - lo, n))
    # A longer proof: append windows.
    out: Bytes[MPT.MAX_PROOF] = concat(prefix, slice(window, start - lo, CHUNK - (start - lo)))
    pos: uint256 = lo + CHUNK
    end: uint256 = start + n
    for _: uint256 in range(MPT.MAX_PROOF // CHUNK + 1):
        if pos >= end:
            break
        m: uint256 = min(CHUNK, end - pos)
        lo = min(pos, len(msg.data) - CHUNK)
        window = slice(msg.data, lo, CHUNK)
        out = convert(concat(out, slice(window, pos - lo, m)), Bytes[MPT.MAX_PROOF])
        pos += m
    return out


@internal
@view
def _step_contract(kind: uint256, n: uint256) -> address:
    """
    @notice The step contract that executes a step, or the zero address for a
            step no kind can have (empty, an unknown kind, or a fixed-length
            kind longer than any of its steps): such a step changes nothing.
    @param kind The step's first byte (0 for an empty step).
    @param n The step's length.
    @return The contract (docs/l1-stf-twin.md "Wrapping it").
    """
    if n == 0 or kind == 0 or kind > T.STEP_FORCED:
        return empty(address)
    if kind == T.STEP_ORACLE or kind == T.STEP_FUNDING or kind == T.STEP_SETTLE:
        return PRICES
    if n > T.MAX_FIXED_STEP:
        return empty(address)
    if kind == T.STEP_TRADE:
        return TRADE
    if kind == T.STEP_LIQUIDATE or kind == T.STEP_DELEVERAGE:
        return LIQUIDATION
    return ACCOUNTS


@internal
@view
def _queue_item(
    kind: uint256, batch: IOneStepProver.BatchData, bridge: address, g: T.GlobalLeaf
) -> T.QueueItem:
    """
    @notice The queue item a deposit or forced step consumes: the one at the
            global leaf's pointer, if the batch's range covers it.
    @param kind STEP_DEPOSIT or STEP_FORCED.
    @param batch The batch's data fields (its queue ranges).
    @param bridge The bridge holding the queues.
    @param g The global leaf before the step.
    @return The item (`present = false` past the batch's range).
    """
    if kind == T.STEP_DEPOSIT:
        if g.next_deposit >= batch.deposit_end:
            return T.QueueItem(index=g.next_deposit, present=False, account=empty(address), amount=0, payload=b"")
        d: IBridge.DepositItem = staticcall IBridge(bridge).depositAt(g.next_deposit)
        return T.QueueItem(index=g.next_deposit, present=True, account=d.owner, amount=d.amount, payload=b"")
    if g.next_forced >= batch.forced_end:
        return T.QueueItem(index=g.next_forced, present=False, account=empty(address), amount=0, payload=b"")
    f: IBridge.ForcedItem = staticcall IBridge(bridge).forcedAt(g.next_forced)
    return T.QueueItem(index=g.next_forced, present=True, account=f.sender, amount=0, payload=f.payload)
