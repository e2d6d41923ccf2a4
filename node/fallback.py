"""The fallback proposer and finalizer: the exchange keeps moving without its operator (DESIGN §5).

If no batch has been accepted for the rollup's ``FALLBACK_PERIOD``, anyone
with a proposer bond may post. :class:`FallbackProposer` does so from the
node's own derivation and L1 alone: when the node's head is the rollup's
head, queue items wait in the bridge (deposits, forced withdrawals and
cancels) and the period has passed (or the account is the operator), it
builds a batch of one deposit step per queued deposit and one forced step per
queued forced transaction (in that order: a deposit that opens an account
comes before a forced withdrawal from it), timestamped with the latest L1
block's time, computes its post-root by replaying it on the node's state
(nothing persists: the batch is derived like any other once it is on L1), and
posts it with ``Rollup.postBatch``, topping the bond up in the same call.
Given an oracle feed (:class:`OracleFeed`: the file ``hfx oracle-feeder
--publish-file`` writes), the batch starts with the newest published oracle
update the STF accepts on the node's head at the batch's timestamp (signed by
the deployment's oracle keys, newer than the state's prices, not after the
batch): oracle updates are signed by the oracle keys, not by the operator, so
anyone holding one may post it, and a forced withdrawal from an account with
positions then meets a fresh price. An update the STF would refuse is left
out, never posted.
:class:`Finalizer` calls ``Rollup.finalize`` on derived batches whose window
has passed, in order (anyone may; it releases the proposer's bond).

Both use raw calls with fixed selectors (no compiler), estimate gas first so
that a refusal surfaces with the rollup's reason code before anything is
signed, and wait for the receipt. ``hfx node --propose`` / ``--finalize``
run them after every poll once the follower is caught up (node/process.py).

Known limit: ``postBatch`` takes no expected parent, so a batch posted by
someone else between the head check and inclusion makes this batch land on
the wrong parent with a root that is wrong there (its bond is then
challengeable). The proposer re-reads the head right before sending and
proposes only on a quiet rollup (the fallback period has passed), which
keeps that window to one block.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode

from l1_contracts.bindings import BatchStatus
from l1_contracts.config import MAX_BATCH_BYTES
from node.derive import Derivation, ItemQueues
from node.l1 import L1Client, L1Error, error_code
from node.queues import BoundedQueues, BridgeReader
from node.rollup_events import POST_BATCH_SELECTOR
from state.batch import Batch
from state.context import BatchContext, ChainConfig
from state.db import StateDB, TrieSource
from state.errors import Code
from state.keccak import keccak256
from state.transition import apply_step
from state.txs import Oracle, decode_step, encode_deposit, encode_forced
from state.view import StateView

log = logging.getLogger("hfx.node.fallback")

MAX_ITEMS = 4_096
"""Most queue items one fallback batch consumes (each step is 1 byte + its 2-byte length)."""


def selector(signature: str) -> bytes:
    """The 4-byte function selector of ``signature``."""
    return keccak256(signature.encode())[:4]


FINALIZE = selector("finalize(uint256)")
ORACLE_TRIES = 8
"""Most published oracle updates replayed (newest first) to find one the STF accepts."""


class FallbackError(RuntimeError):
    """A transaction of the fallback proposer or finalizer failed (reverted, or no receipt in time)."""


class OracleFeedError(ValueError):
    """An oracle feed file is unreadable or malformed (the proposer then posts without an oracle update)."""


class OracleFeed:
    """The signed oracle updates an oracle feeder publishes as a JSON file (``hfx oracle-feeder --publish-file``).

    The file is ``{"version": 1, "updates": [{"timestamp": t, "step": "0x05…"}, …]}``,
    oldest first: each ``step`` is the exact bytes of an oracle step (docs/stf.md
    §5.3), signatures included, and ``timestamp`` its own timestamp. Nothing in
    it is trusted: the proposer replays each candidate with the STF before
    including it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def updates(self) -> list[tuple[int, bytes]]:
        """The published updates as (timestamp, step bytes), oldest first; [] while the file does not exist.

        Raises :class:`OracleFeedError` on a malformed file or an entry that is not an oracle step."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OracleFeedError(f"{self.path}: {exc}") from None
        return parse_oracle_feed(text, str(self.path))


def parse_oracle_feed(text: str, where: str = "oracle feed") -> list[tuple[int, bytes]]:
    """Parse an oracle feed document (:class:`OracleFeed`); raises :class:`OracleFeedError`."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise OracleFeedError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("updates"), list):
        raise OracleFeedError(f'{where}: expected {{"version": 1, "updates": [...]}}')
    out: list[tuple[int, bytes]] = []
    for i, item in enumerate(doc["updates"]):
        try:
            timestamp, raw = int(item["timestamp"]), str(item["step"])
            step = bytes.fromhex(raw.removeprefix("0x"))
        except (KeyError, TypeError, ValueError):
            raise OracleFeedError(f"{where}: update {i} needs an integer timestamp and a hex step") from None
        tx = decode_step(step)
        if not isinstance(tx, Oracle):
            raise OracleFeedError(f"{where}: update {i} is not an oracle step")
        if tx.timestamp != timestamp:
            raise OracleFeedError(f"{where}: update {i} says timestamp {timestamp}, its step {tx.timestamp}")
        out.append((timestamp, step))
    return sorted(out, key=lambda u: u[0])


