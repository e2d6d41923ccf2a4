"""An account and its risk as JSON: the shape both the sequencer's and the node's
``hfx_getAccount`` answer with (docs/rpc.md, docs/node-rpc.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from state.layout import Account, Market
from state.risk_view import AccountRisk

__all__ = ["account_json"]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def account_json(index: int, acct: Account, risk: AccountRisk, markets: Sequence[Market]) -> dict[str, Any]:
    """Collateral, margin, positions (with their Greeks and funding snapshots) and the
    Greeks summed per underlying; an infinite margin ratio (no requirement) is ``null``."""
    raw = {p.market: p for p in acct.positions}
    positions = []
    greeks: dict[str, dict[str, float]] = {}
    for p in risk.positions:
        g = greeks.setdefault(str(markets[p.market].underlying), {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0})
        g["delta"] += p.delta
        g["gamma"] += p.gamma
        g["vega"] += p.vega
        g["theta"] += p.theta
        pos = raw.get(p.market)
        positions.append({
            "market": p.market, "size": p.size, "mark": p.mark, "entryPrice": p.entry_price,
            "value": p.value, "unrealisedPnl": p.unrealised_pnl, "cost": None if pos is None else pos.cost,
            "fundingSnapshot": None if pos is None else pos.funding_snapshot,
            "delta": p.delta, "gamma": p.gamma, "vega": p.vega, "theta": p.theta,
        })
    return {
        "index": index, "owner": "0x" + acct.owner.hex(), "nonce": acct.nonce,
        "collateral": risk.collateral, "equity": risk.equity,
        "initialMargin": risk.initial_margin, "maintenanceMargin": risk.maintenance_margin,
        "syncBuffer": risk.sync_buffer, "liquidationThreshold": risk.liquidation_threshold,
        "freeCollateral": risk.free_collateral, "marginRatio": _finite(risk.margin_ratio),
        "liquidatable": risk.liquidatable, "positions": positions, "greeks": greeks,
    }
