"""``hfx deploy``: deploy the L1 contracts and write the files every process reads.

::

    HFX_DEPLOYER_KEY=0x… hfx deploy --rpc http://127.0.0.1:8545 --key-env HFX_DEPLOYER_KEY \\
        --out deployment.json --genesis-out genesis.json [--challenge-window 30] [...]

Deploys, in the order of :mod:`l1_contracts.deploy`: the devnet collateral
token (its minter is the deployer), the real one-step prover (the four step
contracts of the STF twin, then ``OneStepProver``), the bridge and the rollup,
with the constants given on the command line (default :data:`DEVNET_FAST`:
a 30-second challenge window, so a batch is final half a minute after it is
posted). Writes:

- ``--out``: :meth:`l1_contracts.deploy.Deployment.to_json` — what
  ``hfx sequencer`` (``[l1] deployment``), ``hfx challenger --deployment``
  and ``hfx node`` read;
- ``--genesis-out``: ``{"leaves": {key: value}, "root", "time", "config",
  "markets", "oracle_keys", "oracle_threshold"}`` — ``leaves`` is what
  ``hfx challenger --genesis`` loads (``challenger.cli.load_genesis``); the
  other fields are the parameters the leaves were built from, in the shape of
  the sequencer's ``[genesis]`` section (docs/sequencer.example.toml).

The genesis parameters default to :func:`devnet_genesis_params` (ETH and BTC
perpetuals, an ETH call and put expiring a week after genesis); ``--params
FILE`` takes ``{"config": {...}, "markets": [...]}`` in the same shape as the
genesis file writes them. Compiled contracts are cached on disk (``HFX_CACHE_DIR``,
default ``~/.cache/hfx``; :func:`l1_contracts.deploy.compile_cached`), keyed by the
bytes of each contract and of every module it imports and the compiler version, so
only the first deployment pays the 25–40 s compilation of the prover.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.address import is_address, to_checksum_address

from l1_contracts import deploy
from l1_contracts.config import DEVNET, ETHER, MAX_ORACLE_KEYS, RollupConfig
from state.constants import KIND_CALL, KIND_PERP, KIND_PUT
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import GenesisError, genesis_leaves
from state.keccak import keccak256
from state.layout import Config, Market

__all__ = [
    "DEVNET_FAST", "DeployError", "GenesisParams", "deploy_devnet",
    "devnet_genesis_params", "devnet_oracle_private_keys", "main", "params_from_json",
]

DEVNET_FAST = DEVNET.with_(
    challenge_window=30, clock=60, forced_inclusion_delay=120, fallback_period=600,
)
"""Devnet constants for a batch final within a minute: 30 s window, 60 s clocks,
1 ether proposer bond, ½ ether challenger bond, k = 8."""

KIND_BY_NAME = {"perp": KIND_PERP, "call": KIND_CALL, "put": KIND_PUT}
NAME_BY_KIND = {v: k for k, v in KIND_BY_NAME.items()}
WEEK = 7 * 86_400


class DeployError(RuntimeError):
    """The deployment cannot go ahead: bad input, an L1 that does not answer, no funds."""


def devnet_oracle_private_keys(n: int = 3) -> list[bytes]:
    """The devnet oracle keys: ``keccak256("hfx-devnet-oracle-<i>")``.

    The same keys as ``sequencer.oracle_feeder.devnet_oracle_keys`` (tested
    equal); public, so never use them on a real network."""
    return [keccak256(b"hfx-devnet-oracle-%d" % i) for i in range(n)]


@dataclass(frozen=True)
class GenesisParams:
    """What the genesis state is built from (docs/stf.md §9)."""

    time: int
    config: Config
    markets: tuple[Market, ...]
    oracle_keys: tuple[str, ...]
    oracle_threshold: int

    def leaves(self) -> dict[bytes, bytes]:
        """The genesis leaves (raises :class:`DeployError` for a configuration the STF refuses)."""
        try:
            return genesis_leaves(self.config, self.markets, self.time)
        except GenesisError as exc:
            raise DeployError(f"genesis: {exc}") from None

    def root(self) -> bytes:
        """The genesis state root."""
        return StateDB.in_memory().initialize(dict(self.leaves()))

    def to_json(self) -> str:
        """The genesis file: leaves, root and the parameters."""
        leaves = self.leaves()
        doc = {
            "leaves": {"0x" + k.hex(): "0x" + v.hex() for k, v in sorted(leaves.items())},
            "root": "0x" + StateDB.in_memory().initialize(dict(leaves)).hex(),
            "time": self.time,
            "config": asdict(self.config),
            "markets": [market_json(m) for m in self.markets],
            "oracle_keys": list(self.oracle_keys),
            "oracle_threshold": self.oracle_threshold,
        }
        return json.dumps(doc, indent=1)


def market_json(m: Market) -> dict[str, Any]:
    """A market in the sequencer TOML's ``[[genesis.markets]]`` shape."""
    out: dict[str, Any] = {"kind": NAME_BY_KIND[m.kind], "underlying": m.underlying,
                           "im_bps": m.im_bps, "mm_bps": m.mm_bps, "tick": m.tick, "lot": m.lot,
                           "size_decimals": m.size_decimals}
    if m.kind != KIND_PERP:
        out["strike"] = m.strike
        out["expiry"] = m.expiry
    return out