def choose_oracle_update(db: StateDB, pre_root: bytes, ctx: BatchContext,
                         updates: list[tuple[int, bytes]]) -> tuple[bytes | None, str]:
    """The newest of ``updates`` (oldest first) the STF accepts as a batch's first step at ``ctx.time``
    on ``pre_root``, and a note (empty when one is found, else why none is).

    Candidates newer than the state's prices and not after the batch are replayed, newest first (up to
    :data:`ORACLE_TRIES`), each on a fresh view: an update the STF refuses (signers, threshold,
    timestamps, prices) is never chosen. Nothing persists."""
    last = StateView(TrieSource(db.trie, pre_root)).prices().oracle_time
    candidates = [step for t, step in reversed(updates) if last < t <= ctx.time][:ORACLE_TRIES]
    refused: list[str] = []
    for step in candidates:
        receipt = apply_step(StateView(TrieSource(db.trie, pre_root)), step, ctx)
        if receipt.code == Code.OK:
            return step, ""
        refused.append(receipt.code.name)
    newest = updates[-1][0] if updates else None
    return None, (f"no usable oracle update (state at {last}, batch at {ctx.time}, newest published {newest}"
                  + (f", refused: {', '.join(refused)}" if refused else "") + ")")


@dataclass(frozen=True)
class Plan:
    """What the proposer would do now: ``action`` is ``post`` or why not (``wait``, ``behind``, ``idle``)."""

    action: str
    reason: str
    deposits: tuple[int, int] = (0, 0)
    forced: tuple[int, int] = (0, 0)
    due_at: int | None = None


@dataclass(frozen=True)
class Proposal:
    """A batch the proposer posted."""

    batch: int
    tx_hash: str
    post_root: str
    steps: int
    timestamp: int
    deposits: tuple[int, int]
    forced: tuple[int, int]
    oracle: int | None = None
    """The timestamp of the oracle update the batch starts with, if any."""

    def to_json(self) -> dict[str, Any]:
        """JSON form (status, logs)."""
        return {"batch": self.batch, "txHash": self.tx_hash, "postRoot": self.post_root, "steps": self.steps,
                "timestamp": self.timestamp, "deposits": list(self.deposits), "forced": list(self.forced),
                "oracle": self.oracle}


class _Sender:
    """Raw calls and signed transactions of one account to one contract."""

    def __init__(self, l1: L1Client, account: Any, receipt_timeout: float = 60.0) -> None:
        self.l1 = l1
        self.account = account
        self.address = str(account.address)
        self.receipt_timeout = receipt_timeout

    def read(self, to: str, sig: str, types: list[str], args: list[Any], out: list[str]) -> tuple[Any, ...]:
        data = selector(sig) + (encode(types, args) if types else b"")
        return tuple(decode(out, self.l1.call({"to": to, "data": "0x" + data.hex()})))

    def send(self, to: str, data: bytes, value: int = 0) -> tuple[bytes, Any]:
        """Estimate (a revert raises ``L1Error`` with its code), sign, send, wait for the receipt."""
        tx: dict[str, Any] = {"from": self.address, "to": to, "data": "0x" + data.hex(), "value": value}
        gas = self.l1.estimate_gas(tx)
        fees = self.l1.suggest_fees()
        full = {**tx, "gas": gas * 5 // 4 + 10_000, "nonce": self.l1.nonce(self.address, "pending"),
                "chainId": self.l1.chain_id, "type": 2, **fees.as_tx()}
        del full["from"]
        tx_hash = self.l1.sign_and_send(self.account, full)
        deadline = time.monotonic() + self.receipt_timeout
        while True:
            receipt = self.l1.receipt(tx_hash)
            if receipt is not None:
                break
            if time.monotonic() > deadline:
                raise FallbackError(f"no receipt for {tx_hash.hex()} after {self.receipt_timeout:.0f} s")
            time.sleep(0.2)
        if int(receipt["status"]) != 1:
            raise FallbackError(f"transaction 0x{tx_hash.hex()} reverted")
        return tx_hash, receipt


