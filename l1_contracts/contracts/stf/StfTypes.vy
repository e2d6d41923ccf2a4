# pragma version ~=0.4.3
"""
@title StfTypes
@license MIT
@notice Constants, outcome codes and data types shared by the Vyper twin of
        the HFX state-transition function (docs/stf.md, docs/l1-stf-twin.md).
@dev Stateless: import it and refer to `StfTypes.NAME`. Constants carry the
     names of docs/stf.md §1.3; a few have a signed twin (suffix `_S`) so that
     signed quantities can be compared without conversions.
"""

# ---------------------------------------------------------------- §1.3 constants

MAX_MARKETS: constant(uint256) = 64
MAX_POSITIONS: constant(uint256) = 16
MAX_UNDERLYINGS: constant(uint256) = 16
BPS: constant(uint256) = 10000
BPS_S: constant(int256) = 10000
FUNDING_SCALE: constant(int256) = 10 ** 9
FUNDING_PERIOD: constant(uint256) = 28800
PRICE_LIMIT: constant(uint256) = 2 ** 48
SIZE_LIMIT: constant(uint256) = 2 ** 40
SIZE_LIMIT_S: constant(int256) = 2 ** 40
AMOUNT_LIMIT: constant(uint256) = 2 ** 63
COST_LIMIT: constant(int256) = 2 ** 95
FUNDING_INDEX_LIMIT: constant(int256) = 2 ** 87
COLLATERAL_LIMIT: constant(int256) = 2 ** 127
POOL_LIMIT: constant(int256) = 2 ** 127
ACCOUNT_LIMIT: constant(uint256) = 2 ** 32
U64_LIMIT: constant(uint256) = 2 ** 64

# Market kinds (§4.2), order flags (§5.2), price flags (§4.3), oracle ids (§7.5).
KIND_PERP: constant(uint256) = 1
KIND_CALL: constant(uint256) = 2
KIND_PUT: constant(uint256) = 3
FLAG_POST_ONLY: constant(uint256) = 1
FLAG_REDUCE_ONLY: constant(uint256) = 2
FLAGS_DEFINED: constant(uint256) = 15
PRICE_FLAG_SETTLED: constant(uint256) = 1
ORACLE_UNDERLYING_BASE: constant(uint256) = 64

# Step kinds (§5.3).
STEP_DEPOSIT: constant(uint256) = 1
STEP_WITHDRAW: constant(uint256) = 2
STEP_TRADE: constant(uint256) = 3
STEP_CANCEL: constant(uint256) = 4
STEP_ORACLE: constant(uint256) = 5
STEP_FUNDING: constant(uint256) = 6
STEP_LIQUIDATE: constant(uint256) = 7
STEP_DELEVERAGE: constant(uint256) = 8
STEP_SETTLE: constant(uint256) = 9
STEP_FORCED: constant(uint256) = 10

# Leaf namespaces (§4).
NS_GLOBAL: constant(uint256) = 1
NS_PARAMS: constant(uint256) = 2
NS_PRICES: constant(uint256) = 3
NS_ACCOUNT: constant(uint256) = 4
NS_ACCOUNT_INDEX: constant(uint256) = 5
NS_ORDER: constant(uint256) = 6
NS_WITHDRAWAL: constant(uint256) = 7

# Keys of the three singleton leaves: keccak(namespace).
GLOBAL_KEY: constant(bytes32) = keccak256(b"\x01")
PARAMS_KEY: constant(bytes32) = keccak256(b"\x02")
PRICES_KEY: constant(bytes32) = keccak256(b"\x03")

# ---------------------------------------------------------------- §6 outcome codes

