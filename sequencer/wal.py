"""Write-ahead log: an acknowledged record is never lost by a crash.

The log is a directory of append-only segment files. Records get consecutive
sequence numbers starting at 1. ``append`` only buffers a record in memory;
``sync`` (or ``await commit``) writes every buffered record and makes it
durable with one ``fdatasync``, so one fsync covers every record appended
before it (group commit).

On-disk format (all integers little-endian; docs/wal.md has the full story)::

    segment file  <first_seq:020d>.wal
      header      magic b"HFXWAL\\x00\\x01" | first_seq u64 | crc32 u32   (20 bytes)
      records     length u32 | crc32 u32 | seq u64 | payload[length]      (16 + length)

A record's crc32 covers ``length | seq | payload``. A segment is created under a
temporary name, with its header written and synced, and then renamed, so a
segment file either has a whole header or does not exist.

Opening a log recovers it: every segment is scanned, and the first invalid
record (short, bad crc, unexpected seq, oversized length) ends the log. The
bytes from there on are moved aside to ``*.damaged`` files (never deleted) and
the segment is truncated, so appends continue from the last intact record. A
torn tail left by a crash is the common case; anything else is reported in
``WriteAheadLog.damage`` as well.

Concurrency: ``append`` and ``sync`` are thread-safe. The asyncio API runs the
write and the fsync in a private worker thread; a committer that finds no
flush in progress starts one, every other committer waits for it, and a flush
that ends with records appended meanwhile starts the next one at once (those
it did not cover wait for that one).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

MAGIC = b"HFXWAL\x00\x01"
SEGMENT_HEADER = struct.Struct("<8sQI")
RECORD_HEADER = struct.Struct("<IIQ")
_LEN_SEQ = struct.Struct("<IQ")
SEGMENT_SUFFIX = ".wal"
DAMAGED_SUFFIX = ".damaged"
DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_MAX_RECORD_BYTES = 16 << 20


class WalError(Exception):
    """The log cannot be used: bad arguments, a closed log, or a failed fsync."""


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One record read back from the log."""

    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class WalDamage:
    """Where recovery found the log's end to be invalid, and what it did about it.

    ``reason`` is one of ``"truncated header"``, ``"truncated payload"``,
    ``"oversized length"``, ``"bad crc"``, ``"bad seq"``, ``"bad segment header"``,
    ``"segment gap"``. ``at_tail`` is true when the invalid bytes run to the end of
    the last segment: the signature of a crash during a write (a torn tail).
    ``moved_to`` lists the ``*.damaged`` files that hold the bytes cut off.
    """

    segment: str
    offset: int
    seq: int
    reason: str
    at_tail: bool
    dropped_bytes: int
    moved_to: tuple[str, ...] = ()


@dataclass(slots=True)
class WalStats:
    """Counters since the log was opened."""

    records: int = 0
    bytes_written: int = 0
    fsyncs: int = 0
    flushes: int = 0
    segments_created: int = 0
    segments_removed: int = 0


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    records: int = 0


@dataclass(slots=True)
class _Scan:
    """The outcome of scanning one segment's bytes."""

    records: list[WalRecord] = field(default_factory=list)
    end: int = 0
    next_seq: int = 0
    reason: str | None = None
    at_eof: bool = False


def encode_record(seq: int, payload: bytes) -> bytes:
    """Frame ``payload`` as record ``seq``: ``length | crc32 | seq | payload``."""
    length = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(_LEN_SEQ.pack(length, seq)))
    return RECORD_HEADER.pack(length, crc, seq) + payload


def encode_segment_header(first_seq: int) -> bytes:
    """The 20-byte header of a segment whose first record is ``first_seq``."""
    body = struct.pack("<8sQ", MAGIC, first_seq)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_segment_header(data: bytes) -> int | None:
    """The first seq named by a segment header, or None if it is not a valid header."""
    if len(data) < SEGMENT_HEADER.size:
        return None
    magic, first_seq, crc = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != MAGIC or crc != zlib.crc32(data[: SEGMENT_HEADER.size - 4]):
        return None
    return int(first_seq)


