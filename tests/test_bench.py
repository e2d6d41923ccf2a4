"""The benchmark code at tiny sizes, so that ``scripts/bench`` cannot rot unnoticed.

Each bench module's function runs once on a small input and its figures are
checked for what they must be (a flow that fills, a replay that matches every
root, a table that names every target). The EVM part posts two seconds of
flow with the real ``Rollup.postBatch`` in titanoboa.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from node.replay_bench import ReplayMismatch, bench_replay
from sequencer.flow_bench import FlowSpec, intrinsic_gas, oracle_address, run_flow
from state.context import ChainConfig

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
TINY = FlowSpec(seconds=4, messages_per_s=100, makers=3, takers=6)


def _bench_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hfx_bench_script", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench_script()


def test_flow_fills_and_replays_to_the_same_roots() -> None:
    run = run_flow(TINY, CHAIN, 1_800_000_000)
    s = run.stats
    assert run.setup_batches == 1 and s.batches == len(run.flow_batches) >= 2
    assert s.fills > 0 and s.places > s.taker_orders > 0 and s.cancels > 0
    # written entries (docs/stf.md §5.2): the flow's orders all pack, to 82 bytes and a length byte
    assert s.entries * 83 == s.table_bytes < s.batch_bytes
    for before, after in zip(run.batches, run.batches[1:], strict=False):
        assert after.pre_root == before.post_root
    result = bench_replay(run)
    assert result.batches == s.batches and result.trades == s.fills and result.trades_per_s > 0


def test_replay_refuses_a_wrong_root() -> None:
    run = run_flow(TINY, CHAIN, 1_800_000_000)
    last = run.batches[-1]
    run.batches[-1] = dataclasses.replace(last, post_root=b"\x01" * 32)
    with pytest.raises(ReplayMismatch):
        bench_replay(run)


def test_flow_spec_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError):
        FlowSpec(seconds=0)
    with pytest.raises(ValueError):
        FlowSpec(taker_share=0.6, cancel_share=0.5)
    with pytest.raises(ValueError, match="oracle"):
        run_flow(TINY, ChainConfig(1, b"\x42" * 20, frozenset({b"\x01" * 20}), 1), 1_800_000_000)


def test_intrinsic_gas_takes_the_larger_of_the_two_rules() -> None:
    # 10 non-zero bytes, 5 zero bytes: 45 tokens; EIP-2028 charges 4 * 45 = 180 plus execution
    data = b"\x01" * 10 + b"\x00" * 5
    assert intrinsic_gas(data, 1_000) == 21_000 + 180 + 1_000
    assert intrinsic_gas(data, 0) == 21_000 + 450  # the EIP-7623 floor
    assert intrinsic_gas(data, 270) == 21_000 + 450  # both rules agree


def test_flow_posted_with_the_real_post_batch() -> None:
    import boa

    from sequencer.flow_bench import flow_l1_cost

    with boa.env.anchor():  # the contracts and their state go away after the test
        cost = flow_l1_cost(FlowSpec(seconds=2, messages_per_s=100, makers=3, takers=6))
    figures = cost.figures()
    assert len(cost.posts) == len(cost.run.batches) and cost.fills == cost.run.stats.fills > 0
    assert all(p.execution_gas > 21_000 and p.total_gas > p.execution_gas for p in cost.posts)
    assert 104 < figures["l1_bytes_per_fill"] < 10_000
    assert figures["l1_gas_per_fill"] > figures["l1_exec_gas_per_fill"] > 0


def test_other_bench_functions_run_small() -> None:
    from sequencer.book_bench import bench_match_ops
    from sequencer.intake_bench import run_bench

    assert bench.keccak_rate(1_000) > 0
    assert bench_match_ops(2_000, repeat=1) > 0
    result = run_bench(300)
    assert result.orders == 300 and result.fills > 0 and result.orders_per_s > 0


def test_table_targets_and_readme_markers(tmp_path: Path) -> None:
    figures = {"ecrecover_per_s": 10_000.0, "intake_orders_per_s": 4_000.0, "rpc_ack_p99_ms": 12.5,
               "l1_bytes_per_fill": 110.0, "extra_key": 1.0}
    table = bench.text_table(figures)
    assert "0.400 × ecrecover_per_s" in table and "MISSES ≥ 0.5" in table
    assert "MISSES ≤ 10" in table and "meets ≤ 120" in table and "extra_key" in table
    md = bench.markdown_table(figures)
    assert md.count("\n") == len(figures) + 1
    readme = tmp_path / "README.md"
    readme.write_text("# X\n\nbefore\n<!-- bench:start -->\nold\n<!-- bench:end -->\nafter\n")
    assert bench.write_readme(readme, "new table")
    assert readme.read_text() == "# X\n\nbefore\n<!-- bench:start -->\nnew table\n<!-- bench:end -->\nafter\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not bench.write_readme(plain, "new table") and plain.read_text() == "no markers\n"


def test_dispute_json_line_is_merged(tmp_path: Path) -> None:
    script = tmp_path / "dispute_bench.py"
    assert bench.dispute_figures(script) == {}
    script.write_text('print("setting up")\nprint(\'{"dispute_wall_s": 12.5, "challenge_open_blocks": 3, "x": "y"}\')\n')
    assert bench.dispute_figures(script) == {"dispute_wall_s": 12.5, "challenge_open_blocks": 3.0}
    script.write_text('import json, sys\nprint(json.dumps({"runs": float(sys.argv[2])}))\n')
    assert bench.dispute_figures(script, ("--runs", "1")) == {"runs": 1.0}
    script.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="exited with 3"):
        bench.dispute_figures(script)


def test_paired_ratio_is_taken_against_the_baseline_of_the_same_moment() -> None:
    values = iter([100.0, 400.0, 300.0, 100.0, 100.0, 100.0])  # before, figure, after, twice
    out = bench.paired("x_per_s", 2, lambda: next(values), lambda: next(values))
    assert out == {"x_per_s": 400.0, "x_per_s_ratio": 2.0}
    figures = {"ecrecover_per_s": 1_000.0, "intake_orders_per_s": 400.0, "intake_orders_per_s_ratio": 0.55}
    assert "0.550 × ecrecover_per_s" in bench.text_table(figures)
    assert "meets ≥ 0.5" in bench.text_table(figures) and "_ratio" not in bench.text_table(figures)
