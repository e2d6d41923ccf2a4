# pragma version ~=0.4.3
"""
@title StfAccounts
@license MIT
@notice The Vyper twin of the HFX STF for the steps that move collateral in
        and out and cancel orders: deposit (§7.1), withdraw (§7.2), cancel
        (§7.4) and forced (§7.10).
@dev `execute` is the entry point every twin contract shares
     (docs/l1-stf-twin.md): it returns the outcome code and the leaves the
     step writes with their new values. A leaf the step reads or writes but
     the witness lacks reverts. A step of a kind another twin contract
     executes reverts too (the dispatcher `Stf` routes steps).
"""

from . import StfTypes as T
from . import StfCodec as C
from . import StfSig as S
from . import StfMargin as G
from . import StfStep as St

MASK_160: constant(uint256) = 2 ** 160 - 1
WITHDRAW_SIZE: constant(uint256) = 106
CANCEL_SIZE: constant(uint256) = 68
FORCED_WITHDRAW_SIZE: constant(uint256) = 33
FORCED_CANCEL_SIZE: constant(uint256) = 40


@external
@view
def execute(
    step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
) -> (uint8, DynArray[T.SmallLeaf, T.MAX_WRITES]):
    """
    @notice Execute one deposit, withdraw, cancel or forced step.
    @param step The step bytes (kind byte first).
    @param ctx The step's context.
    @param leaves The pre-values of the leaves the step reads or writes.
    @return The outcome code and the written leaves (new values).
    """
    if len(step) == 0:
        return T.UNKNOWN_KIND, []
    keys: DynArray[bytes32, T.MAX_LEAVES] = []
    for i: uint256 in range(len(leaves), bound=T.MAX_LEAVES):
        keys.append(leaves[i].key)
    pre: T.Pre = empty(T.Pre)
    # two rounds: some keys derive from leaves of the first (owners, counters)
    for _: uint256 in range(2):
        want: bytes32[T.N_SLOTS] = self._want(step, ctx, pre)
        for i: uint256 in range(T.N_SLOTS):
            k: bytes32 = want[i]
            if k == empty(bytes32) or k == pre.w.keys[i]:
                continue
            pre.w.keys[i] = k
            pre.w.found &= ~(1 << i)
            pre.w.present &= ~(1 << i)
            j: uint256 = St._find(keys, k)
            if j == T.MAX_LEAVES:
                continue
            pre.w.found |= 1 << i
            if not leaves[j].present:
                continue
            pre.w.present |= 1 << i
            v: Bytes[T.MAX_LEAF] = leaves[j].value
            if i == T.S_GLOBAL:
                pre.glob = C._decode_global(v)
            elif i == T.S_PARAMS:
                pre.params = v
            elif i == T.S_PRICES:
                pre.prices = v
            elif i == T.S_A:
                pre.a = C._decode_account(v)
            elif i == T.S_B:
                pre.b = C._decode_account(v)
            elif i == T.S_C:
                pre.c = C._small(v)
            else:
                pre.d = C._small(v)
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    n: uint256 = len(step)
    time: uint256 = convert(ctx.time, uint256)
    code: uint8 = T.INVALID_ENCODING
    post: T.Post = empty(T.Post)
    if kind == T.STEP_DEPOSIT:
        if n == 1:
            code, post = self._deposit(ctx.queue, time, pre)
    elif kind == T.STEP_WITHDRAW:
        if n == WITHDRAW_SIZE:
            code, post = self._withdraw(step, ctx.domain, time, pre)
    elif kind == T.STEP_CANCEL:
        if n == CANCEL_SIZE:
            code, post = self._cancel(step, ctx, pre)
    elif kind == T.STEP_FORCED:
        if n == 1:
            code, post = self._forced(ctx.queue, time, pre)
    elif kind == 0 or kind > T.STEP_FORCED:
        code = T.UNKNOWN_KIND
    else:
        raise "STF: kind executed by another contract"
    return code, St._emit(pre.w, post)


# ============================================================================ witness keys


