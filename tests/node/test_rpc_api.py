"""The node's read-only JSON-RPC API (node/rpc_api.py) over real HTTP, on a real derivation.

The derivation is fed posted batches built with the real STF (deposits, an
oracle update, a trade, a signed withdrawal) exactly as the follower feeds
it, without an L1: what is tested here is the API's answers and refusals;
tests/e2e runs the same methods against anvil, where the withdrawal proof is
claimed on the real bridge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.batches import PostedBatch
from node.derive import Derivation, commitment_of
from node.queues import BoundedQueues
from node.rpc import RpcServer
from node.rpc_api import NOT_FINAL, NOT_FOUND, ROOT_MISMATCH, DerivationThread, NodeApi
from node.rpc_client import RpcClient, RpcError
from proofs.mpt import verify_proof
from state.batch import Batch
from state.context import BatchContext
from state.db import StateDB
from state.keccak import keccak256
from state.layout import account_key, withdrawal_key
from state.signing import signed_withdraw
from state.txs import encode_deposit, encode_trade
from tests.world import ETH, USDC, World

ETH_PERP = 0
RECIPIENT = b"\x77" * 20


class Chain:
    """Posts batches into a derivation as the follower would, keeping an honest replica for the roots."""

    def __init__(self, world: World, derivation: DerivationThread) -> None:
        self.world = world
        self.thread = derivation
        self.replica = StateDB.in_memory()
        self.posted_root = self.replica.initialize(dict(world.leaves))
        self.genesis_root = self.posted_root
        self.index = 0
        self.deposit_end = 0
        self.forced_end = 0

    def post(self, batch: Batch, lie: bool = False) -> PostedBatch:
        raw = batch.encode()
        data = commitment_of(raw, self.deposit_end, self.forced_end)
        queues = BoundedQueues(self.world.queues, data.deposit_end, data.forced_end)
        ctx = BatchContext.create(batch.timestamp, self.world.chain, queues, list(batch.orders))
        root = self.replica.apply_batch(batch, ctx).post_root
        self.index += 1
        posted = PostedBatch(
            self.index, self.index - 1, "0x" + "ab" * 20, self.posted_root,
            keccak256(b"lie") if lie else root, data, batch.timestamp + 30, raw,
            keccak256(b"tx%d" % self.index), 10 + self.index,
        )
        self.thread.call(lambda d: d.apply(posted, self.world.queues))
        self.posted_root = posted.post_root
        self.deposit_end, self.forced_end = data.deposit_end, data.forced_end
        return posted


@pytest.fixture
def world_and_chain(tmp_path: Path) -> Iterator[tuple[World, Chain]]:
    world = World()
    genesis = dict(world.leaves)
    root = StateDB.in_memory().initialize(dict(genesis))
    thread = DerivationThread(lambda: Derivation.open(tmp_path / "node", world.chain, root, genesis))
    chain = Chain(world, thread)
    # batch 1: two deposits and prices; batch 2: a trade and a withdrawal
    world.deposit("maker", 100_000 * USDC)
    world.deposit("taker", 100_000 * USDC)
    t = world.time + 10
    world.time = t
    chain.post(Batch(t, (), (encode_deposit(), encode_deposit(),
                             world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, timestamp=t))))
    orders = (world.order("maker", ETH_PERP, False, 3_000_000, 4), world.order("taker", ETH_PERP, True, 3_000_000, 4))
    withdraw = signed_withdraw(World.key("maker"), world.address("maker"), world.domain, world.index["maker"],
                               RECIPIENT, 250 * USDC, 0)
    chain.post(Batch(t + 1, orders, (encode_trade(0, 1, 4), withdraw)))
    yield world, chain
    thread.close()


def serve(chain: Chain, scenario: Callable[[RpcClient], Awaitable[None]]) -> None:
    """Run ``scenario`` against a NodeApi over HTTP on 127.0.0.1."""

    async def run() -> None:
        server = RpcServer()
        NodeApi(server, chain.thread, {"chainId": 31337}, lambda: {"polls": 7})
        port = await server.start("127.0.0.1", 0)
        try:
            async with RpcClient(f"http://127.0.0.1:{port}/") as client:
                await asyncio.wait_for(scenario(client), 30)
        finally:
            await server.stop()

    asyncio.run(run())


async def refused(client: RpcClient, method: str, params: Any) -> RpcError:
    with pytest.raises(RpcError) as err:
        await client.call(method, params)
    return err.value


def test_sync_status_and_batches(world_and_chain: tuple[World, Chain]) -> None:
    _, chain = world_and_chain

    async def scenario(c: RpcClient) -> None:
        st = await c.call("hfx_syncStatus")
        assert st["head"]["index"] == 2 and st["final"]["index"] == 0 and st["pending"] == 2
        assert st["polls"] == 7 and st["disputable"] == [] and st["head"]["status"] == "pending"
        b = await c.call("hfx_getBatch", [2])
        assert b["verdict"] == "MATCH" and b["computedRoot"] == b["postedRoot"] == "0x" + chain.posted_root.hex()
        assert (b["steps"], b["orders"], b["parent"], b["status"]) == (2, 2, 1, "pending")
        assert (await c.call("hfx_getBatch", ["latest"]))["index"] == 2
        assert (await c.call("hfx_getBatch", ["final"]))["index"] == 0
        page = await c.call("hfx_getBatches", {"from_index": 0, "limit": 2})
        assert [x["index"] for x in page["batches"]] == [0, 1] and page["next"] == 2
        assert [x["index"] for x in (await c.call("hfx_getBatches", {"limit": 1}))["batches"]] == [2]
        assert [x["index"] for x in (await c.call("hfx_getBatches", {"status": "final"}))["batches"]] == [0]
        e = await refused(c, "hfx_getBatch", [9])
        assert e.code == NOT_FOUND and e.data == {"reason": "UNKNOWN_BATCH"}
        for bad in (["x"], [-1], [True]):
            assert (await refused(c, "hfx_getBatch", bad)).code == -32602
        assert (await refused(c, "hfx_getBatches", {"limit": 0})).code == -32602
        assert (await refused(c, "hfx_getBatches", {"status": "gone"})).code == -32602
        assert (await c.call("hfx_chainInfo"))["chainId"] == 31337

    serve(chain, scenario)


def test_accounts_markets_and_orders_at_any_batch(world_and_chain: tuple[World, Chain]) -> None:
    world, chain = world_and_chain
    maker = "0x" + world.address("maker").hex()

    async def scenario(c: RpcClient) -> None:
        now = await c.call("hfx_getAccount", [maker])
        assert now["index"] == world.index["maker"] and now["batch"] == 2
        assert [(p["market"], p["size"]) for p in now["positions"]] == [(ETH_PERP, -4)]
        assert now["equity"] > 0 and now["initialMargin"] > 0 and not now["liquidatable"]
        before = await c.call("hfx_getAccount", {"account": world.index["maker"], "batch": 1})
        assert before["positions"] == [] and before["collateral"] == 100_000 * USDC
        assert now["collateral"] == before["collateral"] - 250 * USDC + 1_200  # maker rebate: 1 bp of 12,000,000
        markets = await c.call("hfx_getMarkets")
        assert markets["markets"][ETH_PERP]["mark"] == 3_000_000 and markets["config"]["takerFeeBps"] == 5
        e = await refused(c, "hfx_getAccount", ["0x" + "99" * 20])
        assert e.code == NOT_FOUND and e.data == {"reason": "UNKNOWN_ACCOUNT"}
        assert (await refused(c, "hfx_getAccount", [42])).code == NOT_FOUND
        assert (await refused(c, "hfx_getAccount", ["0x12"])).code == -32602
        assert (await refused(c, "hfx_getAccount", [maker, "soon"])).code == -32602
        st = await c.call("hfx_getOrderState", ["0x" + "00" * 32])
        assert st == {"orderHash": "0x" + "00" * 32, "batch": 2, "filled": 0, "cancelled": False, "known": False}
        assert (await refused(c, "hfx_getOrderState", ["0x00"])).code == -32602

    serve(chain, scenario)


def test_state_proofs_verify_against_the_batch_root(world_and_chain: tuple[World, Chain]) -> None:
    world, chain = world_and_chain
    maker = world.index["maker"]

    async def scenario(c: RpcClient) -> None:
        for batch in (1, 2):
            p = await c.call("hfx_getProof", {"account": maker, "keys": ["global", "0x" + "11" * 32], "batch": batch})
            root = bytes.fromhex(p["stateRoot"][2:])
            assert p["batch"] == batch and p["account"] == maker and len(p["storageProof"]) == 4
            for entry in p["storageProof"]:
                key = bytes.fromhex(entry["key"][2:])
                nodes = [bytes.fromhex(n[2:]) for n in entry["proof"]]
                value = bytes.fromhex(entry["value"][2:])
                assert verify_proof(root, key, nodes) == (value or None)
            assert p["storageProof"][1]["value"] == "0x"  # an absent key proves its absence
            assert p["storageProof"][2]["key"] == "0x" + account_key(maker).hex()
        assert (await refused(c, "hfx_getProof", {})).data == {"reason": "NO_KEYS"}
        assert (await refused(c, "hfx_getProof", {"keys": ["0x" + "11" * 32] * 65})).data == {"reason": "TOO_MANY_KEYS"}
        assert (await refused(c, "hfx_getProof", {"keys": ["0x11"]})).code == -32602
        assert (await refused(c, "hfx_getProof", {"account": "0x" + "99" * 20})).code == NOT_FOUND

    serve(chain, scenario)


def test_withdrawal_proofs_only_against_final_matching_batches(world_and_chain: tuple[World, Chain]) -> None:
    world, chain = world_and_chain

    async def scenario(c: RpcClient) -> None:
        record = await c.call("hfx_getWithdrawal", [0])
        assert (record["account"], record["recipient"], record["amount"]) == (
            world.index["maker"], "0x" + RECIPIENT.hex(), 250 * USDC)
        e = await refused(c, "hfx_getWithdrawalProof", [0])
        assert e.code == NOT_FINAL and e.data == {"reason": "NOT_FINAL", "batch": 0}  # only genesis is final
        assert (await refused(c, "hfx_getWithdrawalProof", [0, 2])).code == NOT_FINAL
        chain.thread.call(lambda d: d.finalize(1, 20))
        chain.thread.call(lambda d: d.finalize(2, 21))
        p = await c.call("hfx_getWithdrawalProof", [0])
        assert (p["batch"], p["withdrawalId"], p["amount"]) == (2, 0, 250 * USDC)
        nodes = [bytes.fromhex(n[2:]) for n in p["nodes"]]
        assert p["proof"] == "0x" + b"".join(nodes).hex()
        value = verify_proof(chain.posted_root, withdrawal_key(0), nodes)
        assert value is not None and value[24:] == (250 * USDC).to_bytes(8, "big")
        e = await refused(c, "hfx_getWithdrawalProof", [1])
        assert e.code == NOT_FOUND and e.data == {"reason": "UNKNOWN_WITHDRAWAL"}
        assert (await refused(c, "hfx_getWithdrawal", [1])).code == NOT_FOUND
        assert (await refused(c, "hfx_getWithdrawalProof", [-1])).code == -32602
        # a record in batch 2 is not in batch 1's state
        assert (await refused(c, "hfx_getWithdrawalProof", [0, 1])).data == {"reason": "NOT_FINAL", "batch": 1}

        # a final batch whose posted root is not the node's: no proof against it
        world.time += 5
        withdraw = signed_withdraw(World.key("taker"), world.address("taker"), world.domain,
                                   world.index["taker"], RECIPIENT, 1 * USDC, 0)
        chain.post(Batch(world.time, (), (withdraw,)), lie=True)
        chain.thread.call(lambda d: d.finalize(3, 22))
        e = await refused(c, "hfx_getWithdrawalProof", [1])
        assert e.code == ROOT_MISMATCH and e.data == {"reason": "ROOT_MISMATCH", "batch": 3}
        st = await c.call("hfx_syncStatus")
        assert st["final"]["index"] == 3

    serve(chain, scenario)