def devnet_genesis_params(time: int, oracle_keys: Sequence[str], threshold: int = 1) -> GenesisParams:
    """ETH-PERP, BTC-PERP, an ETH 3,200 call and an ETH 2,800 put expiring a week after ``time``.

    Prices are collateral units (6 decimals: 3,000,000 = 3.000000) per lot;
    fees 5 / 1 bps, liquidation penalty 150 bps (bonus 50), sync buffer
    100 bps, oracle prices stale after 60 s."""
    config = Config(taker_fee_bps=5, maker_rebate_bps=1, liquidation_penalty_bps=150,
                    liquidator_bonus_bps=50, sync_buffer_bps=100, funding_cap_bps=75,
                    max_oracle_age=60)
    expiry = time + WEEK
    markets = (
        Market(KIND_PERP, 0, 1000, 500, 1_000, 1, 0, 0, 3),
        Market(KIND_PERP, 1, 1000, 500, 1_000, 1, 0, 0, 4),
        Market(KIND_CALL, 0, 1500, 1000, 100, 1, 3_200_000, expiry, 3),
        Market(KIND_PUT, 0, 1500, 1000, 100, 1, 2_800_000, expiry, 3),
    )
    return GenesisParams(time, config, markets, tuple(oracle_keys), threshold)


def params_from_json(raw: dict[str, Any], time: int, oracle_keys: Sequence[str],
                     threshold: int) -> GenesisParams:
    """Genesis parameters from ``{"config": {...}, "markets": [...]}`` (the genesis file's shape)."""
    try:
        config = Config(**{k: int(v) for k, v in raw["config"].items()})
        markets = tuple(
            Market(KIND_BY_NAME[str(m["kind"])], int(m["underlying"]), int(m["im_bps"]),
                   int(m["mm_bps"]), int(m["tick"]), int(m["lot"]), int(m.get("strike", 0)),
                   int(m.get("expiry", 0)), int(m.get("size_decimals", 0)))
            for m in raw["markets"]
        )
    except KeyError as exc:
        raise DeployError(f"genesis parameters: missing or unknown {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DeployError(f"genesis parameters: {exc}") from None
    params = GenesisParams(time, config, markets, tuple(oracle_keys), threshold)
    params.leaves()  # validates
    return params


# ---------------------------------------------------------------- compilation cache


# ---------------------------------------------------------------- deployment


def deploy_devnet(
    rpc_url: str, private_key: str, params: GenesisParams | None, constants: RollupConfig,
    *, oracle_keys: Sequence[str], threshold: int, test_prover: bool = False,
    params_raw: dict[str, Any] | None = None, genesis_time: int | None = None,
    operator: str | None = None,
) -> tuple[deploy.Deployment, GenesisParams]:
    """Deploy token, prover, bridge and rollup to ``rpc_url``; returns the deployment and genesis.

    Without ``params`` the genesis is built at ``genesis_time`` (default: the
    L1 head's timestamp) from ``params_raw`` or :func:`devnet_genesis_params`.
    ``operator`` (default: the deployer) is the rollup's operator, the account
    whose batches are posted without the fallback period.
    """
    from web3 import Web3

    from l1_contracts.bindings import L1Error, Transactor

    try:
        account = Account.from_key(private_key)
    except (ValueError, TypeError) as exc:
        raise DeployError(f"the deployer key is not a private key: {exc}") from None
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    try:
        head = w3.eth.get_block("latest")
        balance = w3.eth.get_balance(account.address)
    except Exception as exc:  # connection refused, bad URL, not JSON-RPC
        raise DeployError(f"no L1 answers at {rpc_url}: {exc}") from None
    if balance < ETHER // 10:
        raise DeployError(f"the deployer {account.address} has {balance} wei on {rpc_url}: fund it first")
    if params is None:
        at = int(head["timestamp"]) if genesis_time is None else genesis_time
        params = (params_from_json(params_raw, at, oracle_keys, threshold) if params_raw is not None
                  else devnet_genesis_params(at, oracle_keys, threshold))
    genesis = deploy.Genesis(params.root(), params.time, list(params.oracle_keys), params.oracle_threshold)
    try:
        tx = Transactor(w3, account)
        token = tx.deploy(deploy.compile_contract("Token"), ["HFX Devnet USD", "dUSD", account.address])
        if test_prover:
            prover = tx.deploy(deploy.compile_contract(deploy.TEST_PROVER), [])
        else:
            parts = [tx.deploy(deploy.compile_contract(name), []) for name in deploy.STEP_CONTRACTS]
            prover = tx.deploy(deploy.compile_contract("OneStepProver"), parts)
        d = deploy.deploy_web3(rpc_url, private_key, genesis, constants, token=token, prover=prover,
                               operator=operator)
    except L1Error as exc:
        raise DeployError(f"a deployment transaction was refused: {exc}") from None
    return d, params


def _oracle_addresses(text: str | None, devnet_count: int) -> list[str]:
    if not text:
        return [to_checksum_address(address_of(k)) for k in devnet_oracle_private_keys(devnet_count)]
    out = []
    for part in text.split(","):
        part = part.strip()
        if not is_address(part):
            raise DeployError(f"--oracle-keys: {part!r} is not an address")
        out.append(to_checksum_address(part))
    return deploy.sorted_keys(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    c = DEVNET_FAST
    p = argparse.ArgumentParser(prog="hfx deploy", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rpc", required=True, help="L1 JSON-RPC URL")
    p.add_argument("--key-env", required=True, help="environment variable holding the deployer's private key")
    p.add_argument("--out", required=True, help="deployment JSON to write")
    p.add_argument("--genesis-out", required=True, help="genesis JSON to write (leaves and parameters)")
    p.add_argument("--params", help='genesis parameters JSON: {"config": {...}, "markets": [...]}')
    p.add_argument("--genesis-time", type=int, help="L2 genesis time (default: the L1 head's timestamp)")
    p.add_argument("--oracle-keys", help="comma-separated oracle signer addresses (default: the devnet oracle keys)")
    p.add_argument("--devnet-oracles", type=int, default=3, help="how many devnet oracle keys when --oracle-keys is not given")
    p.add_argument("--oracle-threshold", type=int, default=1)
    p.add_argument("--challenge-window", type=int, default=c.challenge_window, help="seconds")
    p.add_argument("--clock", type=int, default=c.clock, help="each side's game clock, seconds")
    p.add_argument("--k", type=int, default=c.k, help="dissection arity")
    p.add_argument("--forced-inclusion-delay", type=int, default=c.forced_inclusion_delay, help="seconds")
    p.add_argument("--fallback-period", type=int, default=c.fallback_period, help="seconds")
    p.add_argument("--proposer-bond", type=int, default=c.proposer_bond, help="wei")
    p.add_argument("--challenger-bond", type=int, default=c.challenger_bond, help="wei")
    p.add_argument("--burn-bps", type=int, default=c.burn_bps)
    p.add_argument("--operator", help="the rollup's operator address (default: the deployer)")
    p.add_argument("--test-prover", action="store_true",
                   help="deploy the test double instead of the one-step prover (game-rule tests only)")
    return p.parse_args(list(argv) if argv is not None else None)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Deploy and write the two files; exit code 2 with a message on any refusal."""
    args = parse_args(argv)
    try:
        key = os.environ.get(args.key_env)
        if not key:
            raise DeployError(f"set the deployer's private key in ${args.key_env}")
        try:
            constants = RollupConfig(
                challenge_window=args.challenge_window, proposer_bond=args.proposer_bond,
                challenger_bond=args.challenger_bond, k=args.k, clock=args.clock,
                forced_inclusion_delay=args.forced_inclusion_delay,
                fallback_period=args.fallback_period, burn_bps=args.burn_bps,
            )
        except ValueError as exc:
            raise DeployError(f"constants: {exc}") from None
        if not 1 <= args.devnet_oracles <= MAX_ORACLE_KEYS:
            raise DeployError(f"--devnet-oracles must be in [1, {MAX_ORACLE_KEYS}]")
        oracles = _oracle_addresses(args.oracle_keys, args.devnet_oracles)
        if not 1 <= len(oracles) <= MAX_ORACLE_KEYS or len(set(oracles)) != len(oracles):
            raise DeployError(f"need 1..{MAX_ORACLE_KEYS} distinct oracle keys")
        if not 1 <= args.oracle_threshold <= len(oracles):
            raise DeployError(f"--oracle-threshold must be in [1, {len(oracles)}]")
        if args.operator is not None and not is_address(args.operator):
            raise DeployError(f"--operator: {args.operator!r} is not an address")
        raw = None
        if args.params:
            try:
                raw = json.loads(Path(args.params).read_text())
            except (OSError, ValueError) as exc:
                raise DeployError(f"--params: {exc}") from None
            if not isinstance(raw, dict):
                raise DeployError("--params: expected a JSON object")
            # checked now, before anything is sent (deploy_devnet builds it again at the L1's time)
            params_from_json(raw, args.genesis_time or int(time.time()), oracles, args.oracle_threshold)
        d, params = deploy_devnet(
            args.rpc, key, None, constants, oracle_keys=oracles, threshold=args.oracle_threshold,
            test_prover=args.test_prover, params_raw=raw, genesis_time=args.genesis_time,
            operator=args.operator,
        )
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write(Path(args.out), d.to_json())
    _write(Path(args.genesis_out), params.to_json())
    print(json.dumps({"rollup": d.rollup, "bridge": d.bridge, "token": d.token, "prover": d.prover,
                      "block": d.block, "genesis_root": d.genesis_root,
                      "challenge_window": d.config.challenge_window}))
    return 0
