"""node.anvil (a local L1 process and its chain controls) and node.l1 (retries, depth, logs, fees)."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from eth_account import Account

from node.anvil import DEV_KEYS, Anvil, AnvilError, anvil_available, free_port
from node.l1 import NO_RETRY, FeePolicy, Fees, L1Client, RetryPolicy, SendError

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)

DEV = Account.from_key(DEV_KEYS[0])
OTHER = Account.from_key(DEV_KEYS[1])
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)

# init code returning a 6-byte runtime that emits LOG0 with empty data on every call
LOGGER_INIT = bytes.fromhex("6006600c60003960066000f3" + "60006000a000")


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _send(node: Anvil, **tx: Any) -> str:
    """eth_sendTransaction from the first dev account (anvil signs); waits for the receipt."""
    h = str(node.rpc("eth_sendTransaction", {"from": DEV.address, **tx}))
    deadline = time.monotonic() + 10
    while node.rpc("eth_getTransactionReceipt", h) is None:
        assert time.monotonic() < deadline, "not mined"
        time.sleep(0.01)
    return h


# ---------------------------------------------------------------- the process


def test_start_answers_and_stop_leaves_no_process() -> None:
    node = Anvil(chain_id=4242)
    with node:
        assert node.url.startswith("http://127.0.0.1:")
        assert int(node.rpc("eth_chainId"), 16) == 4242
        assert [a.lower() for a in node.rpc("eth_accounts")[:2]] == [DEV.address.lower(), OTHER.address.lower()]
        pgid = node.pid
        assert pgid is not None and _group_alive(pgid)
    assert not node.running and not _group_alive(pgid)


def test_stops_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with Anvil() as node:
            pgid = node.pid
            raise RuntimeError("boom")
    assert pgid is not None and not _group_alive(pgid)


def test_missing_binary_and_taken_port_are_errors(anvil: Anvil) -> None:
    with pytest.raises(AnvilError, match="not found"):
        Anvil(binary="/nonexistent/anvil").start()
    with pytest.raises(AnvilError):
        Anvil(port=anvil.port, startup_timeout=5).start()


def test_interval_mining() -> None:
    with Anvil(block_time=1) as node:
        start = node.block_number()
        deadline = time.monotonic() + 10
        while node.block_number() < start + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert node.block_number() >= start + 2


# ---------------------------------------------------------------- chain controls


def test_mine_time_and_snapshots(anvil: Anvil) -> None:
    n = anvil.block_number()
    assert anvil.mine(3) == n + 3
    t = anvil.timestamp_of()
    assert anvil.increase_time(1_000) >= t + 1_000
    target = anvil.timestamp_of() + 50
    anvil.set_next_block_timestamp(target)
    anvil.mine()
    assert anvil.timestamp_of() == target
    snap = anvil.snapshot()
    h = anvil.mine(5)
    assert anvil.revert(snap) and anvil.block_number() == h - 5


def test_reorg_replaces_the_tip_and_drops_its_transactions(anvil: Anvil) -> None:
    tx = _send(anvil, to=OTHER.address, value=hex(1))
    head = int(anvil.rpc("eth_getTransactionReceipt", tx)["blockNumber"], 16)
    assert anvil.block_number() == head
    old = anvil.block(head)["hash"]
    assert anvil.rpc("eth_getTransactionReceipt", tx) is not None
    anvil.reorg(2)
    assert anvil.block_number() == head and anvil.block(head)["hash"] != old
    assert anvil.rpc("eth_getTransactionReceipt", tx) is None
    assert anvil.rpc("eth_getTransactionByHash", tx) is None  # not back in the pool

    # a reorg that puts a signed transaction in a replacement block
    nonce = int(anvil.rpc("eth_getTransactionCount", OTHER.address, "latest"), 16)
    signed = OTHER.sign_transaction({
        "to": DEV.address, "value": 7, "gas": 21_000, "nonce": nonce, "chainId": 31337,
        "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
    })
    anvil.reorg(1, [(bytes(signed.raw_transaction), 0)])
    receipt = anvil.rpc("eth_getTransactionReceipt", "0x" + bytes(signed.hash).hex())
    assert receipt is not None and int(receipt["blockNumber"], 16) == head


def test_rollback_removes_blocks(anvil: Anvil) -> None:
    head = anvil.mine(2)
    anvil.rollback(2)
    assert anvil.block_number() == head - 2


# ---------------------------------------------------------------- a misbehaving transport


class Proxy:
    """A loopback HTTP proxy in front of anvil whose answers a test can script."""

    def __init__(self, upstream: str, script: Callable[[dict[str, Any]], tuple[int, bytes] | None]) -> None:
        self.upstream = upstream
        self.script = script
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.requests += 1
                scripted = proxy.script(json.loads(body))
                if scripted is None:
                    req = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback
                        status, payload = 200, resp.read()
                else:
                    status, payload = scripted
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _failing(times: int, status: int) -> Callable[[dict[str, Any]], tuple[int, bytes] | None]:
    left = [times]

    def script(_: dict[str, Any]) -> tuple[int, bytes] | None:
        if left[0] > 0:
            left[0] -= 1
            return status, b"{}"
        return None

    return script


def test_retries_until_the_node_answers() -> None:
    port = free_port()
    client = L1Client(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=200, base_delay=0.05, max_delay=0.1))
    node = Anvil(port=port)
    starter = threading.Timer(0.5, node.start)
    starter.start()
    try:
        assert client.head() >= 0  # connection refused at first, then answered
        assert client.provider.retries > 0
    finally:
        starter.join()
        node.stop()


def test_retries_5xx_but_not_4xx(anvil: Anvil) -> None:
    proxy = Proxy(anvil.url, _failing(2, 503))
    try:
        client = L1Client(proxy.url, retry=FAST)
        assert client.head() == anvil.block_number()
        assert client.provider.retries == 2 and proxy.requests == 3
    finally:
        proxy.close()
    proxy = Proxy(anvil.url, _failing(1, 404))
    try:
        client = L1Client(proxy.url, retry=FAST)
        with pytest.raises(requests.HTTPError):
            client.head()
        assert client.provider.retries == 0 and proxy.requests == 1
    finally:
        proxy.close()
    proxy = Proxy(anvil.url, _failing(5, 502))
    try:
        with pytest.raises(requests.HTTPError):
            L1Client(proxy.url, retry=NO_RETRY).head()
    finally:
        proxy.close()


def test_timeout_is_retried(anvil: Anvil) -> None:
    slow = [1]

    def script(_: dict[str, Any]) -> tuple[int, bytes] | None:
        if slow[0]:
            slow[0] -= 1
            time.sleep(1.0)
        return None

    proxy = Proxy(anvil.url, script)
    try:
        client = L1Client(proxy.url, timeout=0.3, retry=FAST)
        assert client.head() == anvil.block_number()
        assert client.provider.retries >= 1
    finally:
        proxy.close()


# ---------------------------------------------------------------- depth, logs, fees, sends


def test_confirmation_depth(anvil: Anvil) -> None:
    client = L1Client(anvil.url, depth=3)
    head = client.head()
    assert client.safe_head() == head - 3 and client.safe_head(depth=0) == head
    assert client.safe_head(depth=head + 1) == -1
    assert client.confirmations(head, head) == 1 and client.confirmations(head - 3, head) == 4
    assert client.confirmations(head + 1, head) == 0


def _deploy_logger(anvil: Anvil) -> str:
    tx = _send(anvil, data="0x" + LOGGER_INIT.hex())
    return str(anvil.rpc("eth_getTransactionReceipt", tx)["contractAddress"])


def test_logs_in_bounded_ranges(anvil: Anvil) -> None:
    logger = _deploy_logger(anvil)
    first = anvil.block_number() + 1
    for _ in range(10):
        _send(anvil, to=logger)
    last = anvil.block_number()
    client = L1Client(anvil.url)
    whole = client.get_logs(logger, None, first, last)
    assert [int(lg["blockNumber"]) for lg in whole] == list(range(first, last + 1))
    assert client.get_logs(logger, None, first, last, max_range=3) == whole

    # a node that refuses ranges wider than 2 blocks: the client halves its range
    def refuse(req: dict[str, Any]) -> tuple[int, bytes] | None:
        if req["method"] == "eth_getLogs":
            f = req["params"][0]
            if int(f["toBlock"], 16) - int(f["fromBlock"], 16) + 1 > 2:
                err = {"code": -32005, "message": "query returned more than 10000 results"}
                return 200, json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": err}).encode()
        return None

    proxy = Proxy(anvil.url, refuse)
    try:
        assert L1Client(proxy.url).get_logs(logger, None, first, last, max_range=100) == whole
    finally:
        proxy.close()


def test_fees_and_raw_sends(anvil: Anvil) -> None:
    client = L1Client(anvil.url, fee_policy=FeePolicy(min_tip=2 * 10**9))
    base = int(anvil.block()["baseFeePerGas"], 16)
    fees = client.suggest_fees()
    assert fees.max_priority_fee_per_gas >= 2 * 10**9
    assert fees.max_fee_per_gas == 2 * base + fees.max_priority_fee_per_gas
    assert FeePolicy(max_fee_cap=10**9).cap(fees) == Fees(10**9, 10**9)
    bumped = fees.bumped(20)
    assert bumped.max_fee_per_gas >= fees.max_fee_per_gas * 12 // 10

    anvil.set_automine(False)
    try:
        nonce = client.nonce(OTHER.address)
        tx = {"to": DEV.address, "value": 1, "gas": 21_000, "nonce": nonce, "chainId": 31337, **fees.as_tx()}
        signed = OTHER.sign_transaction(tx)
        h = client.send_raw(bytes(signed.raw_transaction), bytes(signed.hash))
        # the same bytes again: "already known" is a success
        assert client.send_raw(bytes(signed.raw_transaction), bytes(signed.hash)) == h == bytes(signed.hash)
        assert client.transaction(h) is not None and client.receipt(h) is None
        with pytest.raises(SendError) as refused:  # same nonce, same fees: not a valid replacement
            client.sign_and_send(OTHER, {**tx, "value": 2})
        assert refused.value.kind == SendError.UNDERPRICED
        anvil.mine()
    finally:
        anvil.set_automine(True)
    assert client.receipt(h) is not None
    with pytest.raises(SendError) as low:
        client.sign_and_send(OTHER, {**tx, "value": 3, **fees.bumped(50).as_tx()})
    assert low.value.kind == SendError.NONCE_TOO_LOW


def test_estimate_and_call_surface_reason_codes(anvil: Anvil) -> None:
    from l1_contracts.bindings import L1Error

    # a contract whose every call reverts with Error("NOPE")
    reason = b"NOPE"
    err = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + len(reason).to_bytes(32, "big") + reason.ljust(32, b"\0")
    runtime = b""
    for i in range(0, len(err), 32):  # MSTORE each word, then REVERT(0, len)
        runtime += b"\x7f" + err[i:i + 32].ljust(32, b"\0") + b"\x60" + bytes([i]) + b"\x52"
    runtime += b"\x60" + bytes([len(err)]) + b"\x60\x00\xfd"
    init = b"\x60" + bytes([len(runtime)]) + b"\x60\x0c\x60\x00\x39\x60" + bytes([len(runtime)]) + b"\x60\x00\xf3" + runtime
    addr = anvil.rpc("eth_getTransactionReceipt", _send(anvil, data="0x" + init.hex()))["contractAddress"]
    client = L1Client(anvil.url)
    with pytest.raises(L1Error) as est:
        client.estimate_gas({"from": DEV.address, "to": client.w3.to_checksum_address(addr), "data": "0x"})
    assert est.value.code == "NOPE"
    with pytest.raises(L1Error) as call:
        client.call({"to": client.w3.to_checksum_address(addr), "data": "0x"})
    assert call.value.code == "NOPE"