@internal
@pure
def _want(step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, pre: T.Pre) -> bytes32[T.N_SLOTS]:
    """
    @notice The keys of the slots the step may touch, given the leaves
            resolved so far (zero: unused, or not known yet).
    @param step The step bytes.
    @param ctx The context.
    @param pre The witness resolved so far.
    @return One key per slot.
    """
    w: bytes32[T.N_SLOTS] = empty(bytes32[T.N_SLOTS])
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    n: uint256 = len(step)
    if kind == T.STEP_DEPOSIT and n == 1:
        w[T.S_GLOBAL] = T.GLOBAL_KEY
        w[T.S_C] = C._account_index_key(ctx.queue.account)
        if St._has(pre.w, T.S_C):
            w[T.S_A] = St._account_slot_key(pre.c)
        elif (pre.w.found >> T.S_C) & 1 == 1 and St._has(pre.w, T.S_GLOBAL):
            w[T.S_A] = St._account_slot_key(pre.glob.account_count)
    elif kind == T.STEP_WITHDRAW and n == WITHDRAW_SIZE:
        w[T.S_GLOBAL] = T.GLOBAL_KEY
        w[T.S_PARAMS] = T.PARAMS_KEY
        w[T.S_PRICES] = T.PRICES_KEY
        w[T.S_A] = St._account_slot_key(convert(slice(step, 1, 4), uint256))
        if St._has(pre.w, T.S_GLOBAL):
            w[T.S_C] = C._withdrawal_key(pre.glob.withdrawal_count)
    elif kind == T.STEP_CANCEL and n == CANCEL_SIZE:
        o: T.Order = St._order_at(ctx, convert(slice(step, 1, 2), uint256))
        if o.ok:
            w[T.S_A] = St._account_slot_key(o.account)
            w[T.S_C] = St._order_slot_key(ctx.domain, St._has(pre.w, T.S_A), pre.a.owner, o)
    elif kind == T.STEP_FORCED and n == 1:
        w[T.S_GLOBAL] = T.GLOBAL_KEY
        p: Bytes[T.MAX_PAYLOAD] = ctx.queue.payload
        if ctx.queue.present and (len(p) == FORCED_WITHDRAW_SIZE or len(p) == FORCED_CANCEL_SIZE):
            w[T.S_A] = St._account_slot_key(convert(slice(p, 1, 4), uint256))
            if len(p) == FORCED_WITHDRAW_SIZE:
                w[T.S_PARAMS] = T.PARAMS_KEY
                w[T.S_PRICES] = T.PRICES_KEY
                if St._has(pre.w, T.S_GLOBAL):
                    w[T.S_C] = C._withdrawal_key(pre.glob.withdrawal_count)
            else:
                w[T.S_C] = St._order_slot_key(ctx.domain, St._has(pre.w, T.S_A), pre.a.owner, C._decode_body(p))
    return w


# ============================================================================ deposit (§7.1)


