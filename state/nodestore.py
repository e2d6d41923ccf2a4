"""Persistent, content-addressed store of trie nodes (hash -> RLP).

:class:`NodeStore` is the on-disk store (LMDB; docs/state-db.md has the
measurements behind the choice over SQLite, whose implementation
:class:`SqliteNodeStore` is kept for comparison). :class:`MemoryNodeStore` and
:class:`OverlayStore` have the same interface and keep everything in memory.

Besides nodes, every store has a small metadata area (``name -> bytes``),
written atomically with a batch of nodes when given to :meth:`put_many`
(e.g. ``put_many(nodes, meta={"root": root})``).

Nodes are never deleted: a node is immutable (its key is its hash), so
writing an existing node again is a no-op.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, cast, runtime_checkable

import lmdb

__all__ = [
    "LmdbNodeStore",
    "MemoryNodeStore",
    "NodeSource",
    "NodeStore",
    "NodeStoreClosedError",
    "NodeStoreLike",
    "OverlayStore",
    "SqliteNodeStore",
]

DEFAULT_MAP_SIZE: Final = 1 << 36
"""Initial LMDB map size (64 GiB of address space; the file grows as used)."""


class NodeStoreClosedError(RuntimeError):
    """The store was used after :meth:`close`."""


@runtime_checkable
class NodeSource(Protocol):
    """Anything that looks nodes up by hash."""

    def get(self, node_hash: bytes) -> bytes | None:
        """RLP of the node with this hash, or ``None``."""


@runtime_checkable
class NodeStoreLike(NodeSource, Protocol):
    """The interface shared by all node stores."""

    def put_many(
        self, nodes: Mapping[bytes, bytes], meta: Mapping[str, bytes] | None = None
    ) -> None:
        """Write ``nodes`` (and ``meta`` entries) in one atomic transaction."""

    def get_meta(self, name: str) -> bytes | None:
        """Metadata entry ``name``, or ``None``."""

    def set_meta(self, name: str, value: bytes) -> None:
        """Set metadata entry ``name`` (atomically, on its own)."""

    def close(self) -> None:
        """Release the store's resources."""


def _check_meta(meta: Mapping[str, bytes]) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in meta.items():
        if not isinstance(name, str) or not name:
            raise ValueError("metadata names must be non-empty strings")
        if not isinstance(value, bytes):
            raise ValueError("metadata values must be bytes")
        out.append((name.encode(), value))
    out.sort()
    return out


class _StoreBase:
    """Context-manager plumbing shared by the stores."""

    def close(self) -> None:
        """Release the store's resources."""

    def __enter__(self) -> _StoreBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LmdbNodeStore(_StoreBase):
    """Node store in an LMDB environment (a directory) at ``path``.

    Two named databases: ``nodes`` (hash -> RLP) and ``meta``. The reads of
    each thread share one read transaction (a snapshot), renewed after every
    write and by every :meth:`get_meta`; reads may run on several threads at
    once (a committing thread next to a reading one), writes on one. Commits are durable (``fsync``) unless ``sync=False``,
    which keeps them atomic and consistent but lets an operating-system crash
    undo the latest ones. The map grows automatically when full. Other
    processes may read the same path concurrently; one instance per path per
    process (LMDB forbids opening an environment twice in one process); not
    thread-safe.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
    ) -> None:
        """Open or create the store at ``path`` (a directory)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._env: lmdb.Environment | None = lmdb.open(
            str(self.path),
            map_size=map_size,
            max_dbs=2,
            sync=sync,
            metasync=sync,
            readahead=False,
        )
        self._nodes = self._env.open_db(b"nodes")
        self._meta = self._env.open_db(b"meta")
        self._local = threading.local()
        self._generation = 0
        """Bumped by every write: a thread's snapshot older than that is renewed."""

    def _environment(self) -> lmdb.Environment:
        if self._env is None:
            raise NodeStoreClosedError("node store is closed")
        return self._env

    def _reader(self) -> lmdb.Transaction:
        local = self._local
        txn: lmdb.Transaction | None = getattr(local, "txn", None)
        if txn is None or local.generation != self._generation:
            env = self._environment()
            if txn is not None:
                txn.abort()
            try:
                txn = env.begin(buffers=False)
            except lmdb.MapResizedError:
                # Another process grew the map: adopt its size.
                env.set_mapsize(0)
                txn = env.begin(buffers=False)
            local.txn = txn
            local.generation = self._generation
        return txn

    def _end_read(self) -> None:
        self._generation += 1
        txn: lmdb.Transaction | None = getattr(self._local, "txn", None)
        if txn is not None:
            txn.abort()
            self._local.txn = None

    def get(self, node_hash: bytes) -> bytes | None:
        """RLP of the node with this hash, or ``None``."""
        return cast("bytes | None", self._reader().get(node_hash, db=self._nodes))

    def get_meta(self, name: str) -> bytes | None:
        """Metadata entry ``name``, or ``None``.

        Also refreshes the read snapshot, so that a process that only reads
        sees what another process committed since.
        """
        self._end_read()
        return cast("bytes | None", self._reader().get(name.encode(), db=self._meta))

    def set_meta(self, name: str, value: bytes) -> None:
        """Set metadata entry ``name`` (atomically, on its own)."""
        self.put_many({}, meta={name: value})

    def put_many(
        self, nodes: Mapping[bytes, bytes], meta: Mapping[str, bytes] | None = None
    ) -> None:
        """Write ``nodes`` and ``meta`` entries in one atomic transaction."""
        items = sorted(nodes.items())
        meta_items = _check_meta(meta) if meta else []
        env = self._environment()
        self._end_read()
        while True:
            try:
                with env.begin(write=True) as txn:
                    if items:
                        txn.cursor(db=self._nodes).putmulti(items, overwrite=False)
                    for name, value in meta_items:
                        txn.put(name, value, db=self._meta)
                self._generation += 1  # snapshots renewed meanwhile predate this write
                return
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)

    def node_count(self) -> int:
        """Number of stored nodes."""
        return int(self._reader().stat(self._nodes)["entries"])

    def close(self) -> None:
        """Close the environment (idempotent)."""
        if self._env is not None:
            self._end_read()
            self._env.close()
            self._env = None


