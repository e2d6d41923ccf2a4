"""The derivation's records on disk: one SQLite file in WAL mode (docs/node.md §3).

Tables: ``batches`` (one :class:`~node.batches.BatchRecord` per posted batch,
with the batch bytes while it is pending), ``queue_items`` (the bridge items
each derived batch consumed, so a batch's context is rebuilt without L1),
``checkpoints`` (the hash of recent L1 blocks the follower reached, to find
where a deep reorganisation forked) and ``meta`` (progress). Every method
that writes runs in one transaction; :meth:`RecordStore.transaction` groups
several (nested ones are savepoints), and :meth:`RecordStore.begin` /
:meth:`RecordStore.commit_outer` keep one open across many (the derivation's
grouped commits). Commits are durable (``synchronous=FULL``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from l1_contracts.bindings import BatchData, BatchStatus
from node.batches import BatchRecord, Verdict
from state.context import L1Deposit, L1Forced

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    idx INTEGER PRIMARY KEY,
    parent INTEGER NOT NULL,
    proposer TEXT NOT NULL,
    posted_pre BLOB NOT NULL,
    posted_post BLOB NOT NULL,
    pre BLOB NOT NULL,
    computed BLOB NOT NULL,
    verdict INTEGER NOT NULL,
    l1 INTEGER NOT NULL,
    data BLOB NOT NULL,
    deadline INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    block INTEGER NOT NULL,
    removed_block INTEGER,
    finalized_block INTEGER,
    refused INTEGER NOT NULL,
    note TEXT NOT NULL,
    raw BLOB
);
CREATE INDEX IF NOT EXISTS batches_l1 ON batches (l1, idx);
CREATE TABLE IF NOT EXISTS queue_items (
    queue INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    who BLOB NOT NULL,
    amount BLOB,
    payload BLOB,
    PRIMARY KEY (queue, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (block INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

DEPOSITS = 1
FORCED = 2

_COLUMNS = (
    "idx, parent, proposer, posted_pre, posted_post, pre, computed, verdict, l1, data, deadline, "
    "tx_hash, block, removed_block, finalized_block, refused, note"
)

Row = tuple[
    int, int, str, bytes, bytes, bytes, bytes, int, int, bytes, int, bytes, int, int | None, int | None, int, str
]


def _record(row: Row) -> BatchRecord:
    return BatchRecord(
        index=row[0], parent=row[1], proposer=row[2], posted_pre_root=row[3], posted_root=row[4],
        pre_root=row[5], computed_root=row[6], verdict=Verdict(row[7]), l1_status=BatchStatus(row[8]),
        data=BatchData.decode(row[9]), deadline=row[10], tx_hash=row[11], block=row[12],
        removed_block=row[13], finalized_block=row[14], refused_steps=row[15], note=row[16],
    )


class RecordStore:
    """The derivation's SQLite file. One writer; not thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes inside into one atomic transaction.

        Nests: an inner transaction is a savepoint, so an inner failure undoes
        only its own writes and the outer transaction goes on."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._depth > 0

    def begin(self) -> None:
        """Open a transaction (a savepoint inside an open one); end it with :meth:`commit` or :meth:`rollback`."""
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        else:
            self._db.execute(f"SAVEPOINT s{self._depth}")
        self._depth += 1

    def commit(self) -> None:
        """End the innermost transaction, keeping its writes (durable once the outermost ends)."""
        if self._depth == 0:
            raise RuntimeError("no transaction to commit")
        self._depth -= 1
        if self._depth > 0:
            self._db.execute(f"RELEASE s{self._depth}")
            return
        try:
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def rollback(self) -> None:
        """End the innermost transaction, undoing its writes."""
        if self._depth == 0:
            raise RuntimeError("no transaction to roll back")
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("ROLLBACK")
        else:
            self._db.execute(f"ROLLBACK TO s{self._depth}")
            self._db.execute(f"RELEASE s{self._depth}")

    def commit_outer(self) -> None:
        """Make the writes of the open outermost transaction durable and open a new one
        (only between inner transactions)."""
        if self._depth != 1:
            raise RuntimeError("commit_outer needs exactly the outermost transaction open")
        self._db.execute("COMMIT")
        self._db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    # -------------------------------------------------------- batches

    def put(self, record: BatchRecord, raw: bytes | None = None, *, keep_raw: bool = False) -> None:
        """Insert or replace ``record``; ``raw`` is stored with it (``keep_raw`` keeps the stored bytes)."""
        r = record
        with self.transaction():
            if keep_raw:
                raw = self.raw(r.index)
            self._db.execute(
                f"INSERT OR REPLACE INTO batches ({_COLUMNS}, raw) VALUES ({', '.join('?' * 18)})",
                (
                    r.index, r.parent, r.proposer, r.posted_pre_root, r.posted_root, r.pre_root,
                    r.computed_root, int(r.verdict), int(r.l1_status), r.data.encode(), r.deadline,
                    r.tx_hash, r.block, r.removed_block, r.finalized_block, r.refused_steps, r.note, raw,
                ),
            )

    def get(self, index: int) -> BatchRecord | None:
        """The record of batch ``index``."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM batches WHERE idx = ?", (index,)).fetchone()
        return None if row is None else _record(row)

    def raw(self, index: int) -> bytes | None:
        """The stored bytes of batch ``index`` (kept while it is not final)."""
        row = self._db.execute("SELECT raw FROM batches WHERE idx = ?", (index,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def set_raw(self, index: int, raw: bytes | None) -> None:
        """Store or drop the bytes of batch ``index``."""
        self._db.execute("UPDATE batches SET raw = ? WHERE idx = ?", (raw, index))

    def records(self, start: int = 0, *, status: BatchStatus | None = None) -> list[BatchRecord]:
        """Records with index ``>= start`` (of one L1 status when given), by index."""
        if status is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM batches WHERE idx >= ? ORDER BY idx", (start,))
        else:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM batches WHERE idx >= ? AND l1 = ? ORDER BY idx", (start, int(status))
            )
        return [_record(row) for row in rows.fetchall()]

    def head_index(self) -> int | None:
        """The highest index not removed (the canonical head), None when empty."""
        row = self._db.execute(
            "SELECT MAX(idx) FROM batches WHERE l1 != ?", (int(BatchStatus.REMOVED),)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def posted_after(self, block: int) -> list[int]:
        """Indices of batches posted in blocks after ``block``."""
        return [int(r[0]) for r in self._db.execute("SELECT idx FROM batches WHERE block > ?", (block,))]

    def delete(self, indices: Iterable[int]) -> None:
        """Drop records."""
        self._db.executemany("DELETE FROM batches WHERE idx = ?", [(i,) for i in indices])

    # -------------------------------------------------------- queue items

    def put_items(self, deposits: dict[int, L1Deposit], forced: dict[int, L1Forced]) -> None:
        """Store queue items (an index already stored keeps its item)."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO queue_items (queue, idx, who, amount) VALUES (?, ?, ?, ?)",
                [(DEPOSITS, i, d.owner, d.amount.to_bytes(32, "big")) for i, d in deposits.items()],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO queue_items (queue, idx, who, payload) VALUES (?, ?, ?, ?)",
                [(FORCED, i, f.sender, f.payload) for i, f in forced.items()],
            )

    def deposits(self, start: int, end: int) -> dict[int, L1Deposit]:
        """Stored deposit items in ``[start, end)``."""
        rows = self._db.execute(
            "SELECT idx, who, amount FROM queue_items WHERE queue = ? AND idx >= ? AND idx < ?",
            (DEPOSITS, start, end),
        )
        return {int(i): L1Deposit(bytes(w), int.from_bytes(a, "big")) for i, w, a in rows.fetchall()}

    def forced(self, start: int, end: int) -> dict[int, L1Forced]:
        """Stored forced items in ``[start, end)``."""
        rows = self._db.execute(
            "SELECT idx, who, payload FROM queue_items WHERE queue = ? AND idx >= ? AND idx < ?",
            (FORCED, start, end),
        )
        return {int(i): L1Forced(bytes(w), bytes(p)) for i, w, p in rows.fetchall()}

    def drop_items_from(self, deposit_start: int, forced_start: int) -> None:
        """Forget queue items at or after the given indices (after a deep reorganisation)."""
        with self.transaction():
            self._db.execute("DELETE FROM queue_items WHERE queue = ? AND idx >= ?", (DEPOSITS, deposit_start))
            self._db.execute("DELETE FROM queue_items WHERE queue = ? AND idx >= ?", (FORCED, forced_start))

    # -------------------------------------------------------- checkpoints and meta

    def add_checkpoint(self, block: int, block_hash: bytes, keep: int) -> None:
        """Remember ``block``'s hash; keeps the ``keep`` latest checkpoints."""
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (block, block_hash))
            self._db.execute(
                "DELETE FROM checkpoints WHERE block NOT IN "
                "(SELECT block FROM checkpoints ORDER BY block DESC LIMIT ?)", (keep,),
            )

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """(block, hash) pairs, newest first."""
        rows = self._db.execute("SELECT block, hash FROM checkpoints ORDER BY block DESC")
        return [(int(b), bytes(h)) for b, h in rows.fetchall()]

    def drop_checkpoints_after(self, block: int) -> None:
        """Forget checkpoints above ``block``."""
        self._db.execute("DELETE FROM checkpoints WHERE block > ?", (block,))

    def get_meta(self, name: str) -> bytes | None:
        """A metadata value."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, name: str, value: bytes) -> None:
        """Set a metadata value."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
