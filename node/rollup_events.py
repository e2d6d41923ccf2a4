"""The rollup's batch events and ``postBatch`` calldata, decoded without compiling the contract.

Layouts are those of ``Rollup.vy`` (docs/l1.md §7); a test checks the topics
and the selector against the compiled ABI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from web3 import Web3

from l1_contracts.bindings import BatchData
from state.keccak import keccak256

BATCH_DATA = "(bytes32,bytes32,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"
BATCH_POSTED_TOPIC = keccak256(
    f"BatchPosted(uint256,uint256,address,bytes32,bytes32,bytes32,{BATCH_DATA},uint256)".encode()
)
BATCH_FINALIZED_TOPIC = keccak256(b"BatchFinalized(uint256,bytes32)")
BATCH_REMOVED_TOPIC = keccak256(b"BatchRemoved(uint256,uint256,uint256)")
BATCH_TOPICS = (BATCH_POSTED_TOPIC, BATCH_REMOVED_TOPIC, BATCH_FINALIZED_TOPIC)
POST_BATCH_SELECTOR = keccak256(b"postBatch(bytes,bytes32,uint256)")[:4]


@dataclass(frozen=True)
class BatchPostedLog:
    """``BatchPosted``."""

    index: int
    parent: int
    proposer: str
    pre_root: bytes
    post_root: bytes
    data_hash: bytes
    data: BatchData
    deadline: int
    tx_hash: bytes
    block: int


@dataclass(frozen=True)
class BatchRemovedLog:
    """``BatchRemoved``: the batch and every later one are removed; ``new_head`` is its parent."""

    index: int
    new_head: int
    game: int
    block: int


@dataclass(frozen=True)
class BatchFinalizedLog:
    """``BatchFinalized``."""

    index: int
    post_root: bytes
    block: int


BatchLog = BatchPostedLog | BatchRemovedLog | BatchFinalizedLog


def _word(topic: Any) -> int:
    return int.from_bytes(bytes(topic), "big")


def decode_batch_log(log: Any) -> BatchLog | None:
    """A rollup log as one of the batch events (None for any other log)."""
    topics = [bytes(t) for t in log["topics"]]
    if not topics:
        return None
    data = bytes(log["data"])
    block = int(log["blockNumber"])
    if topics[0] == BATCH_POSTED_TOPIC and len(topics) == 4:
        pre, post, data_hash, commitment, deadline = decode(
            ["bytes32", "bytes32", "bytes32", BATCH_DATA, "uint256"], data
        )
        return BatchPostedLog(
            _word(topics[1]), _word(topics[2]), Web3.to_checksum_address(topics[3][12:]), bytes(pre),
            bytes(post), bytes(data_hash), BatchData.from_abi(tuple(commitment)), int(deadline),
            bytes(log["transactionHash"]), block,
        )
    if topics[0] == BATCH_REMOVED_TOPIC and len(topics) == 3:
        (game,) = decode(["uint256"], data)
        return BatchRemovedLog(_word(topics[1]), _word(topics[2]), int(game), block)
    if topics[0] == BATCH_FINALIZED_TOPIC and len(topics) == 2:
        (root,) = decode(["bytes32"], data)
        return BatchFinalizedLog(_word(topics[1]), bytes(root), block)
    return None


def post_batch_bytes(tx: Any, rollup: str) -> bytes | None:
    """The batch bytes of a ``postBatch`` transaction sent to ``rollup``; None when the
    transaction is not one (the rollup requires its caller to be the transaction's sender,
    so a posted batch is a direct call in every transaction an EOA signs for itself)."""
    to = tx.get("to")
    if to is None or Web3.to_checksum_address(to) != Web3.to_checksum_address(rollup):
        return None
    raw = tx.get("input", tx.get("data", b""))
    data = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)
    if data[:4] != POST_BATCH_SELECTOR:
        return None
    try:
        batch, _root, _count = decode(["bytes", "bytes32", "uint256"], data[4:])
    except DecodingError:
        return None
    return bytes(batch)
