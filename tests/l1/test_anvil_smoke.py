"""One end-to-end run on a real L1 node: anvil from the npm package
``@foundry-rs/anvil`` (``npm install`` (run by scripts/test) installs it under node_modules/).

Starts anvil on a free loopback port (``node.anvil.Anvil``), deploys every contract with
``l1_contracts.deploy.deploy_web3``, deposits, posts a real batch with its
honest root, reads it back through ``l1_contracts.bindings``, and stops anvil.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from l1_contracts.bindings import BatchStatus, Contracts, Transactor, parse_batch
from l1_contracts.config import DEVNET
from l1_contracts.deploy import Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, ListQueues
from state.db import StateDB
from state.txs import encode_deposit
from tests.world import ETH, ETH_PERP, World

# anvil's first default account (its well-known test mnemonic)
DEV_KEY = DEV_KEYS[0]

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)


@pytest.fixture
def anvil_url() -> Iterator[str]:
    with Anvil() as node:  # node.anvil: free loopback port, stopped (process group) on exit
        yield node.url


def test_deploy_deposit_post(anvil_url: str) -> None:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(anvil_url))
    operator = Account.from_key(DEV_KEY)
    now = int(w3.eth.get_block("latest")["timestamp"])

    world = World(time=now - 60)
    db = StateDB.in_memory()
    genesis_root = db.initialize(world.leaves)
    keys = sorted(to_checksum_address(a) for a in world.chain.oracle_keys)
    deployment = deploy_web3(anvil_url, DEV_KEY, Genesis(genesis_root, world.time, keys, 1), DEVNET)
    assert deployment.operator == operator.address and deployment.chain_id == w3.eth.chain_id

    tx = Transactor(w3, operator)
    c = Contracts.connect(w3, deployment, tx)
    assert c.rollup.batch(0).post_root == genesis_root
    assert c.rollup.constant("K") == DEVNET.k

    # a deposit from the operator's own account
    c.token.mint(operator.address, 5_000_000)
    c.token.approve(deployment.bridge, 5_000_000)
    c.bridge.deposit(5_000_000)
    item = c.bridge.deposit_at(0)
    assert (item.owner, item.amount) == (operator.address, 5_000_000)

    # the batch: consume it and publish prices, with the deployment's EIP-712 domain
    chain = ChainConfig(deployment.chain_id, bytes.fromhex(deployment.rollup[2:]), world.chain.oracle_keys, 1)
    world.chain, world.domain = chain, chain.domain
    t = int(w3.eth.get_block("latest")["timestamp"])
    world.time = t
    oracle = world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, timestamp=t)
    batch = Batch(t, (), (encode_deposit(), oracle))
    queues = ListQueues([L1Deposit(bytes.fromhex(operator.address[2:]), 5_000_000)])
    result = db.apply_batch(batch, BatchContext.create(t, chain, queues, []))
    assert [r.code for r in result.receipts] == [0, 0]

    receipt = c.rollup.post_batch(batch.encode(), result.post_root, 2, value=DEVNET.proposer_bond)
    print(f"GAS | postBatch on anvil (2 steps, {len(batch.encode())} bytes) | {receipt['gasUsed']:,}")
    info = c.rollup.batch(1)
    assert info.status == BatchStatus.PENDING and info.post_root == result.post_root
    assert info.deposit_end == 1 and c.rollup.deposit_consumed() == 1
    (event,) = c.rollup.batch_posted_events(deployment.block)
    assert event.index == 1 and event.data_hash == info.data_hash == event.data.data_hash()
    assert c.rollup.batch_bytes(event.tx_hash) == batch.encode()
    assert parse_batch(c.rollup.batch_bytes(event.tx_hash)).steps_root == event.data.steps_root
    assert c.rollup.free_bond(operator.address) == 0 and w3.eth.get_balance(deployment.rollup) == DEVNET.proposer_bond
    assert c.rollup.finalized_root(1) == b"\x00" * 32
