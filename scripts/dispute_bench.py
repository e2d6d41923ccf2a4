"""How long a wrong root lives: the dispute on anvil, with the challenger as its own process.

``.venv/bin/python scripts/dispute_bench.py [--steps N] [--runs R]`` starts
anvil, deploys the contracts (the real one-step prover), has the honest
operator post an opening batch, starts ``hfx challenger`` as a child process
and waits until it has caught up. Then, ``R`` times, a dishonest proposer
(another account) posts an ``N``-step trading batch whose root is right for
the first half of the steps and invented after, and defends it with that
trace; the challenger finds it, plays the game and proves the first wrong
step on L1. The batch is removed and the next lie is posted on the same
honest parent.

Prints one JSON line::

    {"dispute_wall_s": ..., "challenge_open_blocks": ...}

- ``dispute_wall_s``: the median, over the runs, of the wall time from the
  wrong root's inclusion on L1 (the ``postBatch`` receipt) to the accepted
  one-step proof (the game seen resolved, polled every 10 ms);
- ``challenge_open_blocks``: the most L1 blocks, over the runs, between the
  block that holds the wrong root and the block whose ``createGame`` opened
  the challenge (target: at most 2).

Per-run details go to stderr. ``--block-time S`` mines a block every ``S``
seconds instead of one per transaction (each move then waits for a block).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import l1_contracts.deploy as deploy  # noqa: E402
from challenger.chain import Game, GameStatus  # noqa: E402
from l1_contracts.config import DEVNET  # noqa: E402
from node.anvil import DEV_KEYS, Anvil, anvil_available  # noqa: E402
from tests.challenger.anvil_l1 import cached_compile, write_abis  # noqa: E402
from tests.e2e.actors import Proposer, Stage, lying_trace  # noqa: E402

CONFIG = DEVNET.with_(fallback_period=0)
CHALLENGER_KEY = DEV_KEYS[1]
LIAR_KEY = DEV_KEYS[2]


def one_dispute(stage: Stage, liar: Proposer, steps: int, timeout: float) -> tuple[float, int, Game]:
    """Post one wrong root and play it out; returns (wall seconds, blocks to the challenge, the game)."""
    rollup = stage.operator.rollup
    batch = stage.trading_batch(steps - 1)  # an oracle step plus the trades
    honest = stage.honest_roots(batch)
    trace = lying_trace(honest, steps // 2, tag=b"bench")
    first_game = rollup.game_count()
    receipt = liar.contracts.rollup.post_batch(batch.encode(), trace[-1], len(batch.steps), value=liar.bond)
    posted_at = time.monotonic()
    posted_block = int(receipt["blockNumber"])
    index = int(rollup.head())
    liar.traces[index] = trace
    deadline = posted_at + timeout
    while time.monotonic() < deadline:
        liar.tick()
        if rollup.game_count() > first_game:
            g = Game.of(rollup.game(first_game))
            if g.status != GameStatus.ACTIVE:
                wall = time.monotonic() - posted_at
                created = rollup.events("GameCreated", posted_block, game=first_game)
                return wall, int(created[0]["blockNumber"]) - posted_block, g
        time.sleep(0.01)
    raise RuntimeError(f"the dispute on batch {index} did not end within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="steps per wrong batch (default 200)")
    p.add_argument("--runs", type=int, default=3, help="disputes to measure (default 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one dispute may take")
    p.add_argument("--block-time", type=float, default=None,
                   help="mine a block every this many seconds (default: a block per transaction)")
    args = p.parse_args(argv)
    if args.steps < 3 or args.runs < 1:
        p.error("--steps must be at least 3 and --runs at least 1")
    if not anvil_available():
        print("error: anvil is not installed (npm install)", file=sys.stderr)
        return 2
    deploy.compile_contract = cached_compile  # type: ignore[assignment]
    walls: list[float] = []
    blocks: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, Anvil(block_time=args.block_time) as anvil:
        work = Path(tmp)
        write_abis(work / "abis.json")
        stage = Stage(anvil, CONFIG, work)
        try:
            opening = stage.open_market()
            proc = stage.spawn_challenger(CHALLENGER_KEY, "challenger", "--interval", "0.1", "--max-seconds", "3600")
            proc.wait_status(lambda s: s["follower"]["head"] == opening, 60)
            liar = Proposer(stage.connect(LIAR_KEY), stage.w3, CONFIG.k, CONFIG.proposer_bond)
            for run in range(args.runs):
                wall, n_blocks, g = one_dispute(stage, liar, args.steps, args.timeout)
                if g.status != GameStatus.CHALLENGER_WON:
                    raise RuntimeError(f"run {run}: the challenger did not win: {g}")
                walls.append(wall)
                blocks.append(n_blocks)
                print(f"run {run}: {wall:.2f} s, challenge opened {n_blocks} block(s) after the wrong root, "
                      f"proof at step {g.lo} of {args.steps}, round {g.round}", file=sys.stderr)
        finally:
            logs = stage.stop_all()
        for name, text in logs.items():
            if "Traceback" in text:
                print(f"{name}:\n{text}", file=sys.stderr)
                return 1
    print(json.dumps({"dispute_wall_s": round(statistics.median(walls), 3), "challenge_open_blocks": max(blocks)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