def scan_records(
    data: bytes, offset: int, expected_seq: int, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[int, WalRecord | str]]:
    """Decode consecutive records from ``data[offset:]``, starting at ``expected_seq``.

    Yields ``(offset, record)`` for each intact record, then, if the bytes do not
    end exactly at a record boundary, one ``(offset, reason)`` naming why decoding
    stopped there. Never raises on any input.
    """
    view = memoryview(data)
    seq = expected_seq
    pos = offset
    size = len(data)
    while pos < size:
        if size - pos < RECORD_HEADER.size:
            yield pos, "truncated header"
            return
        length, crc, rec_seq = RECORD_HEADER.unpack_from(data, pos)
        if length > max_record_bytes:
            yield pos, "oversized length"
            return
        start = pos + RECORD_HEADER.size
        if size - start < length:
            yield pos, "truncated payload"
            return
        payload = view[start : start + length]
        if zlib.crc32(payload, zlib.crc32(_LEN_SEQ.pack(length, rec_seq))) != crc:
            yield pos, "bad crc"
            return
        if rec_seq != seq:
            yield pos, "bad seq"
            return
        yield pos, WalRecord(seq, bytes(payload))
        seq += 1
        pos = start + length


def _scan_segment(data: bytes, first_seq: int, max_record_bytes: int) -> _Scan:
    out = _Scan(end=SEGMENT_HEADER.size, next_seq=first_seq)
    for pos, item in scan_records(data, SEGMENT_HEADER.size, first_seq, max_record_bytes):
        if isinstance(item, str):
            out.reason = item
            out.end = pos
            out.at_eof = item in ("truncated header", "truncated payload") or (
                item != "oversized length" and _runs_to_eof(data, pos)
            )
            return out
        out.records.append(item)
        out.next_seq = item.seq + 1
        out.end = pos + RECORD_HEADER.size + len(item.payload)
    out.end = len(data)
    return out


def _runs_to_eof(data: bytes, pos: int) -> bool:
    """Whether the invalid record at ``pos`` is the last thing in the file."""
    length: int = RECORD_HEADER.unpack_from(data, pos)[0]
    return pos + RECORD_HEADER.size + length >= len(data)


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync = getattr(os, "fdatasync", os.fsync)


