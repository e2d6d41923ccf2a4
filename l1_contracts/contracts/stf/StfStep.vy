# pragma version ~=0.4.3
"""
@title StfStep
@license MIT
@notice What every step handler shares: the decoded witness (`Pre`),
        order-table references (§5.2), signature checks and written leaves.
@dev Stateless module. A contract's `execute` resolves the witness into a
     `Pre` (docs/l1-stf-twin.md): each slot names a key the step may read or
     write, whether the witness holds it and whether the state does. A
     handler that reads or writes a slot the witness lacks reverts: the
     witness is bad and the step has no outcome.
"""

from . import StfTypes as T
from . import StfCodec as C
from . import StfSig as S


@internal
@pure
def _find(keys: DynArray[bytes32, T.MAX_LEAVES], key: bytes32) -> uint256:
    """
    @notice Position of `key` among the witness keys, or MAX_LEAVES.
    @param keys The witness's keys, in witness order.
    @param key The key looked for.
    @return Its position, or MAX_LEAVES when the witness lacks it.
    """
    for i: uint256 in range(len(keys), bound=T.MAX_LEAVES):
        if keys[i] == key:
            return i
    return T.MAX_LEAVES


@internal
@pure
def _has(w: T.Witness, slot: uint256) -> bool:
    """
    @notice Whether the slot's leaf is known to exist (in the witness and in
            the state).
    @param w The witness flags.
    @param slot The slot.
    @return True when it is.
    """
    return (w.present >> slot) & 1 == 1


@internal
@pure
def _read(w: T.Witness, slot: uint256) -> bool:
    """
    @notice Read a slot: revert unless the witness holds it, and say whether
            the state holds it.
    @param w The witness flags.
    @param slot The slot.
    @return Whether the leaf is present.
    """
    assert w.keys[slot] != empty(bytes32) and (w.found >> slot) & 1 == 1, "STF: witness lacks a leaf the step touches"
    return (w.present >> slot) & 1 == 1


@internal
@pure
def _genesis(w: T.Witness, slot: uint256):
    """
    @notice Read a leaf that every state holds (global, params, prices).
    @param w The witness flags.
    @param slot The slot.
    """
    assert self._read(w, slot), "STF: state lacks a genesis leaf"


@internal
@pure
def _write(w: T.Witness, slot: uint256, data: Bytes[T.MAX_SMALL_LEAF]) -> T.SmallLeaf:
    """
    @notice A write of a slot's leaf; reverts unless the witness holds its
            key (the root update needs its proof).
    @param w The witness flags.
    @param slot The slot.
    @param data The new value.
    @return The written leaf.
    """
    assert w.keys[slot] != empty(bytes32) and (w.found >> slot) & 1 == 1, "STF: witness lacks a leaf the step writes"
    return T.SmallLeaf(key=w.keys[slot], present=True, value=data)


@internal
@pure
def _emit(w: T.Witness, post: T.Post) -> DynArray[T.SmallLeaf, T.MAX_WRITES]:
    """
    @notice The leaves a step writes, encoded, in slot order.
    @param w The witness flags (every written slot must be in the witness).
    @param post What the step writes.
    @return The written leaves.
    """
    out: DynArray[T.SmallLeaf, T.MAX_WRITES] = []
    if post.writes & (1 << T.S_GLOBAL) != 0:
        out.append(self._write(w, T.S_GLOBAL, C._encode_global(post.glob)))
    if post.writes & (1 << T.S_A) != 0:
        out.append(self._write(w, T.S_A, C._encode_account(post.a)))
    if post.writes & (1 << T.S_B) != 0:
        out.append(self._write(w, T.S_B, C._encode_account(post.b)))
    if post.writes & (1 << T.S_C) != 0:
        out.append(self._write(w, T.S_C, C._encode_u(post.c, post.c_size)))
    if post.writes & (1 << T.S_D) != 0:
        out.append(self._write(w, T.S_D, C._encode_u(post.d, 9)))
    return out


@internal
@pure
def _account_slot_key(index: uint256) -> bytes32:
    """
    @notice The key of account `index`, or zero for index 0 (never an
            account and never looked up, §4.1).
    @param index The account index (u32).
    @return The key or zero.
    """
    if index == 0:
        return empty(bytes32)
    return C._account_key(index)