@internal
@pure
def _deposit(q: T.QueueItem, time: uint256, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.1: consume deposit-queue item `next_deposit` and credit or
            create the owner's account.
    @param q The queue item at `next_deposit`.
    @param time The batch time.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    St._genesis(pre.w, T.S_GLOBAL)
    g: T.GlobalLeaf = pre.glob
    assert q.index == g.next_deposit, "STF: deposit item is not the one at next_deposit"
    if not q.present:
        return T.QUEUE_EMPTY, empty(T.Post)
    if g.next_deposit + 1 >= T.U64_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    g.next_deposit += 1
    g.l2_time = time
    code: uint8 = 0
    post: T.Post = empty(T.Post)
    code, post = self._credit(q, g, pre)
    if code != T.OK:
        # the item is consumed whatever follows
        post = empty(T.Post)
        post.glob = g
        post.writes = 1 << T.S_GLOBAL
    return code, post


@internal
@pure
def _credit(q: T.QueueItem, g: T.GlobalLeaf, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.1 steps 3-5: credit the owner's account, creating it if needed.
    @param q The deposit.
    @param g The global leaf with the item consumed.
    @param pre The decoded witness.
    @return The outcome code and what the step writes (refused: nothing).
    """
    if q.amount == 0 or q.amount >= T.AMOUNT_LIMIT:
        return T.BAD_AMOUNT, empty(T.Post)
    post: T.Post = empty(T.Post)
    post.glob = g
    post.writes = (1 << T.S_GLOBAL) | (1 << T.S_A)
    if not St._read(pre.w, T.S_C):
        if g.account_count + 1 >= T.ACCOUNT_LIMIT:
            return T.ACCOUNT_LIMIT_CODE, empty(T.Post)
        post.c = g.account_count
        post.c_size = 4
        post.glob.account_count += 1
        post.a = T.Account(owner=q.account, nonce=0, collateral=convert(q.amount, int256), positions=[])
        post.writes |= 1 << T.S_C
    else:
        if pre.c == 0 or not St._read(pre.w, T.S_A):
            return T.UNKNOWN_ACCOUNT, empty(T.Post)
        code: uint8 = 0
        code, post.a = G._with_collateral(pre.a, convert(q.amount, int256))
        if code != T.OK:
            return code, empty(T.Post)
    return T.OK, post


# ============================================================================ withdraw (§7.2)


@internal
@pure
def _withdraw(step: Bytes[T.MAX_FIXED_STEP], domain: bytes32, time: uint256, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.2: a signed withdrawal `account u32 | recipient | amount u64 |
            nonce u64 | signature`.
    @param step The 106-byte step.
    @param domain The EIP-712 domain separator.
    @param time The batch time.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    w: uint256 = convert(extract32(step, 1), uint256)
    index: uint256 = w >> 224
    recipient: address = convert(convert((w >> 64) & MASK_160, uint160), address)
    amount: uint256 = w & C.MASK_64
    nonce: uint256 = convert(extract32(step, 33), uint256) >> 192
    if index == 0 or not St._read(pre.w, T.S_A):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    if nonce != pre.a.nonce:
        return T.BAD_NONCE, empty(T.Post)
    if nonce + 1 >= T.U64_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    owner: address = pre.a.owner
    digest: bytes32 = S._withdraw_digest(domain, owner, recipient, amount, nonce)
    if not St._signed_by_at(step, 41, digest, owner):
        return T.BAD_SIGNATURE, empty(T.Post)
    return self._withdraw_effects(time, index, recipient, amount, nonce + 1, pre, pre.glob)


@internal
@pure
def _withdraw_effects(
    time: uint256,
    index: uint256,
    recipient: address,
    amount: uint256,
    next_nonce: uint256,
    pre: T.Pre,
    g: T.GlobalLeaf,
) -> (uint8, T.Post):
    """
    @notice §7.2 steps 3-7 for account `pre.a`, shared with the forced
            withdrawal (§7.10).
    @param time The batch time.
    @param index The account index.
    @param recipient The L1 recipient.
    @param amount The amount.
    @param next_nonce The account's nonce afterwards.
    @param pre The decoded witness.
    @param g The global leaf as this step reads it (a forced step's has its
           queue item consumed).
    @return The outcome code and what the step writes (refused: nothing).
    """
    if recipient == empty(address):
        return T.BAD_RECIPIENT, empty(T.Post)
    if amount == 0 or amount >= T.AMOUNT_LIMIT:
        return T.BAD_AMOUNT, empty(T.Post)
    St._genesis(pre.w, T.S_PARAMS)
    St._genesis(pre.w, T.S_PRICES)
    code: uint8 = 0
    post: T.Post = empty(T.Post)
    code, post.a = G._normalize(pre.a, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    if convert(amount, int256) > post.a.collateral:
        return T.INSUFFICIENT_COLLATERAL, empty(T.Post)
    post.a.nonce = next_nonce
    post.a.collateral -= convert(amount, int256)
    if len(post.a.positions) > 0:
        if not G._fresh(pre.params, pre.prices, time):
            return T.STALE_ORACLE, empty(T.Post)
        risk: T.Risk = G._assess(post.a, pre.params, pre.prices)
        if risk.equity < risk.initial:
            return T.INSUFFICIENT_MARGIN, empty(T.Post)
    St._genesis(pre.w, T.S_GLOBAL)
    if g.withdrawal_count + 1 >= T.U64_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    post.c = C._encode_withdrawal_word(index, recipient, amount)
    post.c_size = 32
    post.glob = g
    post.glob.withdrawal_count += 1
    post.glob.l2_time = time
    post.writes = (1 << T.S_GLOBAL) | (1 << T.S_A) | (1 << T.S_C)
    return T.OK, post


# ============================================================================ cancel (§7.4)


@internal
@pure
def _cancel(step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.4: a signed cancellation `order_ref u16 | signature` of an
            order-table entry.
    @param step The 68-byte step.
    @param ctx The context.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    o: T.Order = St._order_at(ctx, convert(slice(step, 1, 2), uint256))
    if not o.ok:
        return T.BAD_ORDER_REF, empty(T.Post)
    if o.account == 0 or not St._read(pre.w, T.S_A):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    owner: address = pre.a.owner
    digest: bytes32 = S._order_digest(ctx.domain, owner, o)
    if not St._signed_by_at(step, 3, S._cancel_digest(ctx.domain, owner, digest), owner):
        return T.BAD_SIGNATURE, empty(T.Post)
    return self._cancel_effects(pre)


@internal
@pure
def _cancel_effects(pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.4 steps 3-4 on order-state slot C: refuse a cancelled order,
            else mark it cancelled.
    @param pre The decoded witness.
    @return The outcome code and what the step writes (refused: nothing).
    """
    state: uint256 = 0
    if St._read(pre.w, T.S_C):
        state = pre.c
    if state & C.MASK_8 != 0:
        return T.ALREADY_CANCELLED, empty(T.Post)
    post: T.Post = empty(T.Post)
    post.c = state | 1
    post.c_size = 9
    post.writes = 1 << T.S_C
    return T.OK, post


# ============================================================================ forced (§7.10)


@internal
@pure
def _forced(q: T.QueueItem, time: uint256, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.10: consume forced-queue item `next_forced` and apply its
            payload (§5.4), authenticated by its L1 sender.
    @param q The queue item at `next_forced`.
    @param time The batch time.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    St._genesis(pre.w, T.S_GLOBAL)
    g: T.GlobalLeaf = pre.glob
    assert q.index == g.next_forced, "STF: forced item is not the one at next_forced"
    if not q.present:
        return T.QUEUE_EMPTY, empty(T.Post)
    if g.next_forced + 1 >= T.U64_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    g.next_forced += 1
    g.l2_time = time
    code: uint8 = 0
    post: T.Post = empty(T.Post)
    code, post = self._forced_payload(q, time, g, pre)
    # the item is consumed whatever follows (a withdrawal wrote the global
    # leaf with the item consumed already)
    if code != T.OK or post.writes & (1 << T.S_GLOBAL) == 0:
        post.glob = g
        post.writes |= 1 << T.S_GLOBAL
    if code != T.OK:
        post.writes = 1 << T.S_GLOBAL
    return code, post


@internal
@pure
def _forced_payload(q: T.QueueItem, time: uint256, g: T.GlobalLeaf, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.10 steps 3-5: decode and apply a forced payload.
    @param q The forced item.
    @param time The batch time.
    @param g The global leaf with the item consumed.
    @param pre The decoded witness.
    @return The outcome code and what the step writes besides the global
            leaf's consumption (refused: nothing).
    """
    p: Bytes[T.MAX_PAYLOAD] = q.payload
    kind: uint256 = 0
    if len(p) > 0:
        kind = convert(slice(p, 0, 1), uint256)
    w: uint256 = 0
    o: T.Order = empty(T.Order)
    if len(p) == FORCED_WITHDRAW_SIZE and kind == T.STEP_WITHDRAW:
        w = convert(extract32(p, 1), uint256)
        o.account = w >> 224
        o.ok = True
    elif len(p) == FORCED_CANCEL_SIZE and kind == T.STEP_CANCEL:
        o = C._decode_body(p)
        if o.ok and o.flags & ~T.FLAGS_DEFINED != 0:
            return T.BAD_FLAGS, empty(T.Post)
    if not o.ok:
        return T.INVALID_ENCODING, empty(T.Post)
    if o.account == 0 or not St._read(pre.w, T.S_A):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    if q.account != pre.a.owner:
        return T.NOT_OWNER, empty(T.Post)
    if w == 0:
        return self._cancel_effects(pre)
    recipient: address = convert(convert((w >> 64) & MASK_160, uint160), address)
    return self._withdraw_effects(time, o.account, recipient, w & C.MASK_64, pre.a.nonce, pre, g)