OK: constant(uint8) = 0
INVALID_ENCODING: constant(uint8) = 1
UNKNOWN_KIND: constant(uint8) = 2
BAD_SIGNATURE: constant(uint8) = 3
UNKNOWN_ACCOUNT: constant(uint8) = 5
UNKNOWN_MARKET: constant(uint8) = 6
BAD_ORDER_REF: constant(uint8) = 7
BAD_FLAGS: constant(uint8) = 8
ORDER_EXPIRED: constant(uint8) = 9
ORDER_CANCELLED: constant(uint8) = 10
ORDER_OVERFILL: constant(uint8) = 11
PRICE_LIMIT_CODE: constant(uint8) = 12
SAME_SIDE: constant(uint8) = 13
MARKET_MISMATCH: constant(uint8) = 14
SELF_TRADE: constant(uint8) = 15
POST_ONLY_TAKER: constant(uint8) = 16
REDUCE_ONLY: constant(uint8) = 17
INSUFFICIENT_MARGIN: constant(uint8) = 18
BAD_NONCE: constant(uint8) = 19
INSUFFICIENT_COLLATERAL: constant(uint8) = 20
BAD_AMOUNT: constant(uint8) = 21
TOO_MANY_POSITIONS: constant(uint8) = 22
OVERFLOW: constant(uint8) = 23
TICK_SIZE: constant(uint8) = 24
LOT_SIZE: constant(uint8) = 25
MARKET_EXPIRED: constant(uint8) = 26
MARKET_SETTLED: constant(uint8) = 27
NOT_EXPIRED: constant(uint8) = 28
NO_PRICE: constant(uint8) = 29
STALE_ORACLE: constant(uint8) = 30
ORACLE_NOT_MONOTONIC: constant(uint8) = 31
ORACLE_QUORUM: constant(uint8) = 32
ORACLE_FUTURE: constant(uint8) = 33
BAD_PRICE: constant(uint8) = 34
NOT_LIQUIDATABLE: constant(uint8) = 35
DELEVERAGE_REQUIRED: constant(uint8) = 36
NOT_BANKRUPT: constant(uint8) = 37
NO_POSITION: constant(uint8) = 38
WRONG_DIRECTION: constant(uint8) = 39
QUEUE_EMPTY: constant(uint8) = 40
NOT_OWNER: constant(uint8) = 41
NOT_OPTION: constant(uint8) = 43
FUNDING_TOO_EARLY: constant(uint8) = 44
ACCOUNT_LIMIT_CODE: constant(uint8) = 45
ALREADY_CANCELLED: constant(uint8) = 46
BAD_RECIPIENT: constant(uint8) = 47
SAME_ACCOUNT: constant(uint8) = 48

# ---------------------------------------------------------------- sizes and bounds

# Bound on leaf values: the largest leaf is the prices leaf of 64 markets
# (144 + 32 * 64 = 2192 bytes); the bound is rounded up to whole words (69)
# so that a leaf packed as words fits it.
MAX_LEAF: constant(uint256) = 2208
# Leaves one step reads or writes: at most 7 (a trade); one spare.
MAX_LEAVES: constant(uint256) = 8
# Bound on the values of leaves other than params and prices (the largest is
# an account of 16 positions, 556 bytes; the bound leaves room for the
# encoder's intermediate concatenation).
MAX_SMALL_LEAF: constant(uint256) = 620
# Leaves one step writes: at most 5 (a trade).
MAX_WRITES: constant(uint256) = 5
# Longest step any kind parses: an oracle step with 255 entries and 255
# signatures (11 + 13 * 255 + 65 * 255; refused, §7.5 steps 1 and 3, but
# well formed). A longer step is INVALID_ENCODING or UNKNOWN_KIND whatever
# its bytes; the dispatcher decides that itself.
MAX_STEP: constant(uint256) = 19901
# Longest step of a fixed-length kind (withdraw).
MAX_FIXED_STEP: constant(uint256) = 106
# Steps as long as a batch can carry them (u16 length prefix, §5.1).
MAX_BATCH_STEP: constant(uint256) = 65535
# Largest oracle key set (the rollup's bound, §3). An oracle step with more
# signatures than keys is refused before any is recovered (§7.5 step 1), so
# one step recovers at most this many.
MAX_ORACLE_KEYS: constant(uint256) = 16
# Forced payloads: the bridge accepts at most 40 bytes; the twin accepts a
# little more so that malformed payloads of any plausible length are tested.
MAX_PAYLOAD: constant(uint256) = 64
ORDER_ENTRY_SIZE: constant(uint256) = 104
# An entry as the batch writes it (§5.2): packed (68-104 bytes), or 0xE0 and
# the 104 bytes.
WRITTEN_ENTRY_MAX: constant(uint256) = 105
# Leaf heads (§4.3, §4.4).
PRICES_HEAD: constant(uint256) = 144
ACCOUNT_HEAD: constant(uint256) = 44
CONFIG_SIZE: constant(uint256) = 16

