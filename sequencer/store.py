"""Closed batches and the checkpoint, on disk (docs/sequencer.md §6).

Layout of the store directory::

    CHECKPOINT                     the latest checkpoint (sequencer/checkpoint.py)
    CONFIRMED                      the highest batch index the publisher confirmed (decimal)
    batches/<index:020d>.batch     a closed batch, kept until the publisher confirms it

Every file is written as ``<name>.tmp`` and renamed into place: a file is
whole or absent. A closed batch is written when it is sealed, after the WAL
records that produced it are durable, and is fsynced at the next checkpoint
(before the checkpoint itself is written and fsynced): until then the WAL
after the previous checkpoint can rebuild it. Batch files at or beyond the
checkpoint's ``next_batch`` are batches that recovery seals again from the
WAL — identically, which it checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sequencer.checkpoint import (
    Checkpoint,
    decode_checkpoint,
    decode_closed_batch,
    encode_checkpoint,
    encode_closed_batch,
)
from sequencer.open_batch import ClosedBatch

__all__ = ["BatchStore"]

_SUFFIX = ".batch"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, sync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchStore:
    """The checkpoint file and the closed-but-unconfirmed batches of one sequencer.

    ``sync=False`` skips every fsync (tests only: a crash of the machine could
    then lose a checkpoint; a crash of the process cannot).
    """

    def __init__(self, directory: str | os.PathLike[str], *, sync: bool = True) -> None:
        self.directory = Path(directory)
        self.batches_dir = self.directory / "batches"
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        self.sync = sync
        for tmp in [*self.directory.glob("*.tmp"), *self.batches_dir.glob("*.tmp")]:
            tmp.unlink()
        self._unsynced: list[Path] = []
        try:
            self.confirmed = int((self.directory / "CONFIRMED").read_text())
        except FileNotFoundError:
            self.confirmed = -1
        """Batches with an index up to this one were confirmed (and are gone)."""

    @property
    def checkpoint_path(self) -> Path:
        """Where the checkpoint lives."""
        return self.directory / "CHECKPOINT"

    def load_checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint, or None for a fresh store (CheckpointError if damaged)."""
        try:
            data = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        return decode_checkpoint(data)

    def _batch_path(self, index: int) -> Path:
        return self.batches_dir / f"{index:020d}{_SUFFIX}"

    def put_batches(self, batches: Sequence[ClosedBatch]) -> None:
        """Write closed batches (those not confirmed already), without waiting for the disk.

        A batch file is a cache: recovery seals the same batch again from the
        durable WAL after the last checkpoint. :meth:`commit` makes every batch
        file durable before the checkpoint that stops covering them by the WAL.
        """
        for batch in batches:
            if batch.index <= self.confirmed:
                continue
            path = self._batch_path(batch.index)
            _write_file(path, encode_closed_batch(batch), False)
            self._unsynced.append(path)

    def commit(self, batches: Sequence[ClosedBatch], checkpoint: Checkpoint) -> None:
        """Write ``batches``, make every batch file durable, then write ``checkpoint``
        (the commit point), durably."""
        self.put_batches(batches)
        if self.sync:
            for path in self._unsynced:
                if path.exists():  # a confirmed batch may be gone already
                    _fsync_file(path)
            _fsync_dir(self.batches_dir)
        self._unsynced.clear()
        _write_file(self.checkpoint_path, encode_checkpoint(checkpoint), self.sync)
        if self.sync:
            _fsync_dir(self.directory)

    def get(self, index: int) -> ClosedBatch | None:
        """Stored batch ``index``, or None."""
        try:
            return self.load(index)
        except FileNotFoundError:
            return None

    def indices(self) -> list[int]:
        """Indices of the stored batches, ascending."""
        return sorted(
            int(p.name[: -len(_SUFFIX)]) for p in self.batches_dir.glob(f"*{_SUFFIX}")
        )

    def load(self, index: int) -> ClosedBatch:
        """Stored batch ``index`` (FileNotFoundError if confirmed or never stored)."""
        return decode_closed_batch(self._batch_path(index).read_bytes())

    def pending(self) -> list[ClosedBatch]:
        """Every stored (closed, unconfirmed) batch, oldest first."""
        return [self.load(i) for i in self.indices()]

    def confirm(self, upto: int) -> int:
        """Forget the batches with index ≤ ``upto`` (published and safe); returns how many.

        The confirmation itself is recorded first, so a batch that recovery seals
        again from the WAL is not handed to the publisher a second time.
        """
        if upto > self.confirmed:
            _write_file(self.directory / "CONFIRMED", str(upto).encode(), self.sync)
            if self.sync:
                _fsync_dir(self.directory)
            self.confirmed = upto
        removed = 0
        for index in self.indices():
            if index > upto:
                break
            self._batch_path(index).unlink()
            removed += 1
        if removed and self.sync:
            _fsync_dir(self.batches_dir)
        return removed
