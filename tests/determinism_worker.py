"""Replay an HFX scenario file through the STF and print the resulting state.

Usage: ``python tests/determinism_worker.py SCENARIO.json [PURE_DIR]``

With ``PURE_DIR`` the ``state`` package comes from there (a copy of the
pure-Python sources), not from the checkout's compiled modules.

A scenario is a JSON object: the genesis (time, config, markets, oracle
threshold), the L1 deposit and forced queues, and a list of batches (time,
order table and steps, bytes as hex). The output is, one item per line:

* ``receipts <kind>:<code> ...`` for each batch;
* ``leaf <key hex> <value hex>`` for every leaf of the final state, sorted by key;
* ``keccak <hex>``: keccak-256 of the sorted ``key ‖ value`` concatenation;
* ``root <hex>``: the root of a ``trie.HexaryTrie`` holding every leaf.

Two runs of the same scenario must print the same text, whatever the
interpreter's hash seed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if len(sys.argv) > 2:  # a directory holding a pure-Python copy of state/ (tests/pure_state.py)
    sys.path.insert(0, sys.argv[2])

from state.context import L1Deposit, L1Forced
from state.keccak import keccak256
from state.layout import Config, Market
from tests.world import World


@dataclass(frozen=True)
class ScenarioBatch:
    """One batch of a scenario."""

    time: int
    orders: tuple[bytes, ...]
    steps: tuple[bytes, ...]


@dataclass(frozen=True)
class Scenario:
    """Genesis, L1 queues and batches: everything a replay needs."""

    genesis_time: int
    config: Config
    markets: tuple[Market, ...]
    oracle_threshold: int
    deposits: tuple[L1Deposit, ...] = ()
    forced: tuple[L1Forced, ...] = ()
    batches: tuple[ScenarioBatch, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The scenario as JSON text (bytes as hex, integers as decimal)."""
        c = self.config
        return json.dumps({
            "genesis_time": self.genesis_time,
            "config": [
                c.taker_fee_bps, c.maker_rebate_bps, c.liquidation_penalty_bps,
                c.liquidator_bonus_bps, c.sync_buffer_bps, c.funding_cap_bps, c.max_oracle_age,
            ],
            "markets": [
                [m.kind, m.underlying, m.im_bps, m.mm_bps, m.tick, m.lot, m.strike, m.expiry,
                 m.size_decimals]
                for m in self.markets
            ],
            "oracle_threshold": self.oracle_threshold,
            "deposits": [[d.owner.hex(), str(d.amount)] for d in self.deposits],
            "forced": [[f.sender.hex(), f.payload.hex()] for f in self.forced],
            "batches": [
                {"time": b.time, "orders": [o.hex() for o in b.orders], "steps": [s.hex() for s in b.steps]}
                for b in self.batches
            ],
        })

    @staticmethod
    def from_json(text: str) -> Scenario:
        """Inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        return Scenario(
            genesis_time=raw["genesis_time"],
            config=Config(*raw["config"]),
            markets=tuple(Market(*m) for m in raw["markets"]),
            oracle_threshold=raw["oracle_threshold"],
            deposits=tuple(L1Deposit(bytes.fromhex(o), int(a)) for o, a in raw["deposits"]),
            forced=tuple(L1Forced(bytes.fromhex(s), bytes.fromhex(p)) for s, p in raw["forced"]),
            batches=tuple(
                ScenarioBatch(
                    b["time"],
                    tuple(bytes.fromhex(o) for o in b["orders"]),
                    tuple(bytes.fromhex(s) for s in b["steps"]),
                )
                for b in raw["batches"]
            ),
        )


def replay(scenario: Scenario) -> tuple[list[list[tuple[int, int]]], dict[bytes, bytes]]:
    """Run every batch of ``scenario`` from genesis: each batch's receipts and the final leaves."""
    w = World(
        config=scenario.config, markets=list(scenario.markets), time=scenario.genesis_time,
        oracle_threshold=scenario.oracle_threshold,
    )
    w.queues.deposits.extend(scenario.deposits)
    w.queues.forced_txs.extend(scenario.forced)
    receipts = []
    for batch in scenario.batches:
        out = w.run(list(batch.steps), list(batch.orders), time=batch.time)
        receipts.append([(r.kind, int(r.code)) for r in out])
    return receipts, dict(w.leaves)


def trie_root(leaves: dict[bytes, bytes]) -> bytes:
    """The Merkle-Patricia root of ``leaves`` (``trie.HexaryTrie``)."""
    from trie import HexaryTrie  # type: ignore[attr-defined]

    t = HexaryTrie({})
    for key in sorted(leaves):
        t[key] = leaves[key]
    return bytes(t.root_hash)


def report(scenario: Scenario) -> list[str]:
    """The lines this script prints for ``scenario``."""
    receipts, leaves = replay(scenario)
    lines = [
        "receipts " + " ".join(f"{kind}:{code}" for kind, code in batch) for batch in receipts
    ]
    ordered = sorted(leaves.items())
    lines += [f"leaf {k.hex()} {v.hex()}" for k, v in ordered]
    lines.append("keccak " + keccak256(b"".join(k + v for k, v in ordered)).hex())
    lines.append("root " + trie_root(leaves).hex())
    return lines


def main(argv: list[str]) -> int:
    """Entry point: replay the scenario file named by ``argv[1]``."""
    if len(argv) not in (2, 3):
        print("usage: determinism_worker.py SCENARIO.json [PURE_DIR]", file=sys.stderr)
        return 2
    scenario = Scenario.from_json(Path(argv[1]).read_text())
    sys.stdout.write("\n".join(report(scenario)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