class FallbackProposer:
    """Posts batches of the bridge's queued items when the operator has not posted for ``FALLBACK_PERIOD``."""

    def __init__(self, l1: L1Client, rollup: str, bridge: str, account: Any, chain: ChainConfig,
                 oracle_feed: OracleFeed | None = None) -> None:
        self.sender = _Sender(l1, account)
        self.oracle_feed = oracle_feed
        self.oracle_note = ""
        self.l1 = l1
        self.rollup = l1.w3.to_checksum_address(rollup)
        self.bridge = l1.w3.to_checksum_address(bridge)
        self.chain = chain
        self.reader = BridgeReader(l1, self.bridge)
        (self.fallback_period,) = self._rollup("FALLBACK_PERIOD()")
        (self.proposer_bond,) = self._rollup("PROPOSER_BOND()")
        (operator,) = self.sender.read(self.rollup, "OPERATOR()", [], [], ["address"])
        self.is_operator = str(operator).lower() == self.sender.address.lower()
        self.proposed: list[Proposal] = []
        self.last_plan: Plan | None = None

    def _rollup(self, sig: str, types: list[str] | None = None, args: list[Any] | None = None) -> tuple[int, ...]:
        return tuple(int(v) for v in self.sender.read(self.rollup, sig, types or [], args or [], ["uint256"]))

    def _bridge_count(self, sig: str) -> int:
        return int(self.sender.read(self.bridge, sig, [], [], ["uint256"])[0])

    def plan(self, d: Derivation) -> Plan:
        """Decide from L1 (latest) and the derivation whether a fallback batch is due now."""
        head = d.head
        (chain_head,) = self._rollup("head()")
        if head is None or head.index != chain_head or head.l1_status == BatchStatus.REMOVED:
            return Plan("behind", f"the node's head is not the rollup's head {chain_head}")
        deposits = (head.data.deposit_end, self._bridge_count("depositCount()"))
        forced = (head.data.forced_end, self._bridge_count("forcedCount()"))
        if deposits[1] <= deposits[0] and forced[1] <= forced[0]:
            return Plan("idle", "no queued deposit or forced transaction", deposits, forced)
        (last,) = self._rollup("lastPostTime()")
        due = last + self.fallback_period
        now = int(self.l1.block("latest")["timestamp"])
        if not self.is_operator and now < due:
            return Plan("wait", f"the operator may post until {due}", deposits, forced, due)
        n_dep = min(deposits[1] - deposits[0], MAX_ITEMS)
        n_forced = min(forced[1] - forced[0], MAX_ITEMS - n_dep)
        return Plan("post", "fallback period passed", (deposits[0], deposits[0] + n_dep),
                    (forced[0], forced[0] + n_forced), due)

    def build(self, d: Derivation, plan: Plan) -> tuple[Batch, bytes]:
        """The batch of ``plan`` and its post-root on the node's head (computed, nothing persisted).

        With an oracle feed, the first step is the newest published update the STF accepts on the
        head at the batch's timestamp (none if no update is accepted)."""
        head = d.head
        assert head is not None  # noqa: S101
        now = int(self.l1.block("latest")["timestamp"])
        timestamp = max(now, head.data.timestamp)
        n_dep = plan.deposits[1] - plan.deposits[0]
        n_forced = plan.forced[1] - plan.forced[0]
        deposits = dict(enumerate(self.reader.deposits(*plan.deposits), start=plan.deposits[0]))
        forced = dict(enumerate(self.reader.forced(*plan.forced), start=plan.forced[0]))
        queues = BoundedQueues(ItemQueues(deposits, forced, None), plan.deposits[1], plan.forced[1])
        ctx = BatchContext.create(timestamp, self.chain, queues, [])
        oracle = self.oracle_step(d, head.computed_root, ctx)
        steps = (*oracle, *(encode_deposit(),) * n_dep, *(encode_forced(),) * n_forced)
        batch = Batch(timestamp, (), steps)
        if len(batch.encode()) > MAX_BATCH_BYTES:  # pragma: no cover - MAX_ITEMS keeps it far below
            raise FallbackError("fallback batch too large")
        root = d.db.root_after(head.computed_root, steps, ctx, len(steps))
        return batch, root

    def oracle_step(self, d: Derivation, pre_root: bytes, ctx: BatchContext) -> tuple[bytes, ...]:
        """The published oracle update to put first in a batch at ``ctx.time`` on ``pre_root``, or ().

        Candidates newer than the state's prices and not after the batch are replayed with the STF,
        newest first (up to :data:`ORACLE_TRIES`); the first one it accepts is taken, so an update
        the STF refuses (signers, threshold, timestamps, prices) is never included."""
        if self.oracle_feed is None:
            return ()
        try:
            updates = self.oracle_feed.updates()
        except OracleFeedError as exc:
            self.oracle_note = str(exc)
            log.warning("oracle feed unusable: %s", exc)
            return ()
        step, note = choose_oracle_update(d.db, pre_root, ctx, updates)
        self.oracle_note = note
        if step is None:
            log.info("%s", note)
            return ()
        return (step,)

    def tick(self, d: Derivation) -> Proposal | None:
        """Post a fallback batch if one is due; returns it (None when nothing was due)."""
        plan = self.plan(d)
        self.last_plan = plan
        if plan.action != "post":
            return None
        batch, root = self.build(d, plan)
        raw = batch.encode()
        data = POST_BATCH_SELECTOR + encode(["bytes", "bytes32", "uint256"], [raw, root, len(batch.steps)])
        (free,) = self._rollup("freeBond(address)", ["address"], [self.sender.address])
        value = max(self.proposer_bond - free, 0)
        (chain_head,) = self._rollup("head()")
        head = d.head
        if head is None or chain_head != head.index:
            self.last_plan = Plan("behind", "the rollup's head moved")
            return None
        try:
            tx_hash, _ = self.sender.send(self.rollup, data, value)
        except L1Error as exc:
            log.warning("fallback postBatch refused: %s", error_code(exc) or exc)
            raise
        (index,) = self._rollup("head()")
        first = decode_step(batch.steps[0]) if batch.steps else None
        oracle = first.timestamp if isinstance(first, Oracle) else None
        proposal = Proposal(index, "0x" + tx_hash.hex(), "0x" + root.hex(), len(batch.steps), batch.timestamp,
                            plan.deposits, plan.forced, oracle)
        self.proposed.append(proposal)
        log.info("fallback batch %d posted: oracle update %s, %d deposits, %d forced, root %s", index, oracle,
                 plan.deposits[1] - plan.deposits[0], plan.forced[1] - plan.forced[0], proposal.post_root)
        return proposal

    def status(self) -> dict[str, Any]:
        """The last decision and the batches posted."""
        p = self.last_plan
        return {
            "address": self.sender.address,
            "operator": self.is_operator,
            "plan": None if p is None else {"action": p.action, "reason": p.reason, "dueAt": p.due_at,
                                            "deposits": list(p.deposits), "forced": list(p.forced)},
            "proposed": [x.to_json() for x in self.proposed],
            "oracleFeed": None if self.oracle_feed is None else {"path": str(self.oracle_feed.path),
                                                                 "note": self.oracle_note or None},
        }


