# pragma version ~=0.4.3
"""
@title HFX bridge
@license MIT
@notice Holds the collateral. Keeps the two L1 queues the STF reads
        (docs/stf.md §3): deposits, and forced transactions (the escape
        hatch, docs/stf.md §5.4). Pays out withdrawals proven against a
        final state root.
@dev Queue items are stored in arrays readable by index, so the one-step
     prover rebuilds `deposit(i)` and `forced(i)` from L1 alone. Items are
     never removed; the rollup keeps which prefix its batches consumed.
     Reverts carry a stable UPPER_SNAKE reason code (docs/l1.md).
"""

from ethereum.ercs import IERC20
from . import IBridge
from . import MPT

implements: IBridge


interface IRollup:
    def finalizedRoot(batch_index: uint256) -> bytes32: view


# Deposits and withdrawals are in [1, 2**63) units (docs/stf.md §1.3).
AMOUNT_LIMIT: constant(uint256) = 2**63
# Withdrawal record namespace (docs/stf.md §4).
WITHDRAWAL_NAMESPACE: constant(bytes1) = 0x07
# Forced payloads (docs/stf.md §5.4): kind byte and exact length.
KIND_WITHDRAW: constant(uint256) = 2
FORCED_WITHDRAW_SIZE: constant(uint256) = 33
KIND_CANCEL: constant(uint256) = 4
FORCED_CANCEL_SIZE: constant(uint256) = 40


event Deposited:
    index: indexed(uint256)
    owner: indexed(address)
    amount: uint256
    time: uint256


event ForcedQueued:
    index: indexed(uint256)
    sender: indexed(address)
    payload: Bytes[40]
    time: uint256


event WithdrawalClaimed:
    withdrawal_id: indexed(uint256)
    batch_index: indexed(uint256)
    recipient: indexed(address)
    account: uint256
    amount: uint256


TOKEN: public(immutable(IERC20))
ROLLUP: public(immutable(address))

depositCount: public(uint256)
forcedCount: public(uint256)
deposits: HashMap[uint256, IBridge.DepositItem]
forced: HashMap[uint256, IBridge.ForcedItem]
# withdrawal id => claimed
claimed: public(HashMap[uint256, bool])


@deploy
def __init__(token: IERC20, rollup: address):
    """
    @param token The collateral token (6 decimals).
    @param rollup The rollup contract, whose final roots prove withdrawals (deployed
           next: its address is computed in advance, and it checks this).
    """
    assert token.address != empty(address), "ZERO_ADDRESS"
    assert rollup != empty(address), "ZERO_ADDRESS"
    TOKEN = token
    ROLLUP = rollup


@external
@nonreentrant
def deposit(amount: uint256) -> uint256:
    """
    @notice Pull `amount` collateral units from the caller and queue a
            deposit to the caller's L2 account.
    @dev The caller must have approved the bridge. The STF credits the
         account (creating it on first deposit) when a batch consumes the item.
    @param amount The amount, in [1, 2**63).
    @return The item's index in the deposit queue.
    """
    assert amount > 0 and amount < AMOUNT_LIMIT, "BAD_AMOUNT"
    index: uint256 = self.depositCount
    self.deposits[index] = IBridge.DepositItem(owner=msg.sender, amount=amount, time=block.timestamp)
    self.depositCount = index + 1
    log Deposited(index=index, owner=msg.sender, amount=amount, time=block.timestamp)
    assert extcall TOKEN.transferFrom(msg.sender, self, amount, default_return_value=True), "TRANSFER_FAILED"
    return index


@external
def forceTransaction(payload: Bytes[40]) -> uint256:
    """
    @notice Queue an L2 transaction authenticated by the caller's L1 address.
    @dev Only the two forced kinds of docs/stf.md §5.4 are accepted: a
         forced withdraw (0x02, 33 bytes) and a forced cancel (0x04, 40
         bytes). The rest of the payload is checked by the STF.
    @param payload The forced payload.
    @return The item's index in the forced queue.
    """
    n: uint256 = len(payload)
    assert n > 0, "BAD_PAYLOAD"
    kind: uint256 = convert(slice(payload, 0, 1), uint256)
    assert (kind == KIND_WITHDRAW and n == FORCED_WITHDRAW_SIZE) or (
        kind == KIND_CANCEL and n == FORCED_CANCEL_SIZE
    ), "BAD_PAYLOAD"
    index: uint256 = self.forcedCount
    self.forced[index] = IBridge.ForcedItem(sender=msg.sender, payload=payload, time=block.timestamp)
    self.forcedCount = index + 1
    log ForcedQueued(index=index, sender=msg.sender, payload=payload, time=block.timestamp)
    return index


