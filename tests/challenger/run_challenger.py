"""Run ``challenger.cli.main`` in a child process with the contracts' ABIs from a JSON file.

The bindings' clients take their ABIs from ``l1_contracts.deploy.compile_contract``,
which runs the Vyper compiler; the test that starts this process already has
the ABIs and passes them in ``$HFX_TEST_ABIS`` instead (tests.challenger.anvil_l1).
"""

from __future__ import annotations

import json
import os
import sys

import l1_contracts.deploy as deploy
from challenger.cli import main


def _from_file(name: str) -> deploy.Compiled:
    with open(os.environ["HFX_TEST_ABIS"]) as f:
        return deploy.Compiled(name, json.load(f)[name], b"")


if __name__ == "__main__":
    deploy.compile_contract = _from_file  # type: ignore[assignment]
    raise SystemExit(main(sys.argv[1:]))
