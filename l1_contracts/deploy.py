"""Compile the HFX L1 contracts with the ``vyper`` package and deploy them.

Two paths, one order of deployment:

- :func:`deploy_web3` deploys to any JSON-RPC URL (anvil, a testnet) with a
  private key, and returns a :class:`Deployment` (addresses, block, config);
- :func:`deploy_boa` deploys into titanoboa's in-process EVM for fast tests,
  and returns the contract objects.

Order: token (unless an existing one is given), prover (unless given: the
four step contracts of the STF twin, then ``OneStepProver`` bound to them),
bridge, rollup. The bridge and the rollup refer to each other: the bridge is deployed
with the rollup's address computed in advance from the deployer's nonce, and
the rollup's constructor checks that ``bridge.ROLLUP() == self``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import rlp
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from l1_contracts.config import DEVNET, RollupConfig

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"

TEST_PROVER = "test/TestReplayProver"
"""The test double of the one-step prover, for tests of the game's rules only."""
STEP_CONTRACTS = ("stf/StfAccounts", "stf/StfTrade", "stf/StfPrices", "stf/StfLiquidation")
"""The STF twin's step contracts, in the order ``OneStepProver``'s constructor takes them."""


@dataclass(frozen=True)
class Compiled:
    """One compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes


@dataclass(frozen=True)
class Genesis:
    """What the rollup fixes about the L2 at deployment (docs/stf.md §3, §9)."""

    root: bytes
    """The genesis state root."""
    time: int
    """The genesis L2 time; the first batch's timestamp is not below it."""
    oracle_keys: Sequence[str]
    """The oracle key set (checksummed addresses)."""
    oracle_threshold: int
    """Distinct oracle signers an update needs."""


@dataclass(frozen=True)
class Deployment:
    """Addresses of one deployment and what a node needs to follow it."""

    chain_id: int
    token: str
    bridge: str
    rollup: str
    prover: str
    operator: str
    block: int
    """The bridge's deployment block (the first that can hold a queue event): followers start here."""
    config: RollupConfig
    genesis_root: str
    genesis_time: int
    oracle_keys: list[str] = field(default_factory=list)
    oracle_threshold: int = 1

    def to_json(self) -> str:
        """A JSON document of the deployment (for a devnet's state directory)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Deployment:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        raw["config"] = RollupConfig(**raw["config"])
        return Deployment(**raw)


@cache
def compile_contract(name: str) -> Compiled:
    """Compile ``contracts/<name>.vy`` (``name`` may be ``test/TestReplayProver``)."""
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle

    path = CONTRACTS_DIR / f"{name}.vy"
    bundle = FilesystemInputBundle([CONTRACTS_DIR])
    out = compile_from_file_input(
        bundle.load_file(path), input_bundle=bundle, output_formats=["abi", "bytecode"]
    )
    return Compiled(name, out["abi"], bytes.fromhex(out["bytecode"].removeprefix("0x")))


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from ``sender`` at ``nonce`` deploys to."""
    raw = keccak(rlp.encode([bytes.fromhex(sender.removeprefix("0x")), nonce]))[12:]
    return to_checksum_address(raw)


def sorted_keys(keys: Sequence[str]) -> list[str]:
    """Oracle keys in strictly increasing numeric order, as the rollup requires."""
    return sorted((to_checksum_address(k) for k in keys), key=lambda k: int(k, 16))


def rollup_args(
    bridge: str, prover: str, operator: str, genesis: Genesis, config: RollupConfig
) -> list[Any]:
    """The rollup constructor's arguments, in order."""
    return [
        bridge,
        prover,
        operator,
        genesis.root,
        genesis.time,
        sorted_keys(genesis.oracle_keys),
        genesis.oracle_threshold,
        config.k,
        config.challenge_window,
        config.clock,
        config.forced_inclusion_delay,
        config.fallback_period,
        config.proposer_bond,
        config.challenger_bond,
        config.burn_bps,
    ]


# ---------------------------------------------------------------- web3


