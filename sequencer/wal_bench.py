"""Write-ahead log throughput: records/s and fsyncs/record.

``bench_wal(n)`` measures, on a temporary directory of the default temp
location's file system:

- ``serial``: one writer, ``append`` + ``sync`` per record (one fsync each);
- ``group_<k>``: ``k`` asyncio tasks each awaiting ``commit`` in a loop, so
  fsyncs are shared (group commit);
- ``bulk``: ``append`` every record, then one ``sync``.

Run ``python -m sequencer.wal_bench [n]`` to print the figures as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence

from sequencer.wal import WriteAheadLog


def _figures(n: int, seconds: float, wal: WriteAheadLog) -> dict[str, float]:
    return {
        "records": n,
        "records_per_s": round(n / seconds, 1),
        "fsyncs": wal.stats.fsyncs,
        "fsyncs_per_record": round(wal.stats.fsyncs / n, 4),
        "us_per_record": round(seconds / n * 1e6, 1),
    }


def _serial(directory: str, n: int, payload: bytes) -> dict[str, float]:
    with WriteAheadLog(directory) as wal:
        start = time.perf_counter()
        for _ in range(n):
            wal.append(payload)
            wal.sync()
        return _figures(n, time.perf_counter() - start, wal)


def _bulk(directory: str, n: int, payload: bytes) -> dict[str, float]:
    with WriteAheadLog(directory) as wal:
        start = time.perf_counter()
        for _ in range(n):
            wal.append(payload)
        wal.sync()
        return _figures(n, time.perf_counter() - start, wal)


def _group(directory: str, n: int, payload: bytes, writers: int) -> dict[str, float]:
    wal = WriteAheadLog(directory)
    per_writer = max(1, n // writers)

    async def writer() -> None:
        for _ in range(per_writer):
            await wal.commit(payload)

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - start
        await wal.aclose()
        return elapsed

    elapsed = asyncio.run(run())
    out = _figures(per_writer * writers, elapsed, wal)
    out["writers"] = writers
    return out


def bench_wal(
    n: int = 20_000, payload_bytes: int = 200, writers: Sequence[int] = (1, 16, 256)
) -> dict[str, dict[str, float]]:
    """Measure the log with ``n`` records of ``payload_bytes`` bytes each.

    Returns one dict of figures per scenario (see the module docstring); the
    serial scenario uses ``n // 10`` records since each costs a full fsync.
    """
    payload = bytes(range(256)) * (payload_bytes // 256) + bytes(payload_bytes % 256)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hfx-wal-bench-") as root:
        results["serial"] = _serial(f"{root}/serial", max(1, n // 10), payload)
        for k in writers:
            results[f"group_{k}"] = _group(f"{root}/group{k}", n, payload, k)
        results["bulk"] = _bulk(f"{root}/bulk", n, payload)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Print ``bench_wal`` figures as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if args else 20_000
    print(json.dumps(bench_wal(n), indent=2))


if __name__ == "__main__":
    main()
