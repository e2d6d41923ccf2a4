"""Bridge: deposits, forced transactions and withdrawal claims (only against
a final root, only once, only as the record says), on real HFX state."""

from __future__ import annotations

import boa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l1_contracts.config import TEST
from state.layout import withdrawal_key
from state.signing import signed_withdraw
from state.txs import OrderBody, encode_forced, encode_forced_cancel, encode_forced_withdraw
from tests.l1.fixtures_rollup import L1Chain, Posted, addr, now, report, set_time, tx_gas
from tests.world import ETH_PERP, USDC

RECIPIENT = b"\x5a" * 20


@pytest.fixture
def chain() -> L1Chain:
    return L1Chain()


# ---------------------------------------------------------------- deposits


def test_deposit_pulls_tokens_and_queues(chain: L1Chain) -> None:
    who = chain.trader("maker")
    index = chain.deposit("maker", 1_234)
    assert index == 0 and chain.bridge.depositCount() == 1
    item = chain.bridge.depositAt(0)
    assert (item.owner, item.amount, item.time) == (who, 1_234, now())
    assert chain.bridge.depositTime(0) == now()
    assert chain.token.balanceOf(chain.bridge.address) == 1_234
    assert chain.token.balanceOf(who) == 0
    assert chain.deposit("maker", 1) == 1


@pytest.mark.parametrize("amount", [0, 2**63, 2**64])
def test_deposit_bounds(chain: L1Chain, amount: int) -> None:
    who = chain.trader("maker")
    with boa.env.prank(chain.deployer):
        chain.token.mint(who, 2**65)
    with boa.env.prank(who):
        chain.token.approve(chain.bridge.address, 2**65)
        with boa.reverts("BAD_AMOUNT"):
            chain.bridge.deposit(amount)
        chain.bridge.deposit(2**63 - 1)


def test_deposit_needs_allowance_and_balance(chain: L1Chain) -> None:
    who = chain.trader("maker")
    with boa.env.prank(who), boa.reverts("ALLOWANCE"):
        chain.bridge.deposit(10)
    with boa.env.prank(who):
        chain.token.approve(chain.bridge.address, 10)
        with boa.reverts("BALANCE"):
            chain.bridge.deposit(10)
    assert chain.bridge.depositCount() == 0


def test_queue_reads_past_the_end(chain: L1Chain) -> None:
    for fn in (chain.bridge.depositAt, chain.bridge.forcedAt, chain.bridge.depositTime, chain.bridge.forcedTime):
        with boa.reverts("NO_ITEM"):
            fn(0)


# ---------------------------------------------------------------- forced transactions


def test_force_transaction_kinds(chain: L1Chain) -> None:
    chain.post(chain.opening_batch())
    withdraw = encode_forced_withdraw(chain.world.index["maker"], RECIPIENT, 7)
    cancel = encode_forced_cancel(chain.world.body("maker", ETH_PERP, True, 3_000_000, 1))
    assert chain.force("maker", withdraw) == 0
    assert chain.force("maker", cancel) == 1
    item = chain.bridge.forcedAt(1)
    assert item.sender == chain.trader("maker") and item.payload == cancel and item.time == now()


@pytest.fixture(scope="module")
def shared() -> L1Chain:
    """One deployment for the Hypothesis examples (each example runs in its own EVM snapshot)."""
    return L1Chain()


@given(payload=st.binary(max_size=40))
@settings(max_examples=50, deadline=None)
def test_force_transaction_refuses_other_payloads(shared: L1Chain, payload: bytes) -> None:
    ok = (len(payload) == 33 and payload[:1] == b"\x02") or (len(payload) == 40 and payload[:1] == b"\x04")
    with boa.env.prank(shared.sequencer):
        if ok:
            assert shared.bridge.forceTransaction(payload) == 0
        else:
            with boa.reverts("BAD_PAYLOAD"):
                shared.bridge.forceTransaction(payload)


# ---------------------------------------------------------------- withdrawals


def _withdraw_batch(chain: L1Chain, amount: int) -> Posted:
    """Opening batch, then a signed withdrawal by the maker to RECIPIENT."""
    chain.post(chain.opening_batch())
    set_time(now() + 5)
    w = chain.world
    step = signed_withdraw(
        w.key("maker"), w.address("maker"), w.domain, w.index["maker"], RECIPIENT, amount, 0
    )
    posted = chain.post(chain.batch([step]))
    assert chain.db.view.withdrawal(0) is not None
    return posted


def _finalize_all(chain: L1Chain) -> None:
    head = chain.rollup.head()
    set_time(max(now(), chain.rollup.batch(head).deadline))
    for i in range(1, head + 1):
        chain.rollup.finalize(i)


def _proof(chain: L1Chain, withdrawal_id: int, root: bytes) -> bytes:
    return b"".join(chain.db.prove(withdrawal_key(withdrawal_id), root))


def test_claim_withdrawal(chain: L1Chain) -> None:
    posted = _withdraw_batch(chain, 250 * USDC)
    account = chain.world.index["maker"]
    proof = _proof(chain, 0, posted.post_root)
    claimant = chain.actor("anyone")
    with boa.env.prank(claimant), boa.reverts("NOT_FINAL"):
        chain.bridge.claimWithdrawal(posted.index, 0, account, addr(RECIPIENT), 250 * USDC, proof)
    _finalize_all(chain)
    with boa.env.prank(claimant):
        chain.bridge.claimWithdrawal(posted.index, 0, account, addr(RECIPIENT), 250 * USDC, proof)
    assert chain.token.balanceOf(addr(RECIPIENT)) == 250 * USDC
    assert chain.bridge.claimed(0)
    with boa.reverts("ALREADY_CLAIMED"):
        chain.bridge.claimWithdrawal(posted.index, 0, account, addr(RECIPIENT), 250 * USDC, proof)