@internal
@pure
def _order_slot_key(domain: bytes32, known: bool, owner: address, o: T.Order) -> bytes32:
    """
    @notice The order-state key of `o` once its account's owner is known,
            else zero.
    @param domain The EIP-712 domain separator.
    @param known Whether the order's account is known to exist.
    @param owner Its owner.
    @param o The order.
    @return The key or zero.
    """
    if not o.ok or not known:
        return empty(bytes32)
    return C._order_key(S._order_digest(domain, owner, o))


@internal
@pure
def _order_at(ctx: T.Context, ref: uint256) -> T.Order:
    """
    @notice Order-table entry `ref`; `ok` is false when `ref` is out of range
            or the entry is malformed (BAD_ORDER_REF).
    @dev Reverts when `ref` is in range but the context lacks the entry.
    @param ctx The context.
    @param ref The 0-based reference.
    @return The order.
    """
    if ref >= ctx.n_orders:
        return empty(T.Order)
    for e: T.OrderEntry in ctx.orders:
        if e.ref == ref:
            return C._decode_order(e.entry)
    raise "STF: context lacks a referenced order entry"


@internal
@pure
def _signed_by(digest: bytes32, r: uint256, s: uint256, v: uint256, owner: address) -> bool:
    """
    @notice Whether (r, s, v) over `digest` recovers to `owner` (§10).
    @param digest The digest.
    @param r The signature's r.
    @param s The signature's s.
    @param v The signature's v byte.
    @param owner The expected signer.
    @return True when it does.
    """
    signer: address = S._recover(digest, r, s, v)
    return signer != empty(address) and signer == owner


@internal
@pure
def _signed_by_at(step: Bytes[T.MAX_FIXED_STEP], at: uint256, digest: bytes32, owner: address) -> bool:
    """
    @notice Whether the 65-byte signature r ‖ s ‖ v at byte `at` of `step`
            recovers to `owner` over `digest` (§10).
    @param step The step bytes.
    @param at The signature's offset.
    @param digest The digest.
    @param owner The expected signer.
    @return True when it does.
    """
    return self._signed_by(
        digest,
        convert(extract32(step, at), uint256),
        convert(extract32(step, at + 32), uint256),
        convert(extract32(step, at + 33), uint256) & C.MASK_8,
        owner,
    )


@internal
@pure
def _signed_order(ctx: T.Context, ref: uint256, w: T.Witness, slot: uint256, owner: address) -> (uint8, T.Order):
    """
    @notice §7 "resolving an order reference": the entry exists and is well
            formed (BAD_ORDER_REF), defines no undefined flag (BAD_FLAGS), its
            account exists (UNKNOWN_ACCOUNT) and its owner signed it
            (BAD_SIGNATURE).
    @param ctx The context.
    @param ref The order reference.
    @param w The witness flags.
    @param slot The slot of the order's account (its key was derived from
           the same entry).
    @param owner The owner of that account (when it exists).
    @return OK or the refusal, and the order.
    """
    o: T.Order = self._order_at(ctx, ref)
    if not o.ok:
        return T.BAD_ORDER_REF, o
    if o.flags & ~T.FLAGS_DEFINED != 0:
        return T.BAD_FLAGS, o
    if o.account == 0 or not self._read(w, slot):
        return T.UNKNOWN_ACCOUNT, o
    if not self._signed_by(S._order_digest(ctx.domain, owner, o), o.r, o.s, o.v, owner):
        return T.BAD_SIGNATURE, o
    return T.OK, o


@internal
@pure
def _can_fill(o: T.Order, w: T.Witness, slot: uint256, state: uint256, size: uint256, time: uint256) -> uint8:
    """
    @notice §7 "checking an order can fill": not expired (ORDER_EXPIRED), not
            cancelled (ORDER_CANCELLED), not overfilled (ORDER_OVERFILL).
    @param o The order.
    @param w The witness flags.
    @param slot The slot of the order's state.
    @param state The decoded state (filled << 8 | cancelled) when present.
    @param size The fill size.
    @param time The batch time.
    @return OK or the refusal.
    """
    if time >= o.expiry:
        return T.ORDER_EXPIRED
    s: uint256 = 0
    if self._read(w, slot):
        s = state
    if s & C.MASK_8 != 0:
        return T.ORDER_CANCELLED
    if (s >> 8) + size > o.size:
        return T.ORDER_OVERFILL
    return T.OK
