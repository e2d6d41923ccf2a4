"""Typed Python bindings of the HFX L1 contracts (docs/l1.md).

Two layers:

- pure helpers that mirror what the contracts compute, so every process
  derives the same commitments from L1 data alone: :func:`parse_batch`
  (the rollup's parse of docs/stf.md §5.1) and :class:`BatchData` (the data
  commitment the one-step prover receives); the batch Merkle tree is in
  :mod:`proofs.commitment`, the game's split points in :mod:`proofs.game`;
- web3.py clients (:class:`RollupClient`, :class:`BridgeClient`,
  :class:`TokenClient`) for every external function the sequencer, the
  challenger and the node use, with typed results and event readers.
  Transactions are signed locally by a :class:`Transactor`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from l1_contracts.config import MAX_BATCH_BYTES
from proofs.commitment import merkle_branch, merkle_root
from state.batch import Batch
from state.errors import InvalidBatchError
from state.keccak import keccak256

# ---------------------------------------------------------------- enums


class BatchStatus(IntEnum):
    """Rollup ``BatchStatus`` flag values (zero is never valid)."""

    PENDING = 1
    FINAL = 2
    REMOVED = 4


class GameStatus(IntEnum):
    """Dispute game ``GameStatus`` flag values (zero is never valid)."""

    ACTIVE = 1
    ASSERTER_WON = 2
    CHALLENGER_WON = 4
    CANCELLED = 8


class Side(IntEnum):
    """Whose clock runs in a game (zero is never valid)."""

    ASSERTER = 1
    CHALLENGER = 2


class L1Error(Exception):
    """A contract call reverted; ``code`` is the contract's reason code (docs/l1.md)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class BatchRejected(ValueError):
    """Batch bytes the rollup would refuse to parse (``BAD_BATCH``, ``NO_STEPS``)."""


# ---------------------------------------------------------------- the batch tree

# ---------------------------------------------------------------- batches

KIND_DEPOSIT = 0x01
KIND_FORCED = 0x0A


@dataclass(frozen=True)
class ParsedBatch:
    """Batch bytes as the rollup parses them."""

    timestamp: int
    orders: tuple[bytes, ...]
    """The 104-byte entries (what the STF reads)."""
    steps: tuple[bytes, ...]
    n_deposits: int
    """Steps whose first byte is 0x01: deposit-queue items the batch consumes."""
    n_forced: int
    """Steps whose first byte is 0x0A: forced-queue items the batch consumes."""
    written: tuple[bytes, ...]
    """The entries as the batch bytes write them (docs/stf.md §5.2): the leaves hash these."""

    @property
    def orders_root(self) -> bytes:
        """Merkle root of keccak256(written order entry i)."""
        return merkle_root([keccak256(o) for o in self.written])

    @property
    def steps_root(self) -> bytes:
        """Merkle root of keccak256(step i)."""
        return merkle_root([keccak256(s) for s in self.steps])

    def step_branch(self, index: int) -> list[bytes]:
        """The Merkle branch of step ``index`` against :attr:`steps_root`."""
        return merkle_branch([keccak256(s) for s in self.steps], index)

    def order_branch(self, index: int) -> list[bytes]:
        """The Merkle branch of order entry ``index`` against :attr:`orders_root`."""
        return merkle_branch([keccak256(o) for o in self.written], index)


def parse_batch(data: bytes) -> ParsedBatch:
    """Parse batch bytes exactly as ``Rollup.postBatch`` does; raises :class:`BatchRejected`.

    The format is the STF's (:meth:`state.batch.Batch.decode`); L1 adds a size
    bound and refuses a batch without steps."""
    if len(data) > MAX_BATCH_BYTES:
        raise BatchRejected("batch too long")
    try:
        batch = Batch.decode(data)
    except InvalidBatchError as exc:
        raise BatchRejected(str(exc)) from exc
    return parsed_of(batch, len(data))


