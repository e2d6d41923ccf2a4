# pragma version ~=0.4.3
"""
@title Stf
@license MIT
@notice The Vyper twin of the HFX state-transition function (docs/stf.md):
        executes one step of a batch, given its context and the pre-values of
        the leaves it reads or writes, and returns its outcome code and the
        leaves it writes with their new values (docs/l1-stf-twin.md).
@dev A dispatcher: the steps are executed by four contracts (EIP-170 bounds
     each contract's code), all with this same `execute` ABI, so a step is
     forwarded with this call's own calldata. Steps that are no step of any
     kind, or whose length no step of their kind can have, are decided
     here. A step longer than MAX_STEP (19,901 bytes) is not accepted by
     `execute` (that bound keeps its memory small); every such step changes
     nothing and its code is `long_step_code(first byte)`.
"""

from . import StfTypes as T
from . import StfSig as S

ACCOUNTS: public(immutable(address))  # deposit, withdraw, cancel, forced
TRADE: public(immutable(address))  # trade
PRICES: public(immutable(address))  # oracle, funding, settle
LIQUIDATION: public(immutable(address))  # liquidate, deleverage

# The largest ABI encoding of `execute`'s result: the code, the array's
# offset and length, 5 leaves of (offset, key, present, value offset,
# length, 69 words).
MAX_RESULT: constant(uint256) = 3 * 32 + T.MAX_WRITES * (6 * 32 + T.MAX_LEAF)


@deploy
def __init__(accounts: address, trade: address, prices: address, liquidation: address):
    """
    @notice Bind the four step contracts.
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
@view
def execute(
    step: Bytes[T.MAX_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
) -> (uint8, DynArray[T.Leaf, T.MAX_WRITES]):
    """
    @notice Execute one step of at most MAX_STEP bytes.
    @param step The step bytes as in the batch (§5.1).
    @param ctx The step's context.
    @param leaves The pre-values of every leaf the step reads or writes.
    @return The outcome code (§6) and the written leaves, with their new
            values (none when the step changes nothing).
    """
    n: uint256 = len(step)
    if n == 0:
        return T.UNKNOWN_KIND, []
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    if kind == 0 or kind > T.STEP_FORCED:
        return T.UNKNOWN_KIND, []
    target: address = ACCOUNTS
    if kind == T.STEP_ORACLE or kind == T.STEP_FUNDING or kind == T.STEP_SETTLE:
        target = PRICES
    elif n > T.MAX_FIXED_STEP:
        return T.INVALID_ENCODING, []
    elif kind == T.STEP_TRADE:
        target = TRADE
    elif kind == T.STEP_LIQUIDATE or kind == T.STEP_DELEVERAGE:
        target = LIQUIDATION
    # same selector and ABI: forward this call as it is
    result: Bytes[MAX_RESULT] = raw_call(target, msg.data, max_outsize=MAX_RESULT, is_static_call=True)
    return abi_decode(result, (uint8, DynArray[T.Leaf, T.MAX_WRITES]))


@external
@pure
def long_step_code(first_byte: uint8) -> uint8:
    """
    @notice The outcome code of a step longer than MAX_STEP bytes (it
            writes nothing): no kind has such steps (§5.3).
    @param first_byte The step's first byte.
    @return UNKNOWN_KIND or INVALID_ENCODING.
    """
    if first_byte == 0 or convert(first_byte, uint256) > T.STEP_FORCED:
        return T.UNKNOWN_KIND
    return T.INVALID_ENCODING


@external
@pure
def domain_separator(chain_id: uint256, rollup: address) -> bytes32:
    """
    @notice The EIP-712 domain separator of a deployment (§10), for
            `Context.domain`.
    @param chain_id The L1 chain id.
    @param rollup The rollup contract.
    @return The domain separator.
    """
    return S._domain_separator(chain_id, rollup)