@external
@nonreentrant
def claimWithdrawal(
    batch_index: uint256,
    withdrawal_id: uint256,
    account: uint256,
    recipient: address,
    amount: uint256,
    proof: Bytes[MPT.MAX_PROOF],
):
    """
    @notice Pay out withdrawal record `withdrawal_id` to its recipient.
    @dev The record (docs/stf.md §4.6: account u32 | recipient | amount
         u64, under key keccak256(0x07 ‖ id u64)) is proven with an MPT
         proof against the post-state root of batch `batch_index`, which
         must be final. Records are never changed once written, so any
         final batch at or after the one that wrote it proves it. Anyone
         may call; the tokens always go to the record's recipient.
    @param batch_index A final batch.
    @param withdrawal_id The record's id (u64).
    @param account The record's account index (u32).
    @param recipient The record's recipient.
    @param amount The record's amount (u64).
    @param proof The EIP-1186 proof nodes of the record's key, concatenated.
    """
    assert withdrawal_id < 2**64 and account < 2**32 and amount < 2**64, "BAD_RECORD"
    assert not self.claimed[withdrawal_id], "ALREADY_CLAIMED"
    root: bytes32 = staticcall IRollup(ROLLUP).finalizedRoot(batch_index)
    assert root != empty(bytes32), "NOT_FINAL"
    key: bytes32 = keccak256(concat(WITHDRAWAL_NAMESPACE, slice(convert(withdrawal_id, bytes32), 24, 8)))
    found: bool = False
    value: Bytes[MPT.MAX_VALUE] = b""
    found, value = MPT._get(root, key, proof)
    assert found, "NO_RECORD"
    record: Bytes[32] = concat(
        slice(convert(account, bytes32), 28, 4),
        convert(recipient, bytes20),
        slice(convert(amount, bytes32), 24, 8),
    )
    assert len(value) == 32 and convert(value, Bytes[32]) == record, "RECORD_MISMATCH"
    self.claimed[withdrawal_id] = True
    log WithdrawalClaimed(
        withdrawal_id=withdrawal_id,
        batch_index=batch_index,
        recipient=recipient,
        account=account,
        amount=amount,
    )
    assert extcall TOKEN.transfer(recipient, amount, default_return_value=True), "TRANSFER_FAILED"


@external
@view
def depositAt(index: uint256) -> IBridge.DepositItem:
    """
    @notice Deposit-queue item `index` (the STF's deposit(index)).
    @param index A queue position below `depositCount`.
    @return The owner, amount and L1 time of the item.
    """
    assert index < self.depositCount, "NO_ITEM"
    return self.deposits[index]


@external
@view
def forcedAt(index: uint256) -> IBridge.ForcedItem:
    """
    @notice Forced-queue item `index` (the STF's forced(index)).
    @param index A queue position below `forcedCount`.
    @return The L1 sender, payload and L1 time of the item.
    """
    assert index < self.forcedCount, "NO_ITEM"
    return self.forced[index]


@external
@view
def depositTime(index: uint256) -> uint256:
    """
    @notice The L1 time deposit `index` was queued (the forced-inclusion clock).
    @param index A queue position below `depositCount`.
    @return Its block timestamp.
    """
    assert index < self.depositCount, "NO_ITEM"
    return self.deposits[index].time


@external
@view
def forcedTime(index: uint256) -> uint256:
    """
    @notice The L1 time forced item `index` was queued (the forced-inclusion clock).
    @param index A queue position below `forcedCount`.
    @return Its block timestamp.
    """
    assert index < self.forcedCount, "NO_ITEM"
    return self.forced[index].time