def deploy_web3(
    rpc_url: str,
    private_key: str | bytes,
    genesis: Genesis,
    config: RollupConfig = DEVNET,
    *,
    operator: str | None = None,
    token: str | None = None,
    prover: str | None = None,
    token_name: str = "HFX Devnet USD",
    token_symbol: str = "dUSD",
    test_prover: bool = False,
) -> Deployment:
    """Deploy to ``rpc_url`` from the account of ``private_key``.

    ``operator`` defaults to the deployer; ``token`` to a new devnet
    :file:`Token.vy` whose minter is the deployer; ``prover`` to a new
    one-step prover (or, with ``test_prover``, the test double that game-rule
    tests use). Waits for every receipt.
    """
    from web3 import Web3

    from l1_contracts.bindings import Transactor

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    account = Account.from_key(private_key)
    tx = Transactor(w3, account)
    operator = to_checksum_address(operator or account.address)
    if token is None:
        token = tx.deploy(compile_contract("Token"), [token_name, token_symbol, account.address])
    if prover is None and test_prover:
        prover = tx.deploy(compile_contract(TEST_PROVER), [])
    elif prover is None:
        parts = [tx.deploy(compile_contract(name), []) for name in STEP_CONTRACTS]
        prover = tx.deploy(compile_contract("OneStepProver"), parts)
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    rollup_at = create_address(account.address, nonce + 1)
    bridge = tx.deploy(compile_contract("Bridge"), [token, rollup_at])
    first_block = int(tx.last_receipt["blockNumber"])
    rollup = tx.deploy(
        compile_contract("Rollup"), rollup_args(bridge, prover, operator, genesis, config)
    )
    if rollup != rollup_at:
        raise RuntimeError(f"rollup deployed at {rollup}, expected {rollup_at}: nonce raced")
    return Deployment(
        chain_id=w3.eth.chain_id,
        token=to_checksum_address(token),
        bridge=to_checksum_address(bridge),
        rollup=to_checksum_address(rollup),
        prover=to_checksum_address(prover),
        operator=operator,
        block=first_block,
        config=config,
        genesis_root="0x" + genesis.root.hex(),
        genesis_time=genesis.time,
        oracle_keys=[to_checksum_address(k) for k in genesis.oracle_keys],
        oracle_threshold=genesis.oracle_threshold,
    )


# ---------------------------------------------------------------- titanoboa


@dataclass
class BoaDeployment:
    """Contracts deployed in titanoboa's in-process EVM (tests)."""

    token: Any
    bridge: Any
    rollup: Any
    prover: Any
    operator: str
    config: RollupConfig
    genesis: Genesis


@cache
def boa_deployer(name: str) -> Any:
    """A titanoboa deployer for ``contracts/<name>.vy`` (compiled once per process)."""
    import boa

    return boa.load_partial(str(CONTRACTS_DIR / f"{name}.vy"))


def deploy_boa(
    genesis: Genesis,
    config: RollupConfig,
    operator: str,
    *,
    deployer: str | None = None,
    prover: Any = None,
    test_prover: bool = False,
) -> BoaDeployment:
    """Deploy token, prover (unless given; the test double with ``test_prover``),
    bridge and rollup with titanoboa.

    ``deployer`` (default: titanoboa's default account) deploys and is the
    token's minter.
    """
    import boa

    sender = deployer or boa.env.eoa
    with boa.env.prank(sender):
        token = boa_deployer("Token").deploy("HFX Test USD", "tUSD", sender)
        if prover is None and test_prover:
            prover = boa_deployer(TEST_PROVER).deploy()
        elif prover is None:
            parts = [boa_deployer(name).deploy() for name in STEP_CONTRACTS]
            prover = boa_deployer("OneStepProver").deploy(*(p.address for p in parts))
        nonce = boa.env.evm.vm.state.get_nonce(bytes.fromhex(sender.removeprefix("0x")))
        rollup_at = create_address(sender, nonce + 1)
        bridge = boa_deployer("Bridge").deploy(token.address, rollup_at)
        rollup = boa_deployer("Rollup").deploy(
            *rollup_args(bridge.address, prover.address, operator, genesis, config)
        )
    if to_checksum_address(rollup.address) != rollup_at:
        raise RuntimeError("rollup address mismatch")
    return BoaDeployment(token, bridge, rollup, prover, operator, config, genesis)
