"""Write-ahead log: framing, rotation, recovery from torn and corrupt tails,
group commit, and a real SIGKILL crash test."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sequencer.wal as walmod
from sequencer.wal import (
    RECORD_HEADER,
    SEGMENT_HEADER,
    WalError,
    WalRecord,
    WriteAheadLog,
    encode_record,
    scan_records,
)
from sequencer.wal_bench import bench_wal
from tests.sequencer.wal_crash_worker import expected_payload

ROOT = Path(__file__).resolve().parents[2]


def payloads(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 300)) for _ in range(n)]


def write_log(directory: Path, data: list[bytes], **kw: int) -> None:
    with WriteAheadLog(directory, **kw) as wal:
        for p in data:
            wal.append(p)


def replay_all(directory: Path, from_seq: int = 0) -> list[WalRecord]:
    with WriteAheadLog(directory) as wal:
        return list(wal.replay(from_seq))


def read_all(directory: Path, **kw: int) -> tuple[list[WalRecord], WriteAheadLog]:
    wal = WriteAheadLog(directory, **kw)
    return list(wal.replay()), wal


# -- round trip and rotation -----------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    data = [b"", b"x", b"\x00" * 1000, *payloads(50)]
    with WriteAheadLog(tmp_path) as wal:
        assert wal.next_seq == 1 and wal.last_seq == 0 and wal.durable_seq == 0
        seqs = [wal.append(p) for p in data]
        assert seqs == list(range(1, len(data) + 1))
        assert wal.durable_seq == 0
        assert list(wal.replay()) == []  # buffered records are not on disk yet
        assert wal.sync() == len(data)
        assert wal.durable_seq == len(data)
        assert [r.payload for r in wal.replay()] == data
    records, wal = read_all(tmp_path)
    with wal:
        assert wal.damage is None
        assert [r.seq for r in records] == seqs
        assert [r.payload for r in records] == data
        assert wal.next_seq == len(data) + 1
        assert wal.append(b"more") == len(data) + 1
    records, wal = read_all(tmp_path)
    wal.close()
    assert records[-1] == WalRecord(len(data) + 1, b"more")
    assert [r.seq for r in replay_all(tmp_path, from_seq=50)] == list(range(50, 55))


def test_sync_without_new_records_does_not_fsync(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path) as wal:
        wal.append(b"a")
        wal.sync()
        wal.sync()
        wal.sync()
        assert wal.stats.fsyncs == 1


def test_rotation(tmp_path: Path) -> None:
    data = payloads(200, seed=2)
    write_log(tmp_path, data, segment_bytes=2048)
    records, wal = read_all(tmp_path, segment_bytes=2048)
    with wal:
        files = wal.segment_files()
        assert len(files) > 10
        for path in files:  # every segment within its size limit unless it holds one record
            size = path.stat().st_size
            first = int(path.name.split(".")[0])
            assert size <= 2048 or len(list(scan_records(path.read_bytes(), 20, first))) == 1
        firsts = [int(p.name.split(".")[0]) for p in files]
        assert firsts[0] == 1 and firsts == sorted(firsts)
        assert [r.payload for r in records] == data
        # a record larger than a segment gets a segment to itself
        big = wal.append(b"B" * 5000)
        wal.append(b"after")
        wal.sync()
        assert int(wal.segment_files()[-2].name.split(".")[0]) == big
    assert [r.payload for r in replay_all(tmp_path)][-2:] == [b"B" * 5000, b"after"]


def test_truncate_before(tmp_path: Path) -> None:
    data = payloads(100, seed=3)
    write_log(tmp_path, data, segment_bytes=1024)
    with WriteAheadLog(tmp_path, segment_bytes=1024) as wal:
        files = wal.segment_files()
        firsts = [int(p.name.split(".")[0]) for p in files]
        checkpoint = firsts[3] + 1  # records < checkpoint are covered
        assert wal.truncate_before(checkpoint) == 3
        assert wal.first_seq == firsts[3]
        assert wal.segment_files() == files[3:]
        assert not any(p.exists() for p in files[:3])
        assert [r.seq for r in wal.replay(from_seq=checkpoint)] == list(range(checkpoint, 101))
        assert wal.truncate_before(checkpoint) == 0
        assert wal.truncate_before(10**9) == len(files) - 4  # never the active segment
        assert wal.segment_files() == files[-1:]
    with WriteAheadLog(tmp_path, segment_bytes=1024) as wal:
        assert wal.damage is None
        assert wal.next_seq == 101
        assert [r.seq for r in wal.replay()] == list(range(firsts[-1], 101))


def test_truncate_everything_keeps_numbering(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path, segment_bytes=100) as wal:
        for p in payloads(30, seed=4):
            wal.append(p)
        wal.sync()
        wal.truncate_before(31)
    with WriteAheadLog(tmp_path, segment_bytes=100) as wal:
        assert wal.next_seq == 31
        assert wal.append(b"x") == 31


def test_bad_arguments_and_closed_log(tmp_path: Path) -> None:
    with pytest.raises(WalError):
        WriteAheadLog(tmp_path, segment_bytes=10)
    wal = WriteAheadLog(tmp_path, max_record_bytes=100)
    with pytest.raises(WalError):
        wal.append(b"x" * 101)
    wal.append(b"x" * 100)
    wal.close()
    wal.close()
    with pytest.raises(WalError):
        wal.append(b"y")
    assert [len(r.payload) for r in replay_all(tmp_path)] == [100]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(WalError, match="in use"):
        WriteAheadLog(tmp_path)
    wal.close()
    WriteAheadLog(tmp_path).close()


def test_threads_append_and_sync(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=4096)

    def work(t: int) -> None:
        for i in range(200):
            wal.append(f"{t}:{i}".encode())
            if i % 7 == 0:
                wal.sync()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wal.close()
    records = list(replay_all(tmp_path))
    assert [r.seq for r in records] == list(range(1, 801))
    assert sorted(r.payload for r in records) == sorted(
        f"{t}:{i}".encode() for t in range(4) for i in range(200)
    )


# -- recovery ----------------------------------------------------------------------


def test_torn_tail_at_every_byte_offset(tmp_path: Path) -> None:
    data = [b"first", b"second record", b"the last record, torn at every offset"]
    src = tmp_path / "src"
    write_log(src, data)
    segment = src / "00000000000000000001.wal"
    size = segment.stat().st_size
    last_start = size - RECORD_HEADER.size - len(data[-1])
    for cut in range(last_start, size):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(src, work)
        with open(work / segment.name, "r+b") as fh:
            fh.truncate(cut)
        records, wal = read_all(work)
        with wal:
            assert [r.payload for r in records] == data[:-1], cut
            if cut == last_start:
                assert wal.damage is None
            else:
                assert wal.damage is not None and wal.damage.at_tail
                assert wal.damage.seq == 3 and wal.damage.offset == last_start
                assert wal.damage.reason in ("truncated header", "truncated payload")
                assert wal.damage.dropped_bytes == cut - last_start
            assert (work / segment.name).stat().st_size == last_start
            assert wal.append(b"again") == 3
        records, wal = read_all(work)
        wal.close()
        assert wal.damage is None
        assert [r.payload for r in records] == [*data[:-1], b"again"]
        shutil.rmtree(work)


def test_flipped_byte_in_the_middle_stops_there(tmp_path: Path) -> None:
    data = payloads(60, seed=5)
    data = [p or b"nonempty" for p in data]
    write_log(tmp_path, data, segment_bytes=4096)
    files = sorted(tmp_path.glob("*.wal"))
    assert len(files) >= 3
    target = files[1]
    raw = bytearray(target.read_bytes())
    first = int(target.name.split(".")[0])
    offsets = [pos for pos, _ in scan_records(bytes(raw), SEGMENT_HEADER.size, first)]
    assert len(offsets) > 3
    k = 2  # the third record of the second segment
    raw[offsets[k] + RECORD_HEADER.size] ^= 0x40  # first payload byte
    target.write_bytes(bytes(raw))
    records, wal = read_all(tmp_path, segment_bytes=4096)
    with wal:
        bad_seq = first + k
        assert [r.payload for r in records] == data[: bad_seq - 1]
        damage = wal.damage
        assert damage is not None
        assert (damage.segment, damage.offset, damage.seq) == (target.name, offsets[k], bad_seq)
        assert damage.reason == "bad crc" and not damage.at_tail
        # nothing is destroyed: the cut bytes and later segments are moved aside
        assert len(damage.moved_to) == len(files) - 1
        aside = tmp_path / damage.moved_to[0]
        assert aside.read_bytes() == bytes(raw[offsets[k] :])
        assert damage.dropped_bytes == len(raw) - offsets[k] + sum(
            f.stat().st_size for f in (tmp_path / m for m in damage.moved_to[1:])
        )
        assert wal.append(b"resumed") == bad_seq
    records, wal = read_all(tmp_path, segment_bytes=4096)
    wal.close()
    assert wal.damage is None
    assert records[-1] == WalRecord(bad_seq, b"resumed")


def test_bad_segment_header_and_gap(tmp_path: Path) -> None:
    write_log(tmp_path, payloads(40, seed=6), segment_bytes=1024)
    files = sorted(tmp_path.glob("*.wal"))
    raw = bytearray(files[2].read_bytes())
    raw[3] ^= 1
    files[2].write_bytes(bytes(raw))
    records, wal = read_all(tmp_path, segment_bytes=1024)
    with wal:
        assert wal.damage is not None and wal.damage.reason == "bad segment header"
        assert wal.next_seq == int(files[2].name.split(".")[0])
        assert [r.seq for r in records] == list(range(1, wal.next_seq))
    # a missing middle segment: the log ends before the gap
    write_log(tmp_path / "gap", payloads(40, seed=6), segment_bytes=1024)
    files = sorted((tmp_path / "gap").glob("*.wal"))
    files[1].unlink()
    records, wal = read_all(tmp_path / "gap", segment_bytes=1024)
    with wal:
        assert wal.damage is not None and wal.damage.reason == "segment gap"
        assert wal.next_seq == int(files[1].name.split(".")[0])
        assert wal.segment_files() == files[:1]


def test_garbage_tail_never_raises(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = payloads(10, seed=7)
    for trial in range(30):
        work = tmp_path / str(trial)
        write_log(work, data)
        segment = work / "00000000000000000001.wal"
        with open(segment, "ab") as fh:
            fh.write(rng.randbytes(rng.randrange(1, 200)))
        records, wal = read_all(work)
        wal.close()
        assert [r.payload for r in records] == data
        assert wal.damage is not None and wal.damage.seq == 11


def test_leftover_temporary_segment_is_removed(tmp_path: Path) -> None:
    write_log(tmp_path, [b"a"])
    (tmp_path / "00000000000000000002.wal.tmp").write_bytes(b"HFX")
    with WriteAheadLog(tmp_path) as wal:
        assert wal.damage is None and wal.next_seq == 2
    assert not list(tmp_path.glob("*.tmp"))


@settings(max_examples=60)
@given(
    data=st.lists(st.binary(max_size=80), max_size=12),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_random_truncation(data: list[bytes], cut: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        write_log(directory, data)
        segment = directory / "00000000000000000001.wal"
        size = segment.stat().st_size
        keep = SEGMENT_HEADER.size + int((size - SEGMENT_HEADER.size) * cut)
        with open(segment, "r+b") as fh:
            fh.truncate(keep)
        # the records that survive are exactly those wholly inside the kept bytes
        ends, pos = [], SEGMENT_HEADER.size
        for p in data:
            pos += RECORD_HEADER.size + len(p)
            ends.append(pos)
        whole = sum(1 for e in ends if e <= keep)
        records, wal = read_all(directory)
        wal.close()
        assert records == [WalRecord(i + 1, p) for i, p in enumerate(data[:whole])]
        assert (wal.damage is None) == (keep in (SEGMENT_HEADER.size, *ends))


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=2**64 - 1))
def test_property_scan_never_raises_on_garbage(garbage: bytes, seq: int) -> None:
    items = list(scan_records(garbage, 0, seq, max_record_bytes=1000))
    assert all(isinstance(item, WalRecord) for _, item in items[:-1])


@given(st.lists(st.binary(max_size=100), max_size=10), st.integers(1, 2**40))
def test_property_framing_round_trip(data: list[bytes], first: int) -> None:
    buf = b"".join(encode_record(first + i, p) for i, p in enumerate(data))
    items = list(scan_records(buf, 0, first))
    assert [item for _, item in items] == [WalRecord(first + i, p) for i, p in enumerate(data)]


# -- group commit ---------------------------------------------------------------------


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    committers, each = 100, 10

    async def main() -> list[int]:
        wal = WriteAheadLog(tmp_path, segment_bytes=64 << 10)

        async def committer(c: int) -> list[int]:
            seqs = []
            for i in range(each):
                seq = await wal.commit(f"{c}:{i}".encode())
                assert wal.durable_seq >= seq
                seqs.append(seq)
            return seqs

        results = await asyncio.gather(*(committer(c) for c in range(committers)))
        fsyncs = wal.stats.fsyncs
        await wal.aclose()
        per_record = fsyncs / (committers * each)
        assert per_record < 0.2, per_record
        return [s for r in results for s in r]

    seqs = asyncio.run(asyncio.wait_for(main(), 30))
    assert sorted(seqs) == list(range(1, 1001))
    assert len(list(replay_all(tmp_path))) == 1000


def test_cancelled_committer_does_not_break_the_flush(tmp_path: Path) -> None:
    async def main() -> None:
        wal = WriteAheadLog(tmp_path)
        tasks = [asyncio.ensure_future(wal.commit(f"{i}".encode())) for i in range(50)]
        await asyncio.sleep(0)
        for t in tasks[::3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, int | asyncio.CancelledError) for r in done)
        assert await wal.commit(b"last") == 51
        with pytest.raises(WalError):
            await wal.wait_durable(52)  # never appended
        assert wal.durable_seq == 51
        await wal.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert len(list(replay_all(tmp_path))) == 51


def test_flush_ending_with_appended_records_starts_the_next(tmp_path: Path) -> None:
    """A flush that ends with records appended meanwhile starts the next flush itself,
    before any committer of those records asks; ``aclose`` waits for that one too."""

    async def main() -> None:
        wal = WriteAheadLog(tmp_path)
        gate = threading.Event()
        flush = wal._flush

        def slow_flush() -> int:
            gate.wait(5)
            return flush()

        wal._flush = slow_flush  # type: ignore[method-assign]
        first = asyncio.ensure_future(wal.commit(b"a"))
        await asyncio.sleep(0.01)  # the first flush is in the worker, held at the gate
        wal.append(b"b")  # appended during it, and nobody waits for it
        gate.set()
        assert await first == 1
        for _ in range(500):
            if wal.durable_seq == 2:
                break
            await asyncio.sleep(0.01)
        assert wal.durable_seq == 2
        wal.append(b"c")
        await wal.wait_durable(3)
        await wal.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert [r.payload for r in replay_all(tmp_path)] == [b"a", b"b", b"c"]


def test_failed_fsync_fails_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def main() -> None:
        wal = WriteAheadLog(tmp_path)
        monkeypatch.setattr(walmod, "_datasync", broken)
        results = await asyncio.gather(
            *(wal.commit(b"x") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, WalError) for r in results)
        with pytest.raises(WalError):
            wal.append(b"y")
        with pytest.raises(WalError):
            wal.sync()
        wal.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_bench_smoke() -> None:
    out = bench_wal(200, payload_bytes=50, writers=(8,))
    assert set(out) == {"serial", "group_8", "bulk"}
    assert out["group_8"]["fsyncs_per_record"] < 1
    assert out["bulk"]["fsyncs"] == 1


# -- real crash ---------------------------------------------------------------------------


def test_sigkill_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    directory = tmp_path / "wal"
    acked: dict[int, tuple[int, int, int]] = {}
    kills, deadline = 0, time.monotonic() + 20
    runs = 0
    while kills < 24 and time.monotonic() < deadline:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sequencer.wal_crash_worker", str(directory), str(runs)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda s=proc.stdout, c=chunks: c.append(s.read()))
        reader.start()
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        runs += 1
        kills += proc.returncode == -signal.SIGKILL
        ready: int | None = None
        for line in b"".join(chunks).decode().splitlines():
            parts = line.split()
            if parts[0] == "ready":
                ready = int(parts[1])
                # every record acknowledged by earlier runs survived recovery
                assert ready > max(acked, default=0)
                continue
            seq, run, writer, i = map(int, parts)
            assert seq not in acked
            acked[seq] = (run, writer, i)
    assert kills >= 20, kills
    assert len(acked) > 100, len(acked)
    with WriteAheadLog(directory, segment_bytes=16 << 10) as wal:
        records = {r.seq: r.payload for r in wal.replay()}
        assert len(wal.segment_files()) > 1
    assert sorted(records) == list(range(1, len(records) + 1))
    for seq, ident in acked.items():
        assert records.get(seq) == expected_payload(*ident), seq
