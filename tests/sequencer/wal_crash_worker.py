"""Crash-test worker: commits records forever and prints each acknowledged seq.

Usage: ``python -m tests.sequencer.wal_crash_worker DIR RUN``. Prints
``ready <next_seq>`` after recovery, then one ``<seq> <run> <writer> <i>`` line
per record whose ``commit`` returned. The parent SIGKILLs it at random moments
and checks that every printed record survives with ``expected_payload``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

from sequencer.wal import WriteAheadLog

WRITERS = 8
SEGMENT_BYTES = 16 << 10


def expected_payload(run: int, writer: int, i: int) -> bytes:
    """The payload record ``(run, writer, i)`` carries: an id and 0..600 filler bytes."""
    tag = f"{run}:{writer}:{i}".encode()
    digest = hashlib.sha256(tag).digest()
    filler = (digest * 20)[: int.from_bytes(digest[:2], "big") % 601]
    return tag + b"|" + filler


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write per line: a line is whole or absent


async def _writer(wal: WriteAheadLog, run: int, writer: int) -> None:
    i = 0
    while True:
        seq = await wal.commit(expected_payload(run, writer, i))
        _say(f"{seq} {run} {writer} {i}")
        i += 1


async def _main(directory: str, run: int) -> None:
    wal = WriteAheadLog(directory, segment_bytes=SEGMENT_BYTES)
    _say(f"ready {wal.next_seq}")
    await asyncio.gather(*(_writer(wal, run, w) for w in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
