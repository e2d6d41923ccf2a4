"""Signers recovered ahead in a helper process (sequencer/recovery.py, docs/sequencer.md §10).

The service must give exactly the outcomes of inline recovery, execute
commands in arrival order, survive the helper's death, and never let an
answer that does not match an order decide it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from sequencer.exchange import Status
from sequencer.intake import IntakeError, OrderSubmission, RecoveredSigner, prepare_recovery
from sequencer.service import ExchangeService
from state.signing import sign_order
from tests.sequencer.harness import T0, Desk
from tests.world import ETH_PERP


def _service(tmp_path: Path, name: str, recover_ahead: bool) -> tuple[Desk, ExchangeService]:
    desk = Desk.create(tmp_path / name)
    desk.ex.close()
    svc = ExchangeService.open(
        tmp_path / name, desk.world.chain, dict(desk.world.leaves), clock=lambda: T0 + 10,
        sync=False, recover_ahead=recover_ahead,
    )
    svc.recover_ahead_from = 0  # every order, not only under load
    desk.ex = svc.core
    return desk, svc


def _flow(desk: Desk) -> list[OrderSubmission]:
    """Quotes on both sides, takers crossing them, a bad signature and a duplicate among them."""
    subs = []
    for i in range(12):
        subs.append(desk.order("maker", ETH_PERP, False, 3_001_000 + 1_000 * (i % 4), 2))
        subs.append(desk.order("maker", ETH_PERP, True, 2_999_000 - 1_000 * (i % 4), 2))
    subs.append(subs[3])  # a duplicate of an order before it
    for i in range(8):
        subs.append(desk.order("taker", ETH_PERP, i % 2 == 0, 3_004_000 if i % 2 == 0 else 2_996_000, 3))
    forged = desk.order("taker", ETH_PERP, True, 3_003_000, 1)
    subs.append(dataclasses.replace(forged, signature=subs[0].signature))
    return subs


async def _outcomes(svc: ExchangeService, subs: list[OrderSubmission]) -> list[object]:
    async def one(sub: OrderSubmission) -> object:
        try:
            out = await svc.place_order(sub)
        except IntakeError as exc:
            return exc.code
        return (out.order_hash, out.status, out.filled, out.resting, tuple(f.size for f in out.fills))

    return list(await asyncio.gather(*(one(s) for s in subs)))


def test_recovering_ahead_gives_the_outcomes_of_recovering_inline(tmp_path: Path) -> None:
    async def main() -> None:
        results = []
        for name, ahead in (("inline", False), ("ahead", True)):
            desk, svc = _service(tmp_path, name, ahead)
            await svc.warm_up()
            outcomes = await _outcomes(svc, _flow(desk))
            if ahead:
                assert svc._recovery is not None and svc._recovery.started == 1
                assert svc._recovery.answered >= len(outcomes) - 2  # all but refused before recovery
            svc.core.close_batch(T0 + 11)
            results.append((outcomes, svc.core.root))
            await svc.aclose()
        (inline, inline_root), (ahead, ahead_root) = results
        assert ahead == inline
        assert ahead_root == inline_root
        assert "DUPLICATE_ORDER" in ahead and "BAD_SIGNATURE" in ahead
        assert sum(1 for o in ahead if isinstance(o, tuple) and o[2]) >= 4  # takers filled

    asyncio.run(main())


def test_signers_are_recovered_ahead_only_under_load(tmp_path: Path) -> None:
    """Below ``recover_ahead_from`` orders in flight the loop recovers them itself (it
    answers sooner); from there on, the helper process does."""

    async def main() -> None:
        desk, svc = _service(tmp_path, "seq", True)
        svc.recover_ahead_from = 8
        recovery = svc._recovery
        assert recovery is not None
        await svc.warm_up()
        for i in range(4):  # one at a time: never more than one in flight
            await svc.place_order(desk.order("maker", ETH_PERP, False, 3_001_000 + 1_000 * i, 1))
        assert recovery.answered == 0
        subs = [desk.order("maker", ETH_PERP, False, 3_010_000 + 1_000 * i, 1) for i in range(20)]
        outcomes = await _outcomes(svc, subs)
        assert all(isinstance(o, tuple) and o[1] is Status.RESTING for o in outcomes)
        assert recovery.answered == 20 - 8  # the first eight were placed before the load built up
        await svc.aclose()

    asyncio.run(main())


def test_commands_run_in_arrival_order_while_signers_are_recovered(tmp_path: Path) -> None:
    """A cancel sent right behind its order finds it; a taker behind a quote fills against it."""

    async def main() -> None:
        desk, svc = _service(tmp_path, "seq", True)
        await svc.warm_up()
        quote = desk.order("maker", ETH_PERP, False, 3_001_000, 2)
        digest = desk.digest("maker", quote)
        taker = desk.order("taker", ETH_PERP, True, 3_001_000, 1)
        quote2 = desk.order("maker", ETH_PERP, False, 3_002_000, 2)
        cancel = desk.cancel("maker", desk.digest("maker", quote2))
        placed, took, placed2, cancelled = await asyncio.gather(
            svc.place_order(quote), svc.place_order(taker), svc.place_order(quote2), svc.cancel_order(cancel),
        )
        assert placed.status is Status.RESTING and placed.order_hash == digest
        assert took.filled == 1
        assert placed2.status is Status.RESTING
        assert cancelled.order_hash == placed2.order_hash
        assert svc.core.order(placed2.order_hash) is None
        await svc.aclose()

    asyncio.run(main())


def test_a_killed_recovery_process_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        desk, svc = _service(tmp_path, "seq", True)
        recovery = svc._recovery
        assert recovery is not None
        assert not recovery.warm
        await svc.warm_up()
        assert recovery.warm
        first = await _outcomes(svc, [desk.order("maker", ETH_PERP, False, 3_001_000, 2)])
        assert recovery._process is not None
        recovery._process.kill()  # dies idle: seen as EOF, or as a broken pipe by the next request
        recovery._process.wait()
        subs = [desk.order("maker", ETH_PERP, False, 3_002_000 + 1_000 * i, 1) for i in range(40)]
        outcomes = await _outcomes(svc, subs)
        assert all(isinstance(o, tuple) and o[1] is Status.RESTING for o in first + outcomes)
        if recovery._process is None:  # the broken pipe: recovered here; the next request starts one
            await _outcomes(svc, [desk.order("maker", ETH_PERP, False, 3_049_000, 1)])
        assert recovery.started == 2
        # Killed while it holds requests: its answers end early (EOF), the rest is recovered here.
        assert await recovery.warm_up()
        subs = [desk.order("maker", ETH_PERP, False, 3_050_000 + 1_000 * i, 1) for i in range(64)]
        pending = asyncio.ensure_future(_outcomes(svc, subs))
        for _ in range(10):
            await asyncio.sleep(0)
            if recovery._sent:
                break
        assert recovery._process is not None and recovery._sent
        recovery._process.kill()
        outcomes = await pending
        assert all(isinstance(o, tuple) and o[1] is Status.RESTING for o in outcomes)
        more = await _outcomes(svc, [desk.order("taker", ETH_PERP, True, 3_010_000, 5)])
        assert more[0][2] == 5  # type: ignore[index]
        assert recovery.started == 3
        await svc.aclose()
        assert recovery._process is None

    asyncio.run(main())


def test_a_service_used_from_a_second_event_loop_starts_a_new_process(tmp_path: Path) -> None:
    desk, svc = _service(tmp_path, "seq", True)
    recovery = svc._recovery
    assert recovery is not None

    async def place(price: int) -> list[object]:
        await svc.warm_up()
        return await _outcomes(svc, [desk.order("maker", ETH_PERP, False, price + i * 1_000, 1) for i in range(8)])

    first = asyncio.run(place(3_001_000))
    second = asyncio.run(place(3_020_000))  # the first loop (and its pipe reader) is gone
    assert all(isinstance(o, tuple) and o[1] is Status.RESTING for o in first + second)
    assert recovery.started == 2 and recovery.answered == 16

    async def close() -> None:
        await svc.aclose()

    asyncio.run(close())


def test_a_caller_cancelled_before_its_turn_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        desk, svc = _service(tmp_path, "seq", True)
        await svc.warm_up()
        quote = desk.order("maker", ETH_PERP, False, 3_001_000, 2)
        task = asyncio.ensure_future(svc.place_order(quote))
        await asyncio.sleep(0)  # submitted: waiting for its signer
        assert svc._turns
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        later = await svc.place_order(desk.order("maker", ETH_PERP, False, 3_002_000, 2))
        assert later.status is Status.RESTING
        assert svc.core.order(desk.digest("maker", quote)) is None
        await svc.aclose()

    asyncio.run(main())


def test_an_answer_that_does_not_match_the_order_is_not_used(tmp_path: Path) -> None:
    """The core recovers itself unless the slot is for this very body, owner and signature."""
    desk = Desk.create(tmp_path / "seq")
    view, domain = desk.ex.view, desk.world.chain.domain
    good = desk.order("maker", ETH_PERP, False, 3_001_000, 2)
    slot = prepare_recovery(good, view, domain)
    assert slot is not None and slot.digest == desk.digest("maker", good)
    # A slot claiming the owner signed it, for an order whose signature is someone else's:
    body = desk.body("maker", ETH_PERP, False, 3_002_000, 2)
    stolen = sign_order(desk.key("taker"), desk.address("taker"), domain, body).encode()
    bad = OrderSubmission.from_entry(stolen)
    for forged in (
        RecoveredSigner(good.decoded.body, slot.owner, slot.digest, bad.signature),  # type: ignore[union-attr]
        RecoveredSigner(bad.decoded.body, desk.address("taker"), slot.digest, bad.signature),  # type: ignore[union-attr]
    ):
        forged.signer, forged.ready = desk.address("maker"), True
        before = desk.state()
        with pytest.raises(IntakeError, match="BAD_SIGNATURE"):
            desk.ex.place_order(bad, desk.now, forged)
        assert desk.state() == before
    not_ready = prepare_recovery(good, view, domain)
    assert not_ready is not None and not not_ready.ready
    assert desk.ex.place_order(good, desk.now, not_ready).status is Status.RESTING  # recovered here


def test_requests_refused_before_the_signature_get_no_slot(tmp_path: Path) -> None:
    desk = Desk.create(tmp_path / "seq")
    view, domain = desk.ex.view, desk.world.chain.domain
    sub = desk.order("maker", ETH_PERP, False, 3_001_000, 2)
    assert prepare_recovery(dataclasses.replace(sub, account=999, entry=None), view, domain) is None
    assert prepare_recovery(dataclasses.replace(sub, signature=b"\x01" * 64), view, domain) is None
    assert prepare_recovery(dataclasses.replace(sub, account=1 << 40, entry=None), view, domain) is None
    huge = dataclasses.replace(sub, price=1 << 300, entry=None, decoded=None)
    assert prepare_recovery(huge, view, domain) is None
