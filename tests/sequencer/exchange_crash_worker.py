"""Crash-test worker: runs the sequencer under load and prints what it acknowledged.

Usage: ``python -m tests.sequencer.exchange_crash_worker DIR RUN``. Recovers
the sequencer at ``DIR`` (funding four traders and publishing prices on the
first run), prints ``ready``, then places crossing orders from concurrent
tasks, cancels some, closes batches as they age, and prints one line per
acknowledged command (written with a single ``write``, so a line is whole or
absent)::

    ACK <order hash> <status> <filled> <entry hex>
    FILL <batch> <step> <maker hash> <taker hash> <size>
    GONE <order hash>                       (a maker the command took off the book)
    CANCEL <order hash>

The parent SIGKILLs it at random moments and checks that everything printed
survived (tests/sequencer/test_crash.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from sequencer.exchange import ExchangeConfig, PlaceOutcome
from sequencer.intake import CancelSubmission, IntakeError, OrderSubmission
from sequencer.orders import FLAG_IOC, FLAG_POST_ONLY, Status
from sequencer.service import ExchangeService, wall_clock
from state.context import L1Deposit
from state.eip712 import cancel_digest, sign_digest
from state.signing import order_hash, sign_order
from state.txs import OrderBody
from tests.world import BTC, ETH, ETH_PERP, NEVER, USDC, World

TRADERS = 4
TASKS = 6
CONFIG = ExchangeConfig(
    max_batch_bytes=6_000, reserve_bytes=600, max_batch_age=1, checkpoint_every=4,
    wal_segment_bytes=32 << 10,
)


def traders(world: World) -> list[tuple[bytes, bytes]]:
    """(key, address) of the test's traders; their account indices are 1..TRADERS."""
    return [(world.key(f"crash-{i}"), world.address(f"crash-{i}")) for i in range(TRADERS)]


def _say(lines: list[str]) -> None:
    os.write(1, ("".join(line + "\n" for line in lines)).encode())


def _report(outcome: PlaceOutcome, entry: bytes) -> list[str]:
    lines = [f"ACK {outcome.order_hash.hex()} {outcome.status.name} {outcome.filled} {entry.hex()}"]
    lines += [
        f"FILL {f.batch} {f.step} {f.maker.hex()} {f.taker.hex()} {f.size}" for f in outcome.fills
    ]
    lines += [f"GONE {bytes(r.order_id).hex()}" for r in outcome.removed]
    return lines


async def _prices(svc: ExchangeService, world: World) -> None:
    while True:
        now = wall_clock()
        if now - svc.core.view.prices().oracle_time >= 3:
            step = world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000, BTC: 6_000_000}, timestamp=now)
            await svc.submit_oracle(step, now=now)
        await asyncio.sleep(0.2)


async def _batcher(svc: ExchangeService) -> None:
    while True:
        await asyncio.sleep(0.03)
        now = wall_clock()
        if svc.core.should_close(now):
            await svc.close_batch(now=now)


async def _trader(svc: ExchangeService, world: World, run: int, task: int) -> None:
    rng = random.Random(run * 1000 + task)
    keys = traders(world)
    resting: list[tuple[int, bytes]] = []
    n = 0
    while True:
        n += 1
        who = rng.randrange(TRADERS)
        key, owner = keys[who]
        if resting and rng.random() < 0.1:
            w, digest = resting.pop(rng.randrange(len(resting)))
            sig = sign_digest(keys[w][0], cancel_digest(world.domain, keys[w][1], digest))
            try:
                await svc.cancel_order(CancelSubmission(digest, sig))
                _say([f"CANCEL {digest.hex()}"])
            except IntakeError:
                await asyncio.sleep(0)
            continue
        roll = rng.random()
        flags = FLAG_IOC if roll < 0.2 else FLAG_POST_ONLY if roll < 0.4 else 0
        body = OrderBody(
            who + 1, ETH_PERP, rng.random() < 0.5, flags, 3_000_000 + 1_000 * rng.randint(-3, 3),
            rng.randint(1, 5), NEVER, (run << 40) | (task << 32) | n,
        )
        entry = sign_order(key, owner, world.domain, body).encode()
        try:
            outcome = await svc.place_order(OrderSubmission.from_entry(entry))
        except IntakeError:
            await asyncio.sleep(0.01)
            continue
        _say(_report(outcome, entry))
        if outcome.status is Status.RESTING:
            resting.append((who, order_hash(world.domain, owner, body)))
            del resting[:-20]


async def _main(directory: str, run: int) -> None:
    world = World()
    svc = ExchangeService.open(directory, world.chain, dict(world.leaves), config=CONFIG, sync=False)
    if svc.core.account_index(traders(world)[-1][1]) is None:
        deposits = [L1Deposit(address, 1_000_000 * USDC) for _, address in traders(world)]
        await svc.add_l1_items(deposits, [], deposit_start=0)
    _say(["ready"])
    await asyncio.gather(
        _prices(svc, world), _batcher(svc),
        *(_trader(svc, world, run, t) for t in range(TASKS)),
    )


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
