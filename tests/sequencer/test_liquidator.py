"""An independent liquidator against an in-memory Exchange through a fake client."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sequencer.exchange import Exchange
from sequencer.liquidator import AccountData, find_liquidations, main, run_once
from state.arith import div_floor
from tests.sequencer.harness import ETH_PERP, PRICES, SPOTS, USDC, Desk
from tests.world import ETH


class FakeClient:
    """What the RPC client will do, in-process."""

    def __init__(self, ex: Exchange, now: int) -> None:
        self.ex, self.now = ex, now

    def get_accounts(self) -> Sequence[AccountData]:
        out = []
        for i in range(1, self.ex.view.global_().account_count):
            a = self.ex.account(i)
            if a is not None and a.positions:
                out.append(AccountData(i, a))
        return out

    def submit_liquidation(self, target: int, entry: bytes, size: int) -> object:
        return self.ex.liquidate(target, entry, size, self.now)


def test_account_from_json() -> None:
    data = AccountData.from_json({
        "index": "0x5", "owner": "0x" + "11" * 20, "collateral": "-12",
        "positions": [{"market": 0, "size": "-3", "cost": 9000, "fundingSnapshot": "0x0"}],
        "equity": 1,
    })
    assert data.index == 5 and data.account.collateral == -12
    assert data.account.positions[0].size == -3 and data.account.owner == b"\x11" * 20


def test_external_liquidator_earns_the_bonus() -> None:
    desk = Desk.create(traders=("maker", "ext"))
    ex = desk.ex
    desk.fund(["whale"], 10_000 * USDC)
    desk.place("maker", ETH_PERP, False, 3_000_000, 30_000)
    desk.place("whale", ETH_PERP, True, 3_000_000, 30_000)
    whale, ext = desk.index["whale"], desk.index["ext"]
    client = FakeClient(ex, desk.now)
    params, fund = ex.view.params(), ex.view.global_().insurance_fund
    assert find_liquidations(client.get_accounts(), params, ex.view.prices(), fund) == []

    desk.prices({ETH_PERP: 2_830_000})
    client.now = desk.now
    before = ex.account(ext).collateral  # type: ignore[union-attr]
    done = run_once(client, desk.key("ext"), ext, desk.world.domain, params, ex.view.prices(),
                    ex.view.global_().insurance_fund, desk.now, salt=1)
    assert [(o.target, o.market, o.is_buy) for o in done] == [(whale, ETH_PERP, True)]
    bonus = div_floor(done[0].size * 2_830_000 * 50, 10_000)
    assert done[0].bonus == bonus
    assert ex.account(ext).collateral == before + bonus  # type: ignore[union-attr]
    assert ex.account(ext).positions[0].size == done[0].size  # type: ignore[union-attr]
    assert not ex.risk(whale).liquidatable  # type: ignore[union-attr]
    # Nothing left: a second round does nothing.
    assert run_once(client, desk.key("ext"), ext, desk.world.domain, params, ex.view.prices(),
                    ex.view.global_().insurance_fund, desk.now, salt=10) == []


# ---------------------------------------------------------------- hfx liquidator (the process's main)


def test_liquidator_main_refuses_a_missing_or_bad_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sequencer.logs.setup_json_logging", lambda level: None)
    monkeypatch.delenv("HFX_LIQUIDATOR_KEY", raising=False)
    assert main(["--rpc", "http://127.0.0.1:9/", "--max-seconds", "0"]) == 2
    monkeypatch.setenv("HFX_LIQUIDATOR_KEY", "0x1234")
    assert main(["--rpc", "http://127.0.0.1:9/", "--max-seconds", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--rpc", "http://127.0.0.1:9/", "--interval", "0"])


def test_liquidator_main_liquidates_over_json_rpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hfx liquidator`` against a served sequencer: a 9x long after a 6 % drop is liquidated."""
    from tests.sequencer.test_rpc_api import Served

    monkeypatch.setattr("sequencer.logs.setup_json_logging", lambda level: None)  # keep pytest's handlers
    served = Served(tmp_path / "seq")
    try:
        desk = served.desk
        desk.place("maker", ETH_PERP, False, 3_000_000, 300_000)
        assert desk.place("taker", ETH_PERP, True, 3_000_000, 300_000).filled == 300_000
        desk.prices({**PRICES, ETH_PERP: 2_820_000}, {**SPOTS, ETH: 2_820_000})
        monkeypatch.setenv("HFX_LIQUIDATOR_KEY", "0x" + desk.key("poor").hex())
        assert main(["--rpc", served.url, "--interval", "0.2", "--max-seconds", "1.5"]) == 0
        taker = desk.ex.account(desk.index["taker"])
        mine = desk.ex.account(desk.index["poor"])
        assert taker is not None and mine is not None
        taken = 300_000 - taker.positions[0].size
        assert taken > 0 and mine.positions[0].size == taken
        assert mine.collateral > 100_000 * USDC  # the bonus
    finally:
        served.close()
