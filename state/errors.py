"""Named outcome codes of a step (docs/stf.md §6).

Every step yields a receipt whose code is OK or one of these reasons. The codes
are stable: they appear in receipts, RPC errors and test vectors. A step whose
code is not OK changed nothing (except that deposit and forced steps always
advance their queue pointer, §7.1 and §7.10).
"""

from enum import IntEnum


class Code(IntEnum):
    """Outcome of one step. 0 is success; every other value names a refusal."""

    OK = 0
    INVALID_ENCODING = 1
    UNKNOWN_KIND = 2
    BAD_SIGNATURE = 3
    UNKNOWN_ACCOUNT = 5
    UNKNOWN_MARKET = 6
    BAD_ORDER_REF = 7
    BAD_FLAGS = 8
    ORDER_EXPIRED = 9
    ORDER_CANCELLED = 10
    ORDER_OVERFILL = 11
    PRICE_LIMIT = 12
    SAME_SIDE = 13
    MARKET_MISMATCH = 14
    SELF_TRADE = 15
    POST_ONLY_TAKER = 16
    REDUCE_ONLY = 17
    INSUFFICIENT_MARGIN = 18
    BAD_NONCE = 19
    INSUFFICIENT_COLLATERAL = 20
    BAD_AMOUNT = 21
    TOO_MANY_POSITIONS = 22
    OVERFLOW = 23
    TICK_SIZE = 24
    LOT_SIZE = 25
    MARKET_EXPIRED = 26
    MARKET_SETTLED = 27
    NOT_EXPIRED = 28
    NO_PRICE = 29
    STALE_ORACLE = 30
    ORACLE_NOT_MONOTONIC = 31
    ORACLE_QUORUM = 32
    ORACLE_FUTURE = 33
    BAD_PRICE = 34
    NOT_LIQUIDATABLE = 35
    DELEVERAGE_REQUIRED = 36
    NOT_BANKRUPT = 37
    NO_POSITION = 38
    WRONG_DIRECTION = 39
    QUEUE_EMPTY = 40
    NOT_OWNER = 41
    NOT_OPTION = 43
    FUNDING_TOO_EARLY = 44
    ACCOUNT_LIMIT = 45
    ALREADY_CANCELLED = 46
    BAD_RECIPIENT = 47
    SAME_ACCOUNT = 48


class StfError(Exception):
    """A step is refused: carries the code. Raised and caught inside state/ only."""

    def __init__(self, code: Code) -> None:
        super().__init__(code.name)
        self.code = code


class InvalidBatchError(ValueError):
    """Batch bytes that do not parse as a batch (the rollup contract refuses them)."""
