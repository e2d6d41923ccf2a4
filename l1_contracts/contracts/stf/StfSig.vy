# pragma version ~=0.4.3
"""
@title StfSig
@license MIT
@notice EIP-712 digests of HFX messages and signer recovery (docs/stf.md §10),
        matching state/eip712.py.
@dev Stateless module. Every message has only 32-byte members, so a struct
     hash is keccak256 of the type hash and the members, each `abi_encode`d
     as one word.
"""

from . import StfTypes as T

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(address trader,uint8 market,bool isBuy,uint64 price,uint64 size,uint8 flags,uint64 expiry,uint64 salt)"
)
CANCEL_TYPEHASH: constant(bytes32) = keccak256("Cancel(address trader,bytes32 orderHash)")
WITHDRAW_TYPEHASH: constant(bytes32) = keccak256(
    "Withdraw(address trader,address recipient,uint64 amount,uint64 nonce)"
)
ORACLE_UPDATE_TYPEHASH: constant(bytes32) = keccak256("OracleUpdate(uint64 timestamp,bytes32 pricesHash)")
NAME_HASH: constant(bytes32) = keccak256("HFX")
VERSION_HASH: constant(bytes32) = keccak256("1")

# Order of the secp256k1 group, and its half (EIP-2 low-s bound).
SECP256K1_N: constant(uint256) = 115792089237316195423570985008687907852837564279074904382605163141518161494337
HALF_N: constant(uint256) = SECP256K1_N // 2


@internal
@pure
def _domain_separator(chain_id: uint256, rollup: address) -> bytes32:
    """
    @notice The HFX EIP-712 domain separator.
    @param chain_id The L1 chain id.
    @param rollup The rollup contract (verifyingContract).
    @return The domain separator.
    """
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain_id, rollup))


@internal
@pure
def _typed(domain: bytes32, struct_hash: bytes32) -> bytes32:
    """
    @notice keccak(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct).
    @param domain The domain separator.
    @param struct_hash The message's struct hash.
    @return The signing digest.
    """
    return keccak256(concat(b"\x19\x01", domain, struct_hash))


@internal
@pure
def _order_digest(domain: bytes32, trader: address, o: T.Order) -> bytes32:
    """
    @notice The digest of an order with `trader` the owner of its account.
    @param domain The domain separator.
    @param trader The owner of the order's account.
    @param o The order body.
    @return The order digest (its identity, §10).
    """
    h: bytes32 = keccak256(
        abi_encode(ORDER_TYPEHASH, trader, o.market, o.is_buy, o.price, o.size, o.flags, o.expiry, o.salt)
    )
    return self._typed(domain, h)


@internal
@pure
def _cancel_digest(domain: bytes32, trader: address, order_hash: bytes32) -> bytes32:
    """
    @notice The digest of `Cancel(trader, orderHash)`.
    @param domain The domain separator.
    @param trader The order's owner.
    @param order_hash The order digest.
    @return The signing digest.
    """
    return self._typed(domain, keccak256(abi_encode(CANCEL_TYPEHASH, trader, order_hash)))


@internal
@pure
def _withdraw_digest(
    domain: bytes32, trader: address, recipient: address, amount: uint256, nonce: uint256
) -> bytes32:
    """
    @notice The digest of `Withdraw(trader, recipient, amount, nonce)`.
    @param domain The domain separator.
    @param trader The account owner.
    @param recipient The L1 recipient.
    @param amount The amount (u64).
    @param nonce The nonce (u64).
    @return The signing digest.
    """
    return self._typed(
        domain, keccak256(abi_encode(WITHDRAW_TYPEHASH, trader, recipient, amount, nonce))
    )


@internal
@pure
def _oracle_digest(domain: bytes32, timestamp: uint256, prices_hash: bytes32) -> bytes32:
    """
    @notice The digest of `OracleUpdate(timestamp, pricesHash)`.
    @param domain The domain separator.
    @param timestamp The update's timestamp (u64).
    @param prices_hash keccak of the update's entry bytes.
    @return The signing digest.
    """
    return self._typed(domain, keccak256(abi_encode(ORACLE_UPDATE_TYPEHASH, timestamp, prices_hash)))


@internal
@pure
def _recover(digest: bytes32, r: uint256, s: uint256, v: uint256) -> address:
    """
    @notice The signer of (r, s, v) over `digest`, or the zero address when
            the signature is refused: v not in {27, 28, 0, 1}, r or s not in
            [1, n), s > n/2 (EIP-2), or no recovery.
    @dev Matches `recover_signer` of state/eip712.py; the zero address stands
         for its None (no key has the zero address as its address).
    @param digest The signed digest.
    @param r The signature's r.
    @param s The signature's s.
    @param v The signature's v byte.
    @return The signer, or empty(address).
    """
    w: uint256 = v
    if w >= 27:
        # w >= 27 was just checked
        w = unsafe_sub(w, 27)
    if w > 1:
        return empty(address)
    if r == 0 or r >= SECP256K1_N or s == 0 or s > HALF_N:
        return empty(address)
    # w is 0 or 1, so w + 27 is 27 or 28
    return ecrecover(digest, unsafe_add(w, 27), r, s)
