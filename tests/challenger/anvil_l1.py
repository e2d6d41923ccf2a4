"""Deploying to anvil without recompiling: the contracts as titanoboa compiled them (its disk cache).

``l1_contracts.deploy.compile_contract`` runs the Vyper compiler (about 20 s
for the rollup, the bridge, the token and the prover here); titanoboa keeps
its compilations on disk, so the tests swap in :func:`cached_compile`, which
gives the same ABI and bytecode from titanoboa's cache. A child process gets
the ABIs through a JSON file (:func:`write_abis`, :mod:`tests.challenger.run_challenger`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vyper.compiler.output import build_abi_output

import l1_contracts.deploy as deploy
from l1_contracts.deploy import Compiled, boa_deployer

NAMES = (
    "Token", "Bridge", "Rollup", "OneStepProver", deploy.TEST_PROVER, *deploy.STEP_CONTRACTS,
)


def cached_compile(name: str) -> Compiled:
    """``compile_contract(name)`` from titanoboa's compilation cache."""
    data = boa_deployer(name).compiler_data
    return Compiled(name, build_abi_output(data), bytes(data.bytecode))


def patch_compile(monkeypatch: Any) -> None:
    """Make ``deploy_web3`` and the bindings' clients use :func:`cached_compile`."""
    monkeypatch.setattr(deploy, "compile_contract", cached_compile)


def write_abis(path: Path, names: tuple[str, ...] = ("Rollup", "OneStepProver", "Bridge", "Token")) -> None:
    """The ABIs a child process's bindings need, as JSON."""
    path.write_text(json.dumps({n: cached_compile(n).abi for n in names}))
