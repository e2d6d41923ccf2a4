"""L1 figures for scripts/bench: one-step proof gas, MPT lookup gas, dispute rounds.

All run in titanoboa's in-process EVM (gas is deterministic: no baseline is
needed). The state is a trie of filler leaves with each worst-case pre-state
laid on top (``l1_contracts.onestep_gas.FillerState``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from l1_contracts.config import DEVNET, RollupConfig
from l1_contracts.onestep_gas import FillerState, deploy_rig, filler_leaves, prove_scenario
from l1_contracts.worst_cases import heavy_scenarios
from state.keccak import keccak256


@dataclass(frozen=True)
class OneStepFigures:
    """Total gas (execution and intrinsic) of the heaviest step of each kind."""

    by_scenario: dict[str, int]

    @property
    def max(self) -> int:
        """The largest of them."""
        return max(self.by_scenario.values())


def onestep_gas(base: FillerState) -> OneStepFigures:
    """Prove the heaviest step of every kind on ``base``; their gas."""
    rig = deploy_rig()
    out: dict[str, int] = {}
    for s in heavy_scenarios():
        p = prove_scenario(rig, s, base=base)
        if p is None or p.root != p.python_root:
            raise RuntimeError(f"one-step proof of {s.name!r} disagrees with the STF")
        out[s.name] = p.total_gas
    return OneStepFigures(out)


def mpt_get_gas(base: FillerState, count: int, samples: int = 20, seed: int = 7) -> float:
    """Mean execution gas of ``MPT._get`` (through the test harness) of present keys of ``base``,
    whose filler holds ``count`` leaves."""
    from l1_contracts.deploy import boa_deployer

    harness = boa_deployer("test/MPTHarness").deploy()
    keys = list(filler_leaves(count))
    rng = random.Random(seed)
    total = 0
    for key in rng.sample(keys, samples):
        proof = b"".join(base.db.trie.prove(key, base.root))
        harness.get(base.root, key, proof)
        total += int(harness._computation.get_gas_used())
    return total / samples


def dispute_rounds(n_steps: int, config: RollupConfig = DEVNET) -> int:
    """Dissection rounds of an ``n_steps`` game when the challenger always picks the
    longest part, walking a deployed rollup's own ``splitPoints``."""
    import boa

    from l1_contracts.deploy import Genesis, deploy_boa

    genesis = Genesis(keccak256(b"genesis"), 0, ["0x" + "11" * 20], 1)
    d = deploy_boa(genesis, config, boa.env.eoa, test_prover=True)
    return _rounds_via(d.rollup, n_steps)


def _rounds_via(harness: object, n_steps: int) -> int:
    rounds, lo, hi = 0, 0, n_steps
    while hi - lo > 1:
        points = [int(p) for p in harness.splitPoints(lo, hi)]  # type: ignore[attr-defined]
        lo, hi = max(zip(points, points[1:], strict=False), key=lambda part: part[1] - part[0])
        rounds += 1
    return rounds
