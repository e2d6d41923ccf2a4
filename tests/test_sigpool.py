"""Ahead-of-time signer recovery gives exactly the receipts and state of lazy recovery."""

from node.sigpool import SignaturePool
from state.context import BatchContext
from state.transition import apply_step
from state.txs import encode_trade
from state.view import StateView
from tests.world import ETH_PERP, DictSource, standard_world


def test_pool_recovery_matches_lazy_recovery():
    w = standard_world(("a", "b", "c"))
    orders = [
        w.order("a", ETH_PERP, False, 3_000_000, 10), w.order("b", ETH_PERP, True, 3_000_000, 4),
        w.order("c", ETH_PERP, True, 3_000_000, 4),
    ]
    forged = bytearray(orders[2])
    forged[-10] ^= 1  # c's signature no longer recovers to c
    orders.append(bytes(forged))
    steps = [encode_trade(0, 1, 4), encode_trade(0, 3, 2), encode_trade(0, 2, 4)]

    lazy_view = StateView(DictSource(dict(w.leaves)))
    lazy_ctx = BatchContext.create(w.time, w.chain, w.queues, orders)
    lazy = [apply_step(lazy_view, s, lazy_ctx) for s in steps]

    view = StateView(DictSource(dict(w.leaves)))
    ctx = BatchContext.create(w.time, w.chain, w.queues, orders)
    jobs = ctx.orders.signature_jobs(view)
    assert [j.ref for j in jobs] == [0, 1, 2, 3]
    with SignaturePool(workers=2, chunk=1) as pool:
        ctx.orders.accept_recovered(jobs, pool.submit(jobs).result())
    eager = [apply_step(view, s, ctx) for s in steps]
    assert eager == lazy
    assert [r.code for r in eager] == [0, 3, 0]
    assert view.dirty_leaves() == lazy_view.dirty_leaves()