class SqliteNodeStore(_StoreBase):
    """Node store in an SQLite database (WAL mode) at ``path`` (a file).

    ``synchronous`` is the SQLite pragma: ``"FULL"`` (durable, the default)
    or ``"NORMAL"`` (a crash may lose the last commits, never consistency).
    Kept for comparison with :class:`LmdbNodeStore`; not thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        """Open or create the database at ``path``."""
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError("synchronous must be FULL, NORMAL or OFF")
        self.path = Path(path)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS nodes (h BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS meta (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise NodeStoreClosedError("node store is closed")
        return self._db

    def get(self, node_hash: bytes) -> bytes | None:
        """RLP of the node with this hash, or ``None``."""
        row = self._conn().execute("SELECT v FROM nodes WHERE h = ?", (node_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_meta(self, name: str) -> bytes | None:
        """Metadata entry ``name``, or ``None``."""
        row = self._conn().execute("SELECT v FROM meta WHERE k = ?", (name.encode(),)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, name: str, value: bytes) -> None:
        """Set metadata entry ``name`` (atomically, on its own)."""
        self.put_many({}, meta={name: value})

    def put_many(
        self, nodes: Mapping[bytes, bytes], meta: Mapping[str, bytes] | None = None
    ) -> None:
        """Write ``nodes`` and ``meta`` entries in one atomic transaction."""
        items = sorted(nodes.items())
        meta_items = _check_meta(meta) if meta else []
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO nodes (h, v) VALUES (?, ?)", items)
            db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", meta_items)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None


class MemoryNodeStore(_StoreBase):
    """In-memory node store with the same interface (for tests)."""

    def __init__(self) -> None:
        """An empty store."""
        self.nodes: dict[bytes, bytes] = {}
        self.meta: dict[str, bytes] = {}

    def get(self, node_hash: bytes) -> bytes | None:
        """RLP of the node with this hash, or ``None``."""
        return self.nodes.get(node_hash)

    def get_meta(self, name: str) -> bytes | None:
        """Metadata entry ``name``, or ``None``."""
        return self.meta.get(name)

    def set_meta(self, name: str, value: bytes) -> None:
        """Set metadata entry ``name``."""
        self.put_many({}, meta={name: value})

    def put_many(
        self, nodes: Mapping[bytes, bytes], meta: Mapping[str, bytes] | None = None
    ) -> None:
        """Add ``nodes`` and set ``meta`` entries."""
        meta_items = _check_meta(meta) if meta else []
        self.nodes.update(nodes)
        for name, value in meta_items:
            self.meta[name.decode()] = value


class OverlayStore(MemoryNodeStore):
    """Reads through to ``base``; keeps every write in memory.

    Use for replay: the base store is never written unless :meth:`flush` is
    called. :meth:`close` does not close the base.
    """

    def __init__(self, base: NodeSource) -> None:
        """An empty overlay over ``base`` (a node store or anything with get)."""
        super().__init__()
        self.base = base

    def get(self, node_hash: bytes) -> bytes | None:
        """Node from the overlay, else from the base store."""
        node = self.nodes.get(node_hash)
        if node is None:
            return self.base.get(node_hash)
        return node

    def get_meta(self, name: str) -> bytes | None:
        """Metadata from the overlay, else from the base store (if it has any)."""
        value = self.meta.get(name)
        if value is None and isinstance(self.base, NodeStoreLike):
            return self.base.get_meta(name)
        return value

    def flush(self) -> None:
        """Write the overlay's nodes and metadata to the base in one transaction."""
        if not isinstance(self.base, NodeStoreLike):
            raise TypeError("the base of this overlay is read-only")
        self.base.put_many(self.nodes, meta=self.meta)
        self.nodes = {}
        self.meta = {}


NodeStore = LmdbNodeStore
"""The on-disk node store (see docs/state-db.md for the choice)."""