class Finalizer:
    """Calls ``Rollup.finalize`` on derived pending batches whose challenge window has passed, in order."""

    def __init__(self, l1: L1Client, rollup: str, account: Any) -> None:
        self.sender = _Sender(l1, account)
        self.l1 = l1
        self.rollup = l1.w3.to_checksum_address(rollup)
        self.finalized: list[int] = []
        self.last_refusal = ""

    def tick(self, d: Derivation, limit: int = 8) -> list[int]:
        """Finalize up to ``limit`` batches, oldest first; stops at the first refusal (returns those done)."""
        now = int(self.l1.block("latest")["timestamp"])
        done: list[int] = []
        for r in d.records(0, status=BatchStatus.PENDING):
            if len(done) >= limit or r.deadline > now:
                break
            try:
                self.sender.send(self.rollup, FINALIZE + encode(["uint256"], [r.index]))
            except L1Error as exc:  # GAME_OPEN, PARENT_NOT_FINAL, NOT_PENDING (already final): next tick
                self.last_refusal = f"batch {r.index}: {error_code(exc) or exc}"
                break
            done.append(r.index)
        self.finalized.extend(done)
        return done

    def status(self) -> dict[str, Any]:
        """Batches this process finalized and the last refusal."""
        return {"address": self.sender.address, "finalized": self.finalized[-20:], "lastRefusal": self.last_refusal}