class WriteAheadLog:
    """An append-only, segmented, crash-safe record log with group commit.

    ``directory`` is created if absent. ``segment_bytes`` is the size after which
    a new segment is started (a segment always holds at least one record);
    ``max_record_bytes`` bounds one payload. Opening recovers the log (see the
    module docstring); ``damage`` reports what recovery cut off, if anything.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if segment_bytes < SEGMENT_HEADER.size + RECORD_HEADER.size:
            raise WalError("segment_bytes is too small")
        if not 0 <= max_record_bytes < 1 << 32:
            raise WalError("max_record_bytes must fit in a u32")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_record_bytes = max_record_bytes
        self.stats = WalStats()
        self.damage: WalDamage | None = None
        self._mu = threading.Lock()  # guards _pending and _next_seq
        self._io = threading.Lock()  # guards the files, _segments and _fd
        self._pending: list[tuple[int, bytes]] = []
        self._segments: list[_Segment] = []
        self._fd = -1
        self._unsynced = False
        self._failed: BaseException | None = None
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._flush_task: asyncio.Future[None] | None = None
        self._committers: list[asyncio.Future[None]] = []
        """The futures of the committers waiting for the running flush."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._lock_directory()
        try:
            self._next_seq = self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._durable_seq = self._next_seq - 1

    def _lock_directory(self) -> int:
        """Hold an exclusive lock on ``<dir>/LOCK``: one writer per log at a time."""
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WalError(f"{self.directory} is in use by another WriteAheadLog") from None
        return fd

    # -- properties -----------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The seq of the oldest record still kept (== ``next_seq`` if the log is empty)."""
        with self._io:
            return self._segments[0].first_seq

    @property
    def next_seq(self) -> int:
        """The seq the next ``append`` will return."""
        return self._next_seq

    @property
    def last_seq(self) -> int:
        """The seq of the last appended record (0 if none was ever appended)."""
        return self._next_seq - 1

    @property
    def durable_seq(self) -> int:
        """Every record up to and including this seq is on stable storage."""
        return self._durable_seq

    # -- recovery ---------------------------------------------------------------

    def _recover(self) -> int:
        for tmp in self.directory.glob(f"*{SEGMENT_SUFFIX}.tmp"):
            tmp.unlink()
        paths = sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))
        next_seq: int | None = None
        resume = 1
        for index, path in enumerate(paths):
            data = path.read_bytes()
            first = decode_segment_header(data)
            damage: tuple[int, int, str, bool] | None = None  # offset, seq, reason, at_tail
            last = index == len(paths) - 1
            if first is None:
                damage = (0, next_seq or self._seq_from_name(path), "bad segment header", False)
            elif next_seq is not None and first != next_seq:
                damage = (0, next_seq, "segment gap", False)
            else:
                scan = _scan_segment(data, first, self.max_record_bytes)
                self._segments.append(_Segment(first, path, scan.end, len(scan.records)))
                next_seq = scan.next_seq
                if scan.reason is not None:
                    damage = (scan.end, scan.next_seq, scan.reason, last and scan.at_eof)
            if damage is not None:
                self._cut(paths[index:], data, *damage)
                resume = damage[1]
                break
        if not self._segments:
            self._create_segment(resume)
        active = self._segments[-1]
        self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return next_seq if next_seq is not None else active.first_seq

    @staticmethod
    def _seq_from_name(path: Path) -> int:
        stem = path.name[: -len(SEGMENT_SUFFIX)]
        return int(stem) if stem.isdigit() and int(stem) > 0 else 1

    def _cut(
        self, paths: list[Path], data: bytes, offset: int, seq: int, reason: str, at_tail: bool
    ) -> None:
        """Move everything from ``paths[0]`` at ``offset`` onwards into ``*.damaged`` files."""
        moved: list[str] = []
        dropped = len(data) - offset
        head = paths[0]
        if offset > 0:
            if dropped:
                aside = self._aside(head)
                aside.write_bytes(data[offset:])
                moved.append(aside.name)
                with open(head, "r+b") as fh:
                    fh.truncate(offset)
                    fh.flush()
                    os.fsync(fh.fileno())
            rest = paths[1:]
        else:
            rest = paths
        for path in rest:
            if path != head:
                dropped += path.stat().st_size
            aside = self._aside(path)
            path.rename(aside)
            moved.append(aside.name)
        _fsync_dir(self.directory)
        self.damage = WalDamage(head.name, offset, seq, reason, at_tail, dropped, tuple(moved))
        if dropped:
            level = logging.INFO if at_tail else logging.ERROR
            log.log(level, "wal recovery: %s at %s+%d (seq %d); %d bytes moved aside to %s",
                    reason, head.name, offset, seq, dropped, moved)

    def _aside(self, path: Path) -> Path:
        n = 0
        while True:
            aside = path.with_name(f"{path.name}.{n}{DAMAGED_SUFFIX}")
            if not aside.exists():
                return aside
            n += 1

    def _create_segment(self, first_seq: int) -> None:
        """Create a segment atomically (header written and synced before it appears)."""
        path = self.directory / _segment_name(first_seq)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, encode_segment_header(first_seq))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        self._segments.append(_Segment(first_seq, path, SEGMENT_HEADER.size, 0))
        self.stats.segments_created += 1

    # -- sync API ---------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Buffer one record and return its seq. Not durable until ``sync``/``commit``."""
        if len(payload) > self.max_record_bytes:
            raise WalError(f"record of {len(payload)} bytes exceeds {self.max_record_bytes}")
        self._check_usable()
        with self._mu:
            seq = self._next_seq
            self._pending.append((seq, encode_record(seq, payload)))
            self._next_seq = seq + 1
        return seq

    def sync(self) -> int:
        """Write every buffered record and fsync; returns the durable seq.

        One fsync covers every record appended before the call. Blocks while
        another flush (e.g. one started by ``commit``) is in progress.
        """
        self._check_usable()
        return self._flush()

    def _flush(self) -> int:
        with self._io:
            if self._failed is not None:
                raise WalError("the log failed earlier") from self._failed
            with self._mu:
                batch, self._pending = self._pending, []
                target = self._next_seq - 1
            try:
                self._write(batch)
                if self._unsynced:
                    _datasync(self._fd)
                    self._unsynced = False
                    self.stats.fsyncs += 1
            except BaseException as exc:
                # After a failed write or fsync the kernel may have dropped the
                # dirty pages: nothing later can be trusted to reach the disk.
                self._failed = exc
                raise WalError(f"write-ahead log failed: {exc}") from exc
            self.stats.flushes += 1
            if target > self._durable_seq:
                self._durable_seq = target
            return self._durable_seq

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        chunk: list[bytes] = []
        for seq, frame in batch:
            active = self._segments[-1]
            if active.records and active.size + len(frame) > self.segment_bytes:
                self._write_chunk(chunk)
                chunk = []
                self._rotate(seq)
                active = self._segments[-1]
            chunk.append(frame)
            active.size += len(frame)
            active.records += 1
        self._write_chunk(chunk)
        self.stats.records += len(batch)

    def _write_chunk(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.stats.bytes_written += len(data)
        self._unsynced = True

    def _rotate(self, first_seq: int) -> None:
        if self._unsynced:
            _datasync(self._fd)
            self._unsynced = False
            self.stats.fsyncs += 1
        os.close(self._fd)
        self._fd = -1
        self._create_segment(first_seq)
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _check_usable(self) -> None:
        if self._closed:
            raise WalError("the log is closed")
        if self._failed is not None:
            raise WalError("the log failed earlier") from self._failed

    # -- asyncio API --------------------------------------------------------------

    async def commit(self, payload: bytes) -> int:
        """Append one record and return its seq once an fsync covers it.

        Concurrent commits share fsyncs: while one flush runs, later records
        accumulate and the next flush writes them all with one fsync.
        """
        seq = self.append(payload)
        await self.wait_durable(seq)
        return seq

    async def wait_durable(self, seq: int) -> None:
        """Return once record ``seq`` (and every earlier one) is durable."""
        if seq >= self._next_seq:
            raise WalError(f"record {seq} was never appended")
        while self._durable_seq < seq:
            self._check_usable()
            flush = self._flush_task
            if flush is None or flush.done():
                flush = self._start_flush(asyncio.get_running_loop())
            # Each committer awaits a future of its own, settled with the flush: a cancelled
            # committer cancels only that one (as asyncio.shield would, at more cost).
            waiter: asyncio.Future[None] = flush.get_loop().create_future()
            self._committers.append(waiter)
            await waiter

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Hand a flush to the worker thread; returns the future its committers await.

        The worker settles the future with one ``call_soon_threadsafe`` (no task in
        between: a committer resumes one loop iteration after the fsync), and a flush
        that ends with records appended meanwhile starts the next one at once."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-flush")
        flush: asyncio.Future[None] = loop.create_future()
        self._flush_task = flush

        def done(work: Future[int]) -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._settle, loop, flush, work)

        self._executor.submit(self._flush).add_done_callback(done)
        return flush

    def _settle(self, loop: asyncio.AbstractEventLoop, flush: asyncio.Future[None], work: Future[int]) -> None:
        """(on the loop) Report a finished flush to its committers; start the next one if
        records are waiting for it."""
        error = work.exception()
        if not flush.cancelled():
            if error is None:
                flush.set_result(None)
            else:
                flush.set_exception(error)
                flush.exception()  # reported to the committers below; not "never retrieved"
        committers, self._committers = self._committers, []
        for waiter in committers:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        if (error is None and self._flush_task is flush and not self._closed
                and self._durable_seq < self._next_seq - 1):
            self._start_flush(loop)

    async def aclose(self) -> None:
        """Wait for any flush in progress (and the one it starts), flush the rest, and close."""
        while (flush := self._flush_task) is not None and not flush.done():
            await asyncio.wait([flush])
        if flush is not None and not flush.cancelled():
            flush.exception()  # already reported to its waiters
        self.close()

    # -- reading and trimming -------------------------------------------------------

    def replay(self, from_seq: int = 0) -> Iterator[WalRecord]:
        """Yield every intact record with seq >= ``from_seq``, in order.

        Reads what is written to the segment files when the call starts (records
        still buffered by ``append`` are not included). Stops quietly at the
        first invalid record; recovery on open has already cut any such tail.
        """
        with self._io:
            segments = [(s.path, s.first_seq, s.size) for s in self._segments]
        for index, (path, first, size) in enumerate(segments):
            if index + 1 < len(segments) and segments[index + 1][1] <= from_seq:
                continue
            with open(path, "rb") as fh:
                data = fh.read(size)
            for _, item in scan_records(data, SEGMENT_HEADER.size, first, self.max_record_bytes):
                if isinstance(item, str):
                    return
                if item.seq >= from_seq:
                    yield item

    def truncate_before(self, seq: int) -> int:
        """Delete the segments whose records all have seq < ``seq``; returns how many.

        The active segment is never deleted. Call it once a checkpoint covers
        every record before ``seq``.
        """
        removed = 0
        with self._io:
            while len(self._segments) > 1 and self._segments[1].first_seq <= seq:
                self._segments.pop(0).path.unlink()
                removed += 1
            if removed:
                _fsync_dir(self.directory)
                self.stats.segments_removed += removed
        return removed

    def segment_files(self) -> list[Path]:
        """The live segment files, oldest first."""
        with self._io:
            return [s.path for s in self._segments]

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Flush and fsync buffered records, then release the file. Idempotent."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self._flush()
        finally:
            self._closed = True
            with self._io:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)
                    self._lock_fd = -1
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
