"""The hfx command line."""

import json

import pytest

from node.cli import main
from state.batch import Batch
from state.txs import encode_funding, encode_trade
from tests.world import ETH_PERP, standard_world


def test_decode_batch_prints_orders_and_steps(tmp_path, capsys):
    w = standard_world()
    orders = (w.order("maker", ETH_PERP, False, 3_000_000, 5),)
    path = tmp_path / "batch.hex"
    path.write_text(Batch(w.time, orders, (encode_trade(0, 0, 5), encode_funding(), b"\x03\x00")).encode().hex())
    assert main(["decode-batch", "--hex", str(path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"timestamp": w.time, "orders": 1, "steps": 3}
    assert lines[1]["body"]["price"] == 3_000_000
    assert lines[2] == {"step": 0, "kind": "trade", "bytes": 13, "maker": 0, "taker": 0, "size": 5}
    assert lines[4] == {"step": 2, "kind": "trade", "bytes": 2, "malformed": True}


def test_decode_batch_refuses_garbage(tmp_path, capsys):
    path = tmp_path / "junk"
    path.write_bytes(b"\x07garbage")
    assert main(["decode-batch", str(path)]) == 2
    assert "not a batch" in capsys.readouterr().err



def test_delegated_command_reaches_its_module(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["challenger", "--help"])
    assert exit_info.value.code == 0
    assert "--deployment" in capsys.readouterr().out


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
