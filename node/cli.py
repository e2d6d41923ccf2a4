"""The ``hfx`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import fields

from node.compiled_state import stale_warning
from state.batch import Batch
from state.errors import InvalidBatchError
from state.txs import KIND_NAMES, decode_order_entry, decode_step


def _describe_step(step: bytes) -> dict[str, object]:
    tx = decode_step(step)
    kind = KIND_NAMES.get(step[0], "unknown") if step else "empty"
    described: dict[str, object] = {"kind": kind, "bytes": len(step)}
    if tx is None:
        described["malformed"] = True
        return described
    for field in fields(tx):
        value = getattr(tx, field.name)
        if isinstance(value, bytes):
            value = "0x" + value.hex()
        elif isinstance(value, tuple):
            value = len(value)
        described[field.name] = value
    return described


def decode_batch_command(args: argparse.Namespace) -> int:
    """Print a batch file (raw bytes, or hex with --hex) as JSON, one line per step."""
    with open(args.file, "rb") as handle:
        data = handle.read()
    if args.hex:
        text = data.decode().strip()
        data = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    try:
        batch = Batch.decode(data)
    except InvalidBatchError as exc:
        print(f"error: not a batch: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"timestamp": batch.timestamp, "orders": len(batch.orders), "steps": len(batch.steps)}))
    for i, entry in enumerate(batch.orders):
        order = decode_order_entry(entry)
        body = None if order is None else {f.name: getattr(order.body, f.name) for f in fields(order.body)}
        print(json.dumps({"order": i, "body": body}))
    for i, step in enumerate(batch.steps):
        print(json.dumps({"step": i, **_describe_step(step)}))
    return 0


def sequencer_command(args: argparse.Namespace) -> int:
    """Run the sequencer process (imported here: node never imports sequencer at module level)."""
    from sequencer.process import main as run_sequencer

    return run_sequencer(args.config)


# Subcommands whose module parses its own arguments: ``hfx NAME ARGS...`` calls
# ``MODULE.main(ARGS)``. Modules are imported only when their command runs, so a
# node never loads the sequencer's code and ``hfx --help`` stays fast.
DELEGATED: dict[str, tuple[str, str]] = {
    "node": ("node.process", "follow L1, rebuild the state from L1 alone, serve read-only JSON-RPC"),
    "challenger": ("challenger.cli", "re-execute every batch and win the dispute game against wrong roots"),
    "liquidator": ("sequencer.liquidator", "earn liquidation bonuses through the sequencer's JSON-RPC"),
    "oracle-feeder": ("sequencer.oracle_feeder", "sign devnet oracle prices (random walk or price file)"),
    "demo-traders": ("sequencer.demo_traders", "devnet market makers and takers over JSON-RPC"),
    "deploy": ("l1_contracts.deploy_cli", "deploy the L1 contracts and write a deployment file"),
    "devnet": ("node.devnet", "run a whole local exchange: anvil, contracts and every process"),
    "batching-model": ("sequencer.batching_model", "the batch-interval cost model and its chart"),
}


def run_delegated(name: str, argv: list[str]) -> int:
    """Import the module behind ``hfx NAME`` and hand it the remaining arguments."""
    module_name, _ = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"error: hfx {name} is not available in this installation", file=sys.stderr)
        return 2
    result: int = module.main(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hfx`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stale = stale_warning()
    if stale is not None:
        print(f"hfx: warning: {stale}", file=sys.stderr)
    if argv and argv[0] in DELEGATED:
        return run_delegated(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="hfx", description="HFX optimistic-rollup derivatives exchange")
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode-batch", help="print a batch's orders and steps as JSON lines")
    decode.add_argument("file", help="batch bytes (or hex with --hex)")
    decode.add_argument("--hex", action="store_true", help="the file holds hex text")
    decode.set_defaults(func=decode_batch_command)
    seq = commands.add_parser("sequencer", help="run the sequencer (JSON-RPC, batcher, L1 watcher and publisher)")
    seq.add_argument("--config", required=True, help="TOML configuration (see docs/sequencer.example.toml)")
    seq.set_defaults(func=sequencer_command)
    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
