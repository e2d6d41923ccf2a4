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

import contextlib
import hashlib
import json
import os
import tempfile
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


# ---------------------------------------------------------------- compilation (cached on disk)

CACHE_FORMAT = 1
"""Version of the cache entries' layout: entries of another format are compiled again."""


def _recording_bundle(search_path: Path) -> Any:
    """A vyper ``FilesystemInputBundle`` over ``search_path`` that records, in its ``read`` dict,
    the sha256 of the exact bytes of every file the compiler loads."""
    from vyper.compiler.input_bundle import FileInput, FilesystemInputBundle, _NotFound

    class Recording(FilesystemInputBundle):  # type: ignore[misc]
        def __init__(self, paths: list[Path]) -> None:
            super().__init__(paths)
            self.read: dict[Path, str] = {}

        def _load_from_path(self, resolved_path: Path, original_path: Path) -> Any:
            try:
                data = Path(resolved_path).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                raise _NotFound(resolved_path) from None
            self.read[Path(resolved_path)] = hashlib.sha256(data).hexdigest()
            source_id = self._generate_source_id(resolved_path)
            return FileInput(source_id, original_path, resolved_path, data.decode())

    return Recording([search_path])


def cache_dir() -> Path:
    """Where compiled contracts are kept: ``$HFX_CACHE_DIR``, default ``~/.cache/hfx``."""
    override = os.environ.get("HFX_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "hfx"


@cache
def compiler_version() -> str:
    """The version of the installed ``vyper`` package that compiles the contracts (read from its
    metadata: a cache hit need not import the compiler)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vyper")
    except PackageNotFoundError:
        import vyper

        return str(vyper.__version__)


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _source_key(path: Path, contracts: Path) -> str:
    """How a source is named in an entry: relative to the contracts directory when inside it."""
    try:
        return path.resolve().relative_to(contracts.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _source_path(key: str, contracts: Path) -> Path:
    path = Path(key)
    return path if path.is_absolute() else contracts / path


def compile_source(name: str, contracts: Path = CONTRACTS_DIR) -> tuple[Compiled, dict[str, str]]:
    """Compile ``<contracts>/<name>.vy`` with no cache; returns it and the sha256 of every file
    the compiler read (the contract and each module it imports, directly or not)."""
    from vyper.compiler import compile_from_file_input

    path = contracts / f"{name}.vy"
    if not path.is_file():
        raise FileNotFoundError(f"no contract {path}")
    bundle = _recording_bundle(contracts)
    out = compile_from_file_input(
        bundle.load_file(path), input_bundle=bundle, output_formats=["abi", "bytecode"]
    )
    compiled = Compiled(name, out["abi"], bytes.fromhex(out["bytecode"].removeprefix("0x")))
    sources = {_source_key(p, contracts): digest for p, digest in bundle.read.items()}
    return compiled, sources


def _entry_path(name: str, contracts: Path, cache: Path) -> Path | None:
    """The entry of ``name`` for the current bytes of its own source and this compiler (None: no source)."""
    main = _sha256_file(contracts / f"{name}.vy")
    if main is None:
        return None
    key = hashlib.sha256(
        json.dumps([CACHE_FORMAT, compiler_version(), name, main]).encode()
    ).hexdigest()[:32]
    return cache / "compiled" / f"{name.replace('/', '__')}-{key}.json"


def _entry_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load_entry(path: Path, name: str, contracts: Path) -> Compiled | None:
    """The entry at ``path`` when it is intact and every source it was compiled from is unchanged."""
    try:
        raw = json.loads(path.read_text())
        body, digest = raw["body"], raw["digest"]
        if not isinstance(body, dict) or digest != _entry_digest(body):
            return None
        if body["format"] != CACHE_FORMAT or body["compiler"] != compiler_version() or body["name"] != name:
            return None
        sources = body["sources"]
        if not isinstance(sources, dict) or not sources:
            return None
        for key, sha in sources.items():
            if _sha256_file(_source_path(key, contracts)) != sha:
                return None
        abi = body["abi"]
        if not isinstance(abi, list):
            return None
        return Compiled(name, abi, bytes.fromhex(body["bytecode"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_entry(path: Path, compiled: Compiled, sources: dict[str, str]) -> None:
    """Write an entry atomically (a temporary file renamed over it); keep 8 entries per contract."""
    body = {
        "format": CACHE_FORMAT, "compiler": compiler_version(), "name": compiled.name,
        "sources": sources, "abi": compiled.abi, "bytecode": compiled.bytecode.hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"body": body, "digest": _entry_digest(body)}, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    prefix = path.name.rsplit("-", 1)[0] + "-"
    siblings = sorted(
        (p for p in path.parent.glob(prefix + "*.json") if p.name.rsplit("-", 1)[0] + "-" == prefix),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )
    for old in siblings[8:]:
        with contextlib.suppress(OSError):
            old.unlink()


def compile_cached(
    name: str, *, contracts: Path = CONTRACTS_DIR, cache: Path | None = None
) -> tuple[Compiled, bool]:
    """``<contracts>/<name>.vy`` compiled, through the disk cache under ``cache`` (default
    :func:`cache_dir`); returns it and whether the cache served it.

    An entry is used only when its own checksum holds and the contract and every module
    the compiler read for it have the same bytes, under the same compiler version; any
    other entry (stale, truncated, damaged) is compiled again and replaced. Writes are
    atomic, so processes compiling at once never see half an entry. An unwritable cache
    directory only costs the compilation."""
    root = cache_dir() if cache is None else cache
    path = _entry_path(name, contracts, root)
    if path is not None and path.exists():
        hit = _load_entry(path, name, contracts)
        if hit is not None:
            return hit, True
    compiled, sources = compile_source(name, contracts)
    path = _entry_path(name, contracts, root)  # the source may have changed while compiling
    if path is not None:
        with contextlib.suppress(OSError):
            _write_entry(path, compiled, sources)
    return compiled, False


@cache
def compile_contract(name: str) -> Compiled:
    """``contracts/<name>.vy`` (``name`` may be ``test/TestReplayProver``) compiled, once per
    process, through the disk cache (:func:`compile_cached`)."""
    return compile_cached(name)[0]


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
