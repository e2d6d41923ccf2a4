"""Prometheus series of the sequencer, served by the RPC server's ``/metrics``.

Counters of requests are kept by :class:`sequencer.rpc_api.SequencerApi`
(``counts``); :class:`SequencerMetrics` declares the series and copies the
current values in at each :meth:`SequencerMetrics.refresh` (the process calls
it every second), next to gauges read from the core and the publisher.
"""

from __future__ import annotations

from node.rpc import Metrics
from sequencer.defender import Defender
from sequencer.publisher import BatchState, PublisherStatus
from sequencer.risk import RiskMonitor
from sequencer.rpc_api import SequencerApi

__all__ = ["SequencerMetrics"]

P = "hfx_sequencer"
_POSTED = {BatchState.POSTED, BatchState.CONFIRMED, BatchState.FINAL}


class SequencerMetrics:
    """The ``hfx_sequencer_*`` series on ``metrics`` (an ``RpcServer.metrics``)."""

    def __init__(self, metrics: Metrics, api: SequencerApi) -> None:
        self.metrics = metrics
        self.api = api
        m = metrics
        m.counter(f"{P}_orders_total", "Orders accepted, by final status.", ("status",))
        m.counter(f"{P}_refused_total", "Requests refused by the intake, by method.", ("method",))
        m.counter(f"{P}_fills_total", "Fills acknowledged.")
        m.counter(f"{P}_cancels_total", "Cancels acknowledged.")
        m.counter(f"{P}_withdrawals_total", "Withdrawals acknowledged.")
        m.counter(f"{P}_batches_closed_total", "Batches sealed since start.")
        m.counter(f"{P}_wal_fsyncs_total", "fdatasync calls of the write-ahead log.")
        m.gauge(f"{P}_batches_posted", "Highest local batch index posted on L1, plus one.")
        m.gauge(f"{P}_batches_final", "Highest local batch index final on L1, plus one.")
        m.gauge(f"{P}_open_batch_bytes", "Encoded size of the open batch (0 when none).")
        m.gauge(f"{P}_open_batch_steps", "Steps in the open batch.")
        m.gauge(f"{P}_pending_batches", "Closed batches not yet final on L1.")
        m.gauge(f"{P}_next_batch_index", "Index the next sealed batch gets.")
        m.gauge(f"{P}_l1_head", "L1 head block seen by the publisher.")
        m.counter(f"{P}_oracle_updates_total", "Oracle updates accepted over hfx_submitOracle.")
        m.counter(f"{P}_liquidations_total", "Liquidations accepted over hfx_liquidate.")
        m.counter(f"{P}_risk_actions_total", "Risk monitor steps accepted, by kind.", ("kind",))
        m.counter(f"{P}_risk_refusals_total", "Risk monitor steps refused (retried later), by kind.", ("kind",))
        m.gauge(f"{P}_defender_games", "Dispute games against our batches, by state.", ("state",))

    def refresh(
        self, status: PublisherStatus | None, *, monitor: RiskMonitor | None = None,
        defender: Defender | None = None,
    ) -> None:
        """Copy the current values into the series (the monitor's and the defender's when given)."""
        m, counts, core = self.metrics, self.api.counts, self.api.service.core
        for key, value in counts.items():
            kind, _, label = key.partition(":")
            if kind == "orders":
                m.set(f"{P}_orders_total", value, label)
            elif kind == "refused":
                m.set(f"{P}_refused_total", value, label)
            elif kind in ("fills", "cancels", "withdrawals"):
                m.set(f"{P}_{kind}_total", value)
            elif kind == "batches":
                m.set(f"{P}_batches_closed_total", value)
            elif kind == "oracle":
                m.set(f"{P}_oracle_updates_total", value)
            elif kind == "liquidations":
                m.set(f"{P}_liquidations_total", value)
        if monitor is not None:
            for kind, n in monitor.accepted.items():
                m.set(f"{P}_risk_actions_total", n, kind)
            for kind, n in monitor.refused.items():
                m.set(f"{P}_risk_refusals_total", n, kind)
        if defender is not None:
            o = defender.outcomes
            for state, n in (("active", len(defender.games)), ("won", len(o.won)), ("lost", len(o.lost)),
                             ("cancelled", len(o.cancelled))):
                m.set(f"{P}_defender_games", n, state)
        wal = core.wal
        if wal is not None:
            m.set(f"{P}_wal_fsyncs_total", wal.stats.fsyncs)
        ob = core.open_batch
        m.set(f"{P}_open_batch_bytes", 0 if ob is None else ob.nbytes)
        m.set(f"{P}_open_batch_steps", 0 if ob is None else len(ob.steps))
        m.set(f"{P}_pending_batches", len(core.pending_batches()))
        m.set(f"{P}_next_batch_index", core.next_batch_index)
        if status is not None:
            final = status.anchor.index + 1
            posted = max([r.index + 1 for r in status.batches if r.state in _POSTED], default=final)
            for r in status.batches:
                if r.state == BatchState.FINAL:
                    final = max(final, r.index + 1)
            m.set(f"{P}_batches_posted", max(posted, final))
            m.set(f"{P}_batches_final", final)
            m.set(f"{P}_l1_head", status.head)