def test_claim_only_as_recorded(chain: L1Chain) -> None:
    posted = _withdraw_batch(chain, 250 * USDC)
    _finalize_all(chain)
    account = chain.world.index["maker"]
    proof = _proof(chain, 0, posted.post_root)
    claim = chain.bridge.claimWithdrawal
    with boa.reverts("RECORD_MISMATCH"):
        claim(posted.index, 0, account, addr(RECIPIENT), 251 * USDC, proof)
    with boa.reverts("RECORD_MISMATCH"):
        claim(posted.index, 0, account, addr(b"\x11" * 20), 250 * USDC, proof)
    with boa.reverts("RECORD_MISMATCH"):
        claim(posted.index, 0, account + 1, addr(RECIPIENT), 250 * USDC, proof)
    # record 1 does not exist: its exclusion proof shows it absent
    with boa.reverts("NO_RECORD"):
        claim(posted.index, 1, account, addr(RECIPIENT), 250 * USDC, _proof(chain, 1, posted.post_root))
    # a proof of record 0 does not prove record 1
    with boa.reverts():
        claim(posted.index, 1, account, addr(RECIPIENT), 250 * USDC, proof)
    # an earlier final root (before the withdrawal) does not hold the record
    with boa.reverts("NO_RECORD"):
        claim(posted.index - 1, 0, account, addr(RECIPIENT), 250 * USDC, _proof(chain, 0, chain.rollup.batch(posted.index - 1).post_root))
    with boa.reverts("BAD_RECORD"):
        claim(posted.index, 2**64, account, addr(RECIPIENT), 250 * USDC, proof)
    assert chain.token.balanceOf(addr(RECIPIENT)) == 0


def test_claim_against_a_later_final_root(chain: L1Chain) -> None:
    _withdraw_batch(chain, 10 * USDC)
    set_time(now() + 5)
    later = chain.post(chain.trading_batch(2))
    _finalize_all(chain)
    account = chain.world.index["maker"]
    chain.bridge.claimWithdrawal(later.index, 0, account, addr(RECIPIENT), 10 * USDC, _proof(chain, 0, later.post_root))
    assert chain.token.balanceOf(addr(RECIPIENT)) == 10 * USDC


def test_forced_withdrawal_escape_hatch(chain: L1Chain) -> None:
    """A trader leaves without the operator: forced withdraw, a fallback proposer, a claim."""
    chain.post(chain.opening_batch())
    account = chain.world.index["taker"]
    chain.force("taker", encode_forced_withdraw(account, RECIPIENT, 99 * USDC))
    # the operator disappears; after the fallback period the trader proposes itself
    set_time(now() + TEST.fallback_period)
    proposer = chain.trader("taker")
    chain.fund_bond(proposer, TEST.proposer_bond)
    posted = chain.post(chain.batch([encode_forced()]), proposer=proposer)
    assert posted.honest and chain.rollup.batch(posted.index).proposer == proposer
    _finalize_all(chain)
    chain.bridge.claimWithdrawal(posted.index, 0, account, addr(RECIPIENT), 99 * USDC, _proof(chain, 0, posted.post_root))
    assert chain.token.balanceOf(addr(RECIPIENT)) == 99 * USDC


# ---------------------------------------------------------------- gas


def test_gas_bridge(chain: L1Chain) -> None:
    who = chain.trader("maker")
    with boa.env.prank(chain.deployer):
        chain.token.mint(who, 10**12)
    with boa.env.prank(who):
        chain.token.approve(chain.bridge.address, 10**12)
        chain.bridge.deposit(1_000)
        report("deposit (first)", tx_gas(chain.bridge, "deposit", 1_000))
        chain.bridge.deposit(1_000)
        report("deposit", tx_gas(chain.bridge, "deposit", 1_000))
        payload = encode_forced_withdraw(1, RECIPIENT, 7)
        chain.bridge.forceTransaction(payload)
        report("forceTransaction (withdraw, 33 bytes)", tx_gas(chain.bridge, "forceTransaction", payload))
        payload = encode_forced_cancel(OrderBody(1, ETH_PERP, True, 0, 3_000_000, 1, 2**64 - 1, 1))
        chain.bridge.forceTransaction(payload)
        report("forceTransaction (cancel, 40 bytes)", tx_gas(chain.bridge, "forceTransaction", payload))


def test_gas_claim(chain: L1Chain) -> None:
    posted = _withdraw_batch(chain, 250 * USDC)
    _finalize_all(chain)
    account = chain.world.index["maker"]
    proof = _proof(chain, 0, posted.post_root)
    args = (posted.index, 0, account, addr(RECIPIENT), 250 * USDC, proof)
    chain.bridge.claimWithdrawal(*args)
    gas = tx_gas(chain.bridge, "claimWithdrawal", *args)
    report(f"claimWithdrawal ({len(proof)}-byte proof, {len(chain.db.prove(withdrawal_key(0), posted.post_root))} nodes)", gas)
    assert gas < 400_000
