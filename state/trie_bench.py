"""Benchmarks of the trie commit and of the node stores.

``python -m state.trie_bench [n]`` prints the figures; a benchmark script can
call :func:`bench_commit_leaves`, :func:`bench_naive_trie_updates` and
:func:`bench_store` directly. Random inputs come from a seeded generator, so
every run builds the same tries.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from state.nodestore import LmdbNodeStore, NodeStoreLike, SqliteNodeStore
from state.trie import TrieDB

__all__ = [
    "BATCH_SIZE",
    "VALUE_SIZE",
    "bench_commit_leaves",
    "bench_naive_trie_updates",
    "bench_store",
    "main",
]

BATCH_SIZE = 4_000
"""Dirty leaves per commit in :func:`bench_commit_leaves`."""

VALUE_SIZE = 100
"""Leaf value size in bytes."""


def _random_items(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [(rng.randbytes(32), rng.randbytes(VALUE_SIZE)) for _ in range(n)]


def bench_commit_leaves(
    n: int, *, batch_size: int = BATCH_SIZE, sync: bool = True, seed: int = 1
) -> float:
    """Leaves/s committing ``n`` random leaves in batches into a fresh on-disk trie.

    Each batch holds ``batch_size`` random 32-byte keys with 100-byte values
    and is committed with :meth:`TrieDB.commit` (new nodes and root written in
    one transaction, fsynced unless ``sync=False``) into a growing trie in a
    fresh temporary LMDB store. The time covers the commits only.
    """
    items = _random_items(n, seed)
    with tempfile.TemporaryDirectory(prefix="hfx-bench-") as tmp:
        db = TrieDB.open(Path(tmp) / "state", sync=sync)
        try:
            start = time.perf_counter()
            for i in range(0, n, batch_size):
                db.commit(dict(items[i : i + batch_size]))
            elapsed = time.perf_counter() - start
        finally:
            db.close()
    return n / elapsed


def bench_naive_trie_updates(n: int, *, seed: int = 1) -> float:
    """Updates/s of per-key ``trie.HexaryTrie`` inserts of ``n`` random leaves (dict DB)."""
    from trie.hexary import HexaryTrie

    items = _random_items(n, seed)
    trie = HexaryTrie({})
    start = time.perf_counter()
    for key, value in items:
        trie[key] = value
    elapsed = time.perf_counter() - start
    return n / elapsed


def bench_store(
    kind: str,
    n: int = 100_000,
    *,
    batch: int = 10_000,
    reads: int = 100_000,
    trie_batch: int = 12_000,
    seed: int = 2,
) -> dict[str, float]:
    """Measure a node store: bulk put, random gets and commit latencies.

    ``kind`` is ``"lmdb"``, ``"lmdb-nosync"``, ``"sqlite-full"`` or
    ``"sqlite-normal"``. Writes ``n`` nodes (32-byte keys, 100-530 byte
    values: the sizes of leaves and branches) in commits of ``batch``, then
    does ``reads`` random gets, then 30 commits of 10 nodes plus a root, then
    5 commits of ``trie_batch`` nodes plus a root (the nodes one commit of
    4,000 random leaves writes into a trie of this size). Returns
    ``put_nodes_per_s``, ``get_per_s``, ``small_commit_ms`` and
    ``trie_commit_ms`` (medians) and ``bytes_on_disk``.
    """
    rng = random.Random(seed)

    def nodes(count: int) -> dict[bytes, bytes]:
        return {rng.randbytes(32): rng.randbytes(rng.choice(_NODE_SIZES)) for _ in range(count)}

    with tempfile.TemporaryDirectory(prefix="hfx-store-") as tmp:
        store = _open_store(kind, Path(tmp))
        try:
            batches = [nodes(min(batch, n - i)) for i in range(0, n, batch)]
            start = time.perf_counter()
            for chunk in batches:
                store.put_many(chunk)
            put_rate = n / (time.perf_counter() - start)

            keys = [key for chunk in batches for key in chunk]
            probe = [keys[rng.randrange(n)] for _ in range(reads)]
            get = store.get
            start = time.perf_counter()
            for key in probe:
                get(key)
            get_rate = reads / (time.perf_counter() - start)

            small = _commit_times(store, [nodes(10) for _ in range(30)], rng)
            large = _commit_times(store, [nodes(trie_batch) for _ in range(5)], rng)
        finally:
            store.close()
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return {
        "put_nodes_per_s": put_rate,
        "get_per_s": get_rate,
        "small_commit_ms": small,
        "trie_commit_ms": large,
        "bytes_on_disk": float(size),
    }


_NODE_SIZES = (140, 140, 140, 200, 300, 530)


def _commit_times(store: NodeStoreLike, batches: list[dict[bytes, bytes]], rng: random.Random) -> float:
    """Median milliseconds of ``put_many(batch, meta={"root": ...})``."""
    times = []
    for chunk in batches:
        start = time.perf_counter()
        store.put_many(chunk, meta={"root": rng.randbytes(32)})
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000


def _open_store(kind: str, tmp: Path) -> NodeStoreLike:
    openers: dict[str, Callable[[], NodeStoreLike]] = {
        "lmdb": lambda: LmdbNodeStore(tmp / "lmdb"),
        "lmdb-nosync": lambda: LmdbNodeStore(tmp / "lmdb", sync=False),
        "sqlite-full": lambda: SqliteNodeStore(tmp / "db.sqlite", synchronous="FULL"),
        "sqlite-normal": lambda: SqliteNodeStore(tmp / "db.sqlite", synchronous="NORMAL"),
    }
    if kind not in openers:
        raise ValueError(f"unknown store kind {kind!r}")
    return openers[kind]()


def main(argv: list[str] | None = None) -> None:
    """Print commit and store figures (``argv``: optional leaf count)."""
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 100_000
    fast = bench_commit_leaves(n)
    fast_nosync = bench_commit_leaves(n, sync=False)
    naive = bench_naive_trie_updates(n)
    print(f"commit (fsync): {fast:,.0f} leaves/s ({n:,} leaves, batches of {BATCH_SIZE:,})")
    print(f"commit (no fsync): {fast_nosync:,.0f} leaves/s")
    print(f"naive HexaryTrie: {naive:,.0f} updates/s ({n:,} leaves)")
    print(f"ratio: {fast / naive:.1f}x (fsync), {fast_nosync / naive:.1f}x (no fsync)")
    for kind in ("lmdb", "lmdb-nosync", "sqlite-full", "sqlite-normal"):
        figures = bench_store(kind)
        print(
            f"{kind:>14}: put {figures['put_nodes_per_s']:,.0f} nodes/s, "
            f"get {figures['get_per_s']:,.0f}/s, "
            f"commit 10 nodes {figures['small_commit_ms']:.2f} ms, "
            f"commit 12k nodes {figures['trie_commit_ms']:.1f} ms, "
            f"{figures['bytes_on_disk'] / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