def parsed_of(batch: Batch, size: int) -> ParsedBatch:
    """:func:`parse_batch` of bytes already decoded to ``batch`` (``size`` of them)."""
    if size > MAX_BATCH_BYTES:
        raise BatchRejected("batch too long")
    if not batch.steps:
        raise BatchRejected("no steps")
    n_deposits = sum(1 for s in batch.steps if s[:1] == bytes([KIND_DEPOSIT]))
    n_forced = sum(1 for s in batch.steps if s[:1] == bytes([KIND_FORCED]))
    return ParsedBatch(batch.timestamp, batch.orders, batch.steps, n_deposits, n_forced, batch.written)


@dataclass(frozen=True)
class BatchData:
    """IOneStepProver.BatchData: the data commitment of one batch."""

    orders_root: bytes
    steps_root: bytes
    timestamp: int
    n_orders: int
    n_steps: int
    deposit_start: int
    deposit_end: int
    forced_start: int
    forced_end: int

    TYPES = ("bytes32", "bytes32", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256")

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple (for passing as the struct argument)."""
        return (
            self.orders_root, self.steps_root, self.timestamp, self.n_orders, self.n_steps,
            self.deposit_start, self.deposit_end, self.forced_start, self.forced_end,
        )

    def encode(self) -> bytes:
        """``abi_encode(BatchData)`` (9 words)."""
        return abi_encode(list(self.TYPES), list(self.as_tuple()))

    def data_hash(self) -> bytes:
        """keccak256(abi_encode(BatchData)), as the rollup stores it."""
        return keccak256(self.encode())

    @staticmethod
    def decode(raw: bytes) -> BatchData:
        """Inverse of :meth:`encode`."""
        if len(raw) != 9 * 32:
            raise ValueError("a batch commitment is 9 words")
        words = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        return BatchData(words[0], words[1], *(int.from_bytes(w, "big") for w in words[2:]))

    @staticmethod
    def of(parsed: ParsedBatch, deposit_start: int, forced_start: int) -> BatchData:
        """The commitment of ``parsed`` posted when the queues were consumed up to the given starts."""
        return BatchData(
            parsed.orders_root, parsed.steps_root, parsed.timestamp, len(parsed.orders),
            len(parsed.steps), deposit_start, deposit_start + parsed.n_deposits,
            forced_start, forced_start + parsed.n_forced,
        )

    @staticmethod
    def from_abi(raw: Any) -> BatchData:
        """From a decoded struct (tuple or mapping)."""
        if isinstance(raw, Mapping):
            return BatchData(**{k: raw[k] for k in BatchData.__dataclass_fields__})
        return BatchData(*raw)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class BatchInfo:
    """Rollup.batch(i)."""

    index: int
    parent: int
    height: int
    pre_root: bytes
    post_root: bytes
    data_hash: bytes
    timestamp: int
    proposer: str
    posted_at: int
    deadline: int
    status: BatchStatus
    n_steps: int
    deposit_end: int
    forced_end: int
    open_games: int


@dataclass(frozen=True)
class GameInfo:
    """Rollup.game(g)."""

    game: int
    batch: int
    asserter: str
    challenger: str
    status: GameStatus
    turn: Side
    lo: int
    hi: int
    lo_root: bytes
    hi_root: bytes
    roots_hash: bytes
    asserter_clock: int
    challenger_clock: int
    last_move: int
    round: int

    @property
    def at_one_step(self) -> bool:
        """The proof is due."""
        return self.hi - self.lo == 1

    def expiry(self) -> int:
        """When the running clock runs out (a move is allowed up to and including it)."""
        left = self.asserter_clock if self.turn == Side.ASSERTER else self.challenger_clock
        return self.last_move + left


@dataclass(frozen=True)
class BatchPostedEvent:
    """A ``BatchPosted`` log, with the transaction that carries the batch bytes."""

    index: int
    parent: int
    proposer: str
    pre_root: bytes
    post_root: bytes
    data_hash: bytes
    data: BatchData
    deadline: int
    tx_hash: bytes
    block_number: int


@dataclass(frozen=True)
class DepositItem:
    """Bridge.depositAt(i)."""

    owner: str
    amount: int
    time: int


@dataclass(frozen=True)
class ForcedItem:
    """Bridge.forcedAt(i)."""

    sender: str
    payload: bytes
    time: int


def _field(raw: Any, name: str, index: int) -> Any:
    return raw[name] if isinstance(raw, Mapping) else raw[index]


def batch_info_from_abi(index: int, raw: Any) -> BatchInfo:
    """A :class:`BatchInfo` from a decoded ``BatchInfo`` struct."""
    names = [f for f in BatchInfo.__dataclass_fields__ if f != "index"]
    v = {n: _field(raw, n, i) for i, n in enumerate(names)}
    v["status"] = BatchStatus(v["status"])
    v["proposer"] = to_checksum_address(v["proposer"])
    return BatchInfo(index=index, **v)


def game_info_from_abi(game: int, raw: Any) -> GameInfo:
    """A :class:`GameInfo` from a decoded ``Game`` struct."""
    names = [f for f in GameInfo.__dataclass_fields__ if f != "game"]
    v = {n: _field(raw, n, i) for i, n in enumerate(names)}
    v["status"] = GameStatus(v["status"])
    v["turn"] = Side(v["turn"])
    v["asserter"] = to_checksum_address(v["asserter"])
    v["challenger"] = to_checksum_address(v["challenger"])
    return GameInfo(game=game, **v)


# ---------------------------------------------------------------- web3


def revert_code(exc: BaseException) -> str:
    """The reason code of a web3 revert (``"execution reverted: CODE"`` → ``CODE``)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    marker = "execution reverted: "
    if marker in text:
        return text.split(marker, 1)[1].split("'")[0].split('"')[0].strip()
    return text


class Transactor:
    """Signs transactions locally with one account and waits for their receipts."""

    def __init__(self, w3: Any, account: LocalAccount, *, timeout: float = 120.0) -> None:
        self.w3 = w3
        self.account = account
        self.timeout = timeout
        self.chain_id: int = w3.eth.chain_id
        self.last_receipt: Any = None

    @property
    def address(self) -> str:
        """The sending account."""
        return str(self.account.address)

    def _fees(self) -> dict[str, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
        tip = 10**9
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def send_raw(self, tx: dict[str, Any]) -> Any:
        """Fill nonce, gas and fees, sign, send and wait; raises :class:`L1Error` on a revert."""
        from web3.exceptions import ContractLogicError

        tx = dict(tx)
        tx.setdefault("from", self.address)
        tx.setdefault("chainId", self.chain_id)
        tx.setdefault("value", 0)
        tx["nonce"] = self.w3.eth.get_transaction_count(self.address, "pending")
        tx.update(self._fees())
        if "gas" not in tx:
            try:
                tx["gas"] = self.w3.eth.estimate_gas(tx) * 6 // 5 + 10_000
            except ContractLogicError as exc:
                raise L1Error(revert_code(exc), str(exc)) from exc
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if receipt["status"] != 1:
            raise L1Error("REVERTED", f"transaction {tx_hash.hex()} reverted")
        self.last_receipt = receipt
        return receipt

    def send(self, call: Any, value: int = 0) -> Any:
        """Send a contract function call (``contract.functions.f(...)``)."""
        tx = call.build_transaction({"from": self.address, "value": value, "gas": 1, "nonce": 0, **self._fees()})
        del tx["gas"]
        return self.send_raw({"to": tx["to"], "data": tx["data"], "value": value})

    def deploy(self, compiled: Any, args: Sequence[Any]) -> str:
        """Deploy a :class:`l1_contracts.deploy.Compiled` contract; returns its address."""
        factory = self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        data = factory.constructor(*args).data_in_transaction
        receipt = self.send_raw({"data": data})
        return to_checksum_address(receipt["contractAddress"])


class _Client:
    """A contract at an address, read through web3 and written through a Transactor."""

    NAME = ""

    def __init__(self, w3: Any, address: str, transactor: Transactor | None = None) -> None:
        from l1_contracts.deploy import compile_contract

        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=compile_contract(self.NAME).abi)
        self.tx = transactor

    def _call(self, name: str, *args: Any) -> Any:
        from web3.exceptions import ContractLogicError

        try:
            return getattr(self.contract.functions, name)(*args).call()
        except ContractLogicError as exc:
            raise L1Error(revert_code(exc), str(exc)) from exc

    def _send(self, name: str, *args: Any, value: int = 0) -> Any:
        if self.tx is None:
            raise RuntimeError("read-only client: no transactor")
        return self.tx.send(getattr(self.contract.functions, name)(*args), value)

    def _logs(self, event: str, from_block: int, to_block: int | str = "latest", **filters: Any) -> list[Any]:
        ev = getattr(self.contract.events, event)()
        return list(ev.get_logs(from_block=from_block, to_block=to_block, argument_filters=filters or None))


PROVER_MIN_CALLDATA = 4096
"""``OneStepProver.prove`` reads its trailing proofs in windows of this many bytes."""


def prove_calldata(encoded: bytes, proofs: bytes) -> bytes:
    """The calldata of ``OneStepProver.prove``: the ABI-encoded call, then the
    proofs region (``ProverInput.proofs``: the pre-state's root node and the
    proofs without theirs), which ends the calldata (padded in between to the
    prover's minimum)."""
    pad = max(0, PROVER_MIN_CALLDATA - len(encoded) - len(proofs))
    return encoded + bytes(pad) + proofs


class ProverClient(_Client):
    """The one-step prover: executes one step and records the root after it."""

    NAME = "OneStepProver"

    def calldata(
        self, pre_root: bytes, step_index: int, data: BatchData, context: tuple[Any, ...], args: Any
    ) -> bytes:
        """The calldata proving one step; ``args`` is a :class:`proofs.onestep.ProverInput`."""
        if args.is_long:
            call = self.contract.functions.prove_long_step(
                pre_root, step_index, data.as_tuple(), context, args.step, args.step_branch
            )
            return bytes.fromhex(call._encode_transaction_data().removeprefix("0x"))
        call = self.contract.functions.prove(
            pre_root, step_index, data.as_tuple(), context, args.step, args.step_branch,
            args.order_tuples(), args.leaf_tuples(), args.proof_sizes,
        )
        encoded = bytes.fromhex(call._encode_transaction_data().removeprefix("0x"))
        return prove_calldata(encoded, args.proofs)

    def prove(
        self, pre_root: bytes, step_index: int, data: BatchData, context: tuple[Any, ...], args: Any
    ) -> Any:
        """Send the proof of one step (anyone may); returns the receipt."""
        if self.tx is None:
            raise RuntimeError("read-only client: no transactor")
        return self.tx.send_raw(
            {"to": self.address, "data": self.calldata(pre_root, step_index, data, context, args)}
        )

    def result(self, claim: bytes) -> bytes:
        """The root recorded under ``claim`` (zero if none)."""
        return bytes(self._call("result", claim))


class TokenClient(_Client):
    """The devnet collateral token."""

    NAME = "Token"

    def balance_of(self, owner: str) -> int:
        """Token units held by ``owner``."""
        return int(self._call("balanceOf", to_checksum_address(owner)))

    def mint(self, receiver: str, amount: int) -> Any:
        """Mint (minter only)."""
        return self._send("mint", to_checksum_address(receiver), amount)

    def approve(self, spender: str, amount: int) -> Any:
        """Approve ``spender``."""
        return self._send("approve", to_checksum_address(spender), amount)

    def transfer(self, receiver: str, amount: int) -> Any:
        """Transfer to ``receiver``."""
        return self._send("transfer", to_checksum_address(receiver), amount)


class BridgeClient(_Client):
    """The bridge: deposits, forced transactions, withdrawal claims."""

    NAME = "Bridge"

    def deposit(self, amount: int) -> Any:
        """Queue a deposit of ``amount`` units (approve the bridge first)."""
        return self._send("deposit", amount)

    def force_transaction(self, payload: bytes) -> Any:
        """Queue a forced transaction (docs/stf.md §5.4)."""
        return self._send("forceTransaction", payload)

    def claim_withdrawal(
        self, batch_index: int, withdrawal_id: int, account: int, recipient: str, amount: int, proof: Sequence[bytes]
    ) -> Any:
        """Claim a withdrawal record against final batch ``batch_index``; ``proof`` is the list of RLP nodes."""
        return self._send(
            "claimWithdrawal", batch_index, withdrawal_id, account, to_checksum_address(recipient),
            amount, b"".join(proof),
        )

    def deposit_count(self) -> int:
        """Items in the deposit queue."""
        return int(self._call("depositCount"))

    def forced_count(self) -> int:
        """Items in the forced queue."""
        return int(self._call("forcedCount"))

    def deposit_at(self, index: int) -> DepositItem:
        """Deposit-queue item ``index``."""
        raw = self._call("depositAt", index)
        return DepositItem(to_checksum_address(_field(raw, "owner", 0)), int(_field(raw, "amount", 1)), int(_field(raw, "time", 2)))

    def forced_at(self, index: int) -> ForcedItem:
        """Forced-queue item ``index``."""
        raw = self._call("forcedAt", index)
        return ForcedItem(to_checksum_address(_field(raw, "sender", 0)), bytes(_field(raw, "payload", 1)), int(_field(raw, "time", 2)))

    def claimed(self, withdrawal_id: int) -> bool:
        """Whether record ``withdrawal_id`` has been paid."""
        return bool(self._call("claimed", withdrawal_id))

    def deposited_events(self, from_block: int, to_block: int | str = "latest") -> list[Any]:
        """``Deposited`` logs."""
        return self._logs("Deposited", from_block, to_block)

    def forced_events(self, from_block: int, to_block: int | str = "latest") -> list[Any]:
        """``ForcedQueued`` logs."""
        return self._logs("ForcedQueued", from_block, to_block)


class RollupClient(_Client):
    """The rollup: batches, bonds, finality, dispute games."""

    NAME = "Rollup"

    # -------------------------------------------------------- constants

    def constant(self, name: str) -> int:
        """An immutable (``K``, ``CHALLENGE_WINDOW``, ``CLOCK``, ``PROPOSER_BOND``, ...)."""
        return int(self._call(name))

    def oracle_keys(self) -> list[str]:
        """The oracle key set."""
        return [to_checksum_address(a) for a in self._call("oracleKeys")]

    # -------------------------------------------------------- batches

    def post_batch(self, batch: bytes, post_root: bytes, step_count: int, value: int = 0) -> Any:
        """Post a batch (``value`` wei is added to the bond first)."""
        return self._send("postBatch", batch, post_root, step_count, value=value)

    def finalize(self, index: int) -> Any:
        """Finalize a batch."""
        return self._send("finalize", index)

    def prune(self, index: int) -> Any:
        """Record a cascaded removal and release its bond."""
        return self._send("prune", index)

    def batch(self, index: int) -> BatchInfo:
        """Batch ``index``."""
        return batch_info_from_abi(index, self._call("batch", index))

    def batch_count(self) -> int:
        """Batches ever posted, genesis included."""
        return int(self._call("batchCount"))

    def head(self) -> int:
        """The canonical head."""
        return int(self._call("head"))

    def finalized_root(self, index: int) -> bytes:
        """The post-state root of a final batch, zero otherwise."""
        return bytes(self._call("finalizedRoot", index))

    def deposit_consumed(self) -> int:
        """The next batch's deposit_start."""
        return int(self._call("depositConsumed"))

    def forced_consumed(self) -> int:
        """The next batch's forced_start."""
        return int(self._call("forcedConsumed"))

    def batch_posted_events(self, from_block: int, to_block: int | str = "latest") -> list[BatchPostedEvent]:
        """``BatchPosted`` logs, oldest first."""
        out = []
        for log in self._logs("BatchPosted", from_block, to_block):
            a = log["args"]
            out.append(BatchPostedEvent(
                int(a["index"]), int(a["parent"]), to_checksum_address(a["proposer"]), bytes(a["pre_root"]),
                bytes(a["post_root"]), bytes(a["data_hash"]), BatchData.from_abi(a["data"]),
                int(a["deadline"]), bytes(log["transactionHash"]), int(log["blockNumber"]),
            ))
        return out

    def batch_bytes(self, tx_hash: bytes) -> bytes:
        """The batch bytes carried by the ``postBatch`` transaction ``tx_hash``."""
        tx = self.w3.eth.get_transaction(tx_hash)
        fn, args = self.contract.decode_function_input(tx["input"])
        if fn.fn_name != "postBatch":
            raise ValueError("not a postBatch transaction")
        return bytes(args["batch"])

    def events(self, name: str, from_block: int, to_block: int | str = "latest", **filters: Any) -> list[Any]:
        """Raw logs of any rollup event (``BatchFinalized``, ``BatchRemoved``, ``RootsPosted``, ...)."""
        return self._logs(name, from_block, to_block, **filters)

    # -------------------------------------------------------- bonds

    def deposit_bond(self, value: int) -> Any:
        """Add ``value`` wei to the sender's bond."""
        return self._send("depositBond", value=value)

    def withdraw_bond(self, amount: int) -> Any:
        """Withdraw free bond."""
        return self._send("withdrawBond", amount)

    def free_bond(self, owner: str) -> int:
        """Bond not locked."""
        return int(self._call("freeBond", to_checksum_address(owner)))

    # -------------------------------------------------------- games

    def create_game(self, batch_index: int, value: int = 0) -> Any:
        """Challenge a batch (``value`` wei is added to the bond first)."""
        return self._send("createGame", batch_index, value=value)

    def post_roots(self, game: int, roots: Sequence[bytes]) -> Any:
        """Asserter's move."""
        return self._send("postRoots", game, list(roots))

    def choose_part(self, game: int, roots: Sequence[bytes], part: int) -> Any:
        """Challenger's move."""
        return self._send("choosePart", game, list(roots), part)

    def prove_step(self, game: int) -> Any:
        """Settle a one-step game with the result the prover recorded (``ProverClient.prove`` first)."""
        return self._send("proveStep", game)

    def step_claim(self, game: int) -> bytes:
        """The claim ``proveStep`` looks up for ``game``."""
        return bytes(self._call("stepClaim", game))

    def step_context(self) -> tuple[Any, ...]:
        """The deployment's StepContext (chain id, rollup, bridge, oracle keys, threshold)."""
        return (
            int(self.w3.eth.chain_id), self.address, to_checksum_address(self._call("BRIDGE")),
            [to_checksum_address(k) for k in self._call("oracleKeys")],
            int(self._call("ORACLE_THRESHOLD")),
        )

    def timeout(self, game: int) -> Any:
        """End a game whose running clock is spent."""
        return self._send("timeout", game)

    def cancel_game(self, game: int) -> Any:
        """Close a game on a removed batch."""
        return self._send("cancelGame", game)

    def game(self, game: int) -> GameInfo:
        """Game ``game``."""
        return game_info_from_abi(game, self._call("game", game))

    def game_count(self) -> int:
        """Games ever opened."""
        return int(self._call("gameCount"))

    def roots_posted(self, game: int, from_block: int) -> list[list[bytes]]:
        """The asserter's roots of every round of ``game`` (from ``RootsPosted``), by round."""
        logs = self._logs("RootsPosted", from_block, "latest", game=game)
        return [[bytes(r) for r in log["args"]["roots"]] for log in sorted(logs, key=lambda x: x["args"]["round"])]


@dataclass
class Contracts:
    """The three clients of one deployment."""

    token: TokenClient
    bridge: BridgeClient
    rollup: RollupClient

    @staticmethod
    def connect(w3: Any, deployment: Any, transactor: Transactor | None = None) -> Contracts:
        """Clients for a :class:`l1_contracts.deploy.Deployment`."""
        return Contracts(
            TokenClient(w3, deployment.token, transactor),
            BridgeClient(w3, deployment.bridge, transactor),
            RollupClient(w3, deployment.rollup, transactor),
        )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
