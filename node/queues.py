"""The STF's view of the bridge's queues, read from L1 (docs/stf.md §3, docs/l1.md §2).

- :class:`BoundedQueues` bounds any :class:`~state.context.L1Queues` by one
  batch's ``deposit_end`` / ``forced_end``: ``deposit(i)`` is none for
  ``i >= deposit_end`` whatever the bridge holds, as on L1. Every batch is
  derived through its own bounded view, so the result does not depend on when
  the bridge is read.
- :class:`CachedQueues` is an ``L1Queues`` over a :class:`QueueReader` (the
  bridge's ``depositAt`` / ``forcedAt``) with a bounded cache; a batch's
  ranges are fetched in one go with :meth:`CachedQueues.prefetch`.
- :class:`BridgeReader` reads the bridge through :class:`node.l1.L1Client`
  with raw ``eth_call``\\ s, a range at a time in one JSON-RPC batch, without
  compiling the contract.

Queue items never change once queued (the queues are append-only), so a
cached item stays right as long as L1 does not reorganise below the block
that queued it; the follower clears the cache when it rolls back (docs/node.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from eth_abi.abi import decode, encode

from node.l1 import L1Client
from state.context import L1Deposit, L1Forced, L1Queues
from state.keccak import keccak256

DEPOSIT_AT = keccak256(b"depositAt(uint256)")[:4]
FORCED_AT = keccak256(b"forcedAt(uint256)")[:4]


_Item = TypeVar("_Item", L1Deposit, L1Forced)


class QueueReader(Protocol):
    """Reads items of the bridge's queues by index, in ranges."""

    def deposits(self, start: int, end: int) -> list[L1Deposit]:
        """Deposit-queue items ``[start, end)``; raises when one does not exist."""
        ...

    def forced(self, start: int, end: int) -> list[L1Forced]:
        """Forced-queue items ``[start, end)``; raises when one does not exist."""
        ...


class BoundedQueues:
    """An ``L1Queues`` that ends at a batch's queue ends (docs/stf.md §3)."""

    def __init__(self, source: L1Queues, deposit_end: int, forced_end: int) -> None:
        self.source = source
        self.deposit_end = deposit_end
        self.forced_end = forced_end

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at ``index``, or None at or past ``deposit_end``."""
        return self.source.deposit(index) if 0 <= index < self.deposit_end else None

    def forced(self, index: int) -> L1Forced | None:
        """The forced transaction at ``index``, or None at or past ``forced_end``."""
        return self.source.forced(index) if 0 <= index < self.forced_end else None


class CachedQueues:
    """An ``L1Queues`` over a :class:`QueueReader`, keeping up to ``capacity`` items per queue.

    A read of an item the reader does not have (past the end of the bridge's
    queue) returns None, as ``L1Queues`` requires; every other reader error
    propagates (a node must not derive a batch from a queue it could not read)."""

    def __init__(self, reader: QueueReader, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.reader = reader
        self.capacity = capacity
        self._deposits: OrderedDict[int, L1Deposit] = OrderedDict()
        self._forced: OrderedDict[int, L1Forced] = OrderedDict()
        self.reads = 0
        """Reader calls made so far (for tests and monitoring)."""

    def prefetch(self, deposits: tuple[int, int], forced: tuple[int, int]) -> None:
        """Fetch the items of the two ranges ``[start, end)`` not cached yet, one reader call per queue."""
        self._fill(self._deposits, deposits, self.reader.deposits)
        self._fill(self._forced, forced, self.reader.forced)

    def _fill(self, cache: OrderedDict[int, _Item], span: tuple[int, int], read: Callable[[int, int], Sequence[_Item]]) -> None:
        start, end = span
        missing = [i for i in range(start, end) if i not in cache]
        if not missing:
            return
        lo, hi = missing[0], missing[-1] + 1
        self.reads += 1
        for offset, item in enumerate(read(lo, hi)):
            self._put(cache, lo + offset, item)

    def _put(self, cache: OrderedDict[int, _Item], index: int, item: _Item) -> None:
        cache[index] = item
        cache.move_to_end(index)
        while len(cache) > self.capacity:
            cache.popitem(last=False)

    def _get(self, cache: OrderedDict[int, _Item], index: int, read: Callable[[int, int], Sequence[_Item]]) -> _Item | None:
        if index < 0:
            return None
        hit = cache.get(index)
        if hit is not None:
            cache.move_to_end(index)
            return hit
        self.reads += 1
        try:
            items = read(index, index + 1)
        except LookupError:
            return None
        if not items:
            return None
        self._put(cache, index, items[0])
        return items[0]

    def deposit(self, index: int) -> L1Deposit | None:
        """Deposit-queue item ``index``, or None when the bridge has none."""
        return self._get(self._deposits, index, self.reader.deposits)

    def forced(self, index: int) -> L1Forced | None:
        """Forced-queue item ``index``, or None when the bridge has none."""
        return self._get(self._forced, index, self.reader.forced)

    def clear(self) -> None:
        """Forget every cached item (after an L1 reorganisation)."""
        self._deposits.clear()
        self._forced.clear()


class NoSuchItem(LookupError):
    """The bridge has no item at the index read (``NO_ITEM``)."""


class QueueReadError(RuntimeError):
    """The node answered a queue read with an error other than a revert."""


class BridgeReader:
    """Reads the bridge's queues with raw ``eth_call``\\ s (a range in one JSON-RPC batch).

    ``block`` pins the reads to a block (a number or a tag); "latest" is right
    for items consumed by confirmed batches, which were queued before them."""

    def __init__(self, l1: L1Client, bridge: str, *, block: int | str = "latest", chunk: int = 200) -> None:
        self.l1 = l1
        self.bridge = l1.w3.to_checksum_address(bridge)
        self.block = block
        self.chunk = chunk

    def _calls(self, selector: bytes, start: int, end: int) -> list[bytes]:
        tag = self.block if isinstance(self.block, str) else hex(self.block)
        out: list[bytes] = []
        for lo in range(start, end, self.chunk):
            hi = min(end, lo + self.chunk)
            calls = [
                ("eth_call", [{"to": self.bridge, "data": "0x" + (selector + encode(["uint256"], [i])).hex()}, tag])
                for i in range(lo, hi)
            ]
            for i, reply in zip(range(lo, hi), self.l1.provider.batch(calls), strict=True):
                error = reply.get("error")
                if error is not None:
                    text = str(error.get("message", error) if isinstance(error, dict) else error)
                    if "revert" in text.lower():
                        raise NoSuchItem(f"bridge has no queue item {i}: {text}")
                    raise QueueReadError(f"reading queue item {i}: {text}")
                if reply.get("result") in (None, "0x"):
                    raise NoSuchItem(f"bridge has no queue item {i}")
                out.append(bytes.fromhex(str(reply["result"])[2:]))
        return out

    def deposits(self, start: int, end: int) -> list[L1Deposit]:
        """Deposit-queue items ``[start, end)``."""
        items = []
        for raw in self._calls(DEPOSIT_AT, start, end):
            owner, amount, _time = decode(["address", "uint256", "uint256"], raw)
            items.append(L1Deposit(bytes.fromhex(str(owner)[2:]), int(amount)))
        return items

    def forced(self, start: int, end: int) -> list[L1Forced]:
        """Forced-queue items ``[start, end)``."""
        items = []
        for raw in self._calls(FORCED_AT, start, end):
            ((sender, payload, _time),) = decode(["(address,bytes,uint256)"], raw)
            items.append(L1Forced(bytes.fromhex(str(sender)[2:]), bytes(payload)))
        return items
