""":class:`~challenger.chain.DisputeChain` over web3: the contract bindings plus :class:`node.l1.L1Client`.

Transactions are signed locally (``bindings.Transactor``: nonce from the
pending pool, gas estimated, so a revert surfaces as ``L1Error`` before
anything is sent) and awaited. ``GameCreated`` logs are scanned in bounded
block ranges from the deployment block, once; later scans start where the
last one ended. Transport failures are retried by the client's provider.
"""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode

from challenger.chain import Game, RollupConstants
from l1_contracts.bindings import BatchData
from node.l1 import L1Client, L1Error, bindings, error_code
from node.rollup_events import post_batch_bytes
from proofs.onestep import ProverInput
from state.keccak import keccak256

GAME_CREATED_TOPIC = keccak256(
    b"GameCreated(uint256,uint256,address,address,uint256,uint256,bytes32,bytes32,uint256)"
)
ROOTS_POSTED_TOPIC = keccak256(b"RootsPosted(uint256,uint256,uint256,uint256,bytes32[])")


class Web3RollupAccount:
    """One account's view of the rollup's games over web3: what a challenger and a defender share
    (``account`` is an eth-account ``LocalAccount``)."""

    def __init__(self, l1: L1Client, rollup: str, account: Any) -> None:
        self.l1 = l1
        self.tx = bindings.Transactor(l1.w3, account)
        self.rollup: Any = bindings.RollupClient(l1.w3, rollup, self.tx)
        self._constants: RollupConstants | None = None

    @property
    def address(self) -> str:
        """The account's address."""
        return str(self.tx.address)

    def constants(self) -> RollupConstants:
        """k, the challenger bond and the clock (read once)."""
        if self._constants is None:
            r = self.rollup
            self._constants = RollupConstants(r.constant("K"), r.constant("CHALLENGER_BOND"), r.constant("CLOCK"))
        return self._constants

    def now(self) -> int:
        """The latest block's time."""
        return int(self.l1.block("latest")["timestamp"])

    def game(self, gid: int) -> Game:
        """Game ``gid``."""
        return Game.of(self.rollup.game(gid))

    def timeout(self, gid: int) -> None:
        """``timeout``: end a game whose running clock is spent."""
        self.rollup.timeout(gid)


class Web3DisputeChain(Web3RollupAccount):
    """The challenger's L1 over web3 (``account`` is an eth-account ``LocalAccount``)."""

    def __init__(self, l1: L1Client, rollup: str, prover: str, account: Any, *, start_block: int = 0) -> None:
        super().__init__(l1, rollup, account)
        self.prover: Any = bindings.ProverClient(l1.w3, prover, self.tx)
        self.start_block = start_block
        self._context: tuple[Any, ...] | None = None
        self._games: dict[int, int] = {}
        """Game id -> the block that created it."""
        self._scanned = start_block - 1
        self._roots: dict[tuple[int, int], tuple[bytes, ...]] = {}

    def free_bond(self) -> int:
        """The challenger's free bond."""
        return int(self.rollup.free_bond(self.address))

    def batch_status(self, index: int) -> int:
        """``batchStatus(index)``."""
        return int(self.rollup._call("batchStatus", index))

    def my_games(self) -> list[int]:
        """Games opened by this account (scanning ``GameCreated`` from where the last scan ended)."""
        head = self.l1.head()
        if head > self._scanned:
            topic = bytes(12) + bytes.fromhex(self.address[2:])
            logs = self.l1.get_logs(
                self.rollup.address, [GAME_CREATED_TOPIC, None, None, topic], self._scanned + 1, head
            )
            for log in logs:
                self._games.setdefault(int.from_bytes(bytes(log["topics"][1]), "big"), int(log["blockNumber"]))
            self._scanned = head
        return sorted(self._games)

    def round_roots(self, gid: int, round_: int) -> tuple[bytes, ...] | None:
        """The asserter's roots of one round (``RootsPosted``)."""
        hit = self._roots.get((gid, round_))
        if hit is not None:
            return hit
        start = self._games.get(gid, self.start_block)
        logs = self.l1.get_logs(
            self.rollup.address, [ROOTS_POSTED_TOPIC, gid.to_bytes(32, "big")], start, self.l1.head()
        )
        for log in logs:
            r, _lo, _hi, roots = decode(["uint256", "uint256", "uint256", "bytes32[]"], bytes(log["data"]))
            found = tuple(bytes(x) for x in roots)
            if int(r) == round_:
                # cached: the contract checks the roots' hash at choosePart, so roots a
                # reorganisation replaced are refused (WRONG_ROOTS), then read again
                self._roots[(gid, round_)] = found
                return found
        return None

    def batch_bytes(self, tx_hash: bytes) -> bytes | None:
        """The batch bytes of a ``postBatch`` transaction."""
        tx = self.l1.transaction(tx_hash)
        return None if tx is None else post_batch_bytes(tx, self.rollup.address)

    def create_game(self, batch: int, value: int) -> int:
        """``createGame``; the id comes from the receipt's ``GameCreated`` log."""
        receipt = self.rollup.create_game(batch, value=value)
        for log in receipt["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            if topics and topics[0] == GAME_CREATED_TOPIC:
                gid = int.from_bytes(topics[1], "big")
                self._games.setdefault(gid, int(receipt["blockNumber"]))
                return gid
        raise RuntimeError("createGame logged no GameCreated")

    def choose_part(self, gid: int, roots: tuple[bytes, ...], part: int) -> None:
        """``choosePart`` (a ``WRONG_ROOTS`` refusal drops the cached roots of the game)."""
        try:
            self.rollup.choose_part(gid, list(roots), part)
        except L1Error as exc:
            if error_code(exc) == "WRONG_ROOTS":
                self._roots = {key: r for key, r in self._roots.items() if key[0] != gid}
            raise

    def prove(self, pre_root: bytes, step_index: int, data: BatchData, args: ProverInput) -> None:
        """``OneStepProver.prove`` with this deployment's step context."""
        if self._context is None:
            self._context = self.rollup.step_context()
        self.prover.prove(pre_root, step_index, data, self._context, args)

    def step_result(self, gid: int) -> bytes:
        """The prover's recorded root for ``gid``'s claim (zero when none)."""
        return bytes(self.prover.result(self.rollup.step_claim(gid)))

    def prove_step(self, gid: int) -> None:
        """``proveStep``."""
        self.rollup.prove_step(gid)

    def cancel_game(self, gid: int) -> None:
        """``cancelGame``."""
        self.rollup.cancel_game(gid)
