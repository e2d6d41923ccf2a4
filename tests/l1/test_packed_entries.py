"""Written order entries (docs/stf.md §5.2): the Python codec, and ``Rollup.postBatch``
against Python's parser on which bytes parse and on the commitment they give."""

from __future__ import annotations

import boa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1_contracts.bindings import BatchData, BatchRejected, parse_batch
from state.batch import (
    MAX_PACKED_ENTRY_SIZE,
    MIN_PACKED_ENTRY_SIZE,
    RAW_ENTRY,
    Batch,
    decode_written_order,
    pack_entry,
    packed_entry_size,
    unpack_entry,
)
from state.txs import ORDER_ENTRY_SIZE, decode_order_entry, encode_funding, encode_trade
from tests.l1.fixtures_rollup import L1Chain, bad_root, now
from tests.strategies import GTC, packable_entries

entries = st.one_of(packable_entries(), st.binary(min_size=ORDER_ENTRY_SIZE, max_size=ORDER_ENTRY_SIZE))


@given(entries)
def test_pack_round_trips(entry: bytes) -> None:
    packed = pack_entry(entry)
    assert len(packed) == packed_entry_size(entry)
    assert MIN_PACKED_ENTRY_SIZE <= len(packed) <= MAX_PACKED_ENTRY_SIZE
    assert unpack_entry(packed) == entry
    assert unpack_entry(packed[:-1]) is None and unpack_entry(packed + b"\x07") is None
    assert decode_written_order(packed) == decode_order_entry(entry)


def test_what_packs() -> None:
    entry = bytes(4) + bytes((3, 1, 2)) + (5).to_bytes(8, "big") * 2 + GTC.to_bytes(8, "big") \
        + bytes(8) + b"\x11" * 32 + b"\x22" * 32 + b"\x1c"
    packed = pack_entry(entry)
    # head (account 0 bytes, buy, flags 2), lens (1, 1), more (GTC, salt 0 bytes), market
    assert packed[:4] == bytes((0x12, 0x11, 0x90, 3)) and len(packed) == 4 + 2 + 64
    assert packed[-32] == 0x22 | 0x80  # v = 28 in the top bit of s
    for at, value in ((5, 2), (6, 16), (103, 29), (71, 0x80)):
        odd = bytearray(entry)
        odd[at] = value
        assert pack_entry(bytes(odd)) == bytes([RAW_ENTRY]) + bytes(odd)


@pytest.mark.parametrize("head", [
    bytes((5 << 5, 0, 0, 0)),  # account length 5
    bytes((0, 9 << 4, 0, 0)),  # price length 9
    bytes((0, 9, 0, 0)),  # size length 9
    bytes((0, 0, 10 << 4, 0)),  # expiry code 10
    bytes((0, 0, 9, 0)),  # salt length 9
    bytes((0xE1, 0, 0, 0)),  # neither the escape nor an account length
])
def test_unpack_refuses_bad_lengths(head: bytes) -> None:
    for n in range(64, 106):
        assert unpack_entry(head + bytes(n)) is None


def test_written_bytes_that_unpack_to_nothing_are_a_malformed_entry() -> None:
    """They parse (like an is_buy of 2, every reference to them is refused later); the
    STF sees an empty entry, the commitment the bytes."""
    good = pack_entry(bytes(4) + bytes((0, 1, 0)) + bytes(31) + b"\x01" + b"\x11" * 64 + b"\x1b")
    table = bytes([len(good)]) + good + bytes([3]) + b"abc"
    data = b"\x01" + now().to_bytes(8, "big") + (2).to_bytes(2, "big") + table \
        + (1).to_bytes(4, "big") + (13).to_bytes(2, "big") + encode_trade(0, 1, 1)
    batch = Batch.decode(data)
    assert batch.written == (good, b"abc") and batch.orders[1] == b"" and batch.encode() == data
    assert decode_written_order(b"abc") is None


@pytest.fixture(scope="module")
def chain() -> L1Chain:
    return L1Chain()


def _expected(data: bytes) -> BatchData | None:
    """The commitment Python computes for ``data``, or None when it refuses to parse."""
    try:
        return BatchData.of(parse_batch(data), 0, 0)
    except BatchRejected:
        return None


def _check_rollup_agrees(chain: L1Chain, data: bytes) -> None:
    expected = _expected(data)
    with boa.env.anchor(), boa.env.prank(chain.sequencer):
        if expected is None:
            with pytest.raises(boa.BoaError) as refused:
                chain.rollup.postBatch(data, bad_root(b"x"), 1)
            assert "BAD_BATCH" in str(refused.value) or "NO_STEPS" in str(refused.value)
        elif expected.deposit_end == 0 and expected.forced_end == 0:
            index = chain.rollup.postBatch(data, bad_root(b"x"), expected.n_steps)
            assert chain.rollup.batch(index).data_hash == expected.data_hash()


@settings(max_examples=max(10, settings().max_examples // 4), suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(entries, max_size=5), st.data())
def test_rollup_parses_written_tables_as_python(chain: L1Chain, table: list[bytes], data: st.DataObject) -> None:
    """Whole batches, then the same bytes with one table byte changed or cut short."""
    encoded = Batch(now(), tuple(table), (encode_funding(),)).encode()
    _check_rollup_agrees(chain, encoded)
    end = len(encoded) - 7  # n_steps, one length prefix, the funding step
    if end > 11:
        at = data.draw(st.integers(11, end - 1), label="at")
        byte = data.draw(st.integers(0, 255), label="byte")
        _check_rollup_agrees(chain, encoded[:at] + bytes([byte]) + encoded[at + 1:])
        cut = data.draw(st.integers(11, end - 1), label="cut")
        _check_rollup_agrees(chain, encoded[:cut] + encoded[end:])


def test_rollup_agrees_on_every_length_byte(chain: L1Chain) -> None:
    """Every value of an entry's length byte, followed by that many bytes and the steps:
    the two parsers agree on each (the longest written entry is 105 bytes)."""
    header = b"\x01" + now().to_bytes(8, "big") + (1).to_bytes(2, "big")
    steps = (1).to_bytes(4, "big") + (1).to_bytes(2, "big") + encode_funding()
    accepted = 0
    for length in range(256):
        data = header + bytes([length]) + bytes(i % 251 for i in range(length)) + steps
        accepted += _expected(data) is not None
        _check_rollup_agrees(chain, data)
    assert accepted == MAX_PACKED_ENTRY_SIZE + 1