# ---------------------------------------------------------------- witness and context


struct Leaf:
    key: bytes32  # keccak(namespace ‖ id), §4
    present: bool  # false: the key is absent from the state (value empty)
    value: Bytes[MAX_LEAF]  # the leaf's bytes (§4.1-§4.6)


# A written leaf other than params and prices (same ABI as Leaf).
struct SmallLeaf:
    key: bytes32
    present: bool  # always true: keys are never deleted
    value: Bytes[MAX_SMALL_LEAF]


struct OrderEntry:
    ref: uint256  # the entry's 0-based position in the batch's order table
    entry: Bytes[WRITTEN_ENTRY_MAX]  # the entry as the batch writes it (§5.2)


struct QueueItem:
    index: uint256  # queue position (must be the global leaf's pointer)
    present: bool  # false: the queue has no item at `index`
    account: address  # deposit: the owner; forced: the L1 sender
    amount: uint256  # deposit: the amount, as the bridge reports it
    payload: Bytes[MAX_PAYLOAD]  # forced: the payload (§5.4)


struct Context:
    time: uint64  # the batch timestamp (§3)
    domain: bytes32  # the EIP-712 domain separator (§10)
    oracle_keys: DynArray[address, MAX_ORACLE_KEYS]  # the oracle key set, strictly increasing
    oracle_threshold: uint256  # distinct oracle signers an update needs
    n_orders: uint256  # entries in the batch's order table
    orders: DynArray[OrderEntry, 2]  # the entries the step references
    queue: QueueItem  # the queue item a deposit or forced step consumes


# ---------------------------------------------------------------- decoded leaves


# An account leaf (§4.4). Positions are kept as their stored 32-byte words
# (`market u8 | size i64 | cost i96 | funding_snapshot i88`, sorted by
# market); StfCodec `_pos_*` reads their fields.
struct Account:
    owner: address
    nonce: uint256  # u64
    collateral: int256  # i128
    positions: DynArray[uint256, MAX_POSITIONS]


struct GlobalLeaf:
    l2_time: uint256
    next_deposit: uint256
    next_forced: uint256
    withdrawal_count: uint256
    account_count: uint256
    insurance_fund: int256  # u128, kept signed for arithmetic
    fee_pool: int256  # u128, kept signed for arithmetic


# The slots of a step's witness: the leaves it may read or write, by role.
N_SLOTS: constant(uint256) = 7
S_GLOBAL: constant(uint256) = 0
S_PARAMS: constant(uint256) = 1
S_PRICES: constant(uint256) = 2
S_A: constant(uint256) = 3  # the first account (target, maker, withdrawer, ...)
S_B: constant(uint256) = 4  # the second account (taker, liquidator, counterparty)
S_C: constant(uint256) = 5  # first order state, account index or withdrawal record
S_D: constant(uint256) = 6  # second order state


# Which slots a step uses and what its witness says about them: for each
# slot its key (zero when unused), whether the witness holds it (`found`
# bit) and whether the state does (`present` bit).
struct Witness:
    keys: bytes32[N_SLOTS]
    found: uint256
    present: uint256


# A step's witness, resolved and decoded.
struct Pre:
    w: Witness
    glob: GlobalLeaf
    params: Bytes[MAX_LEAF]
    prices: Bytes[MAX_LEAF]
    a: Account
    b: Account
    c: uint256  # S_C as a big-endian integer (order state: filled << 8 | cancelled)
    d: uint256  # S_D likewise


# What a step writes: a bit per slot written and the slots' new values.
struct Post:
    writes: uint256  # bit per slot written
    glob: GlobalLeaf
    a: Account
    b: Account
    c: uint256  # S_C's new value, big-endian
    c_size: uint256  # its width in bytes (4: account index, 9: order state, 32: withdrawal)
    d: uint256  # S_D's new order state (filled << 8 | cancelled)


# A resolved order-table reference (§5.2, §7 "resolving an order reference").
struct Order:
    ok: bool  # in range and well formed
    account: uint256
    market: uint256
    is_buy: bool
    flags: uint256
    price: uint256
    size: uint256
    expiry: uint256
    salt: uint256
    r: uint256
    s: uint256
    v: uint256


# Risk of a normalised account (§8.2-8.4).
struct Risk:
    equity: int256
    initial: int256
    maintenance: int256
    buffer: int256
