"""What a follower of one deployment reads at start: the deployment file and the genesis leaves.

Shared by ``hfx node`` and ``hfx challenger`` (both rebuild the L2 from L1
alone and need nothing else).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from state.context import ChainConfig


class DeploymentFileError(ValueError):
    """A deployment or genesis file that cannot be used."""


@dataclass(frozen=True)
class DeploymentInfo:
    """What a follower reads from a deployment JSON (``l1_contracts.deploy.Deployment.to_json``)."""

    chain_id: int
    rollup: str
    bridge: str
    prover: str
    block: int
    genesis_root: bytes
    oracle_keys: tuple[str, ...]
    oracle_threshold: int

    @staticmethod
    def load(path: str | os.PathLike[str]) -> DeploymentInfo:
        """Read a deployment file (raises :class:`DeploymentFileError` on a missing or malformed one)."""
        try:
            raw = json.loads(Path(path).read_text())
            return DeploymentInfo(
                int(raw["chain_id"]), str(raw["rollup"]), str(raw["bridge"]), str(raw["prover"]),
                int(raw["block"]), _hex(raw["genesis_root"]), tuple(raw["oracle_keys"]),
                int(raw["oracle_threshold"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeploymentFileError(f"{path}: not a deployment file ({type(exc).__name__}: {exc})") from None

    def chain(self) -> ChainConfig:
        """The STF's chain configuration of this deployment."""
        return ChainConfig(
            self.chain_id, _hex(self.rollup), frozenset(_hex(k) for k in self.oracle_keys), self.oracle_threshold
        )


def _hex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def load_genesis(path: str | os.PathLike[str]) -> dict[bytes, bytes]:
    """Genesis leaves from JSON: ``{"leaves": {"0x<32-byte key>": "0x<value>", ...}}``."""
    try:
        raw = json.loads(Path(path).read_text())
        return {_hex(k): _hex(v) for k, v in raw["leaves"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DeploymentFileError(f"{path}: not a genesis file ({type(exc).__name__}: {exc})") from None
