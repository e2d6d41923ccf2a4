"""The challenger's Prometheus endpoint renders its status document."""

import json
import re
import urllib.error
import urllib.request

import pytest

from challenger.metrics import MetricsEndpoint, render_status

STATUS = {
    "follower": {"l1_block": 120, "head": 7},
    "player": {
        "budget": 4_000, "locked": 1_000, "free_bond": 3_000, "challenger_bond": 1_000,
        "active": [{"game": 3, "batch": 7}], "won": [1, 2], "lost": [], "cancelled": [5],
        "skipped": {"6": "window closed"}, "errors": 4,
    },
}


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found is not None, f"{series} missing in\n{text}"
    return float(found.group(1))


def test_render_status_exposes_budget_games_and_progress() -> None:
    text = render_status(STATUS)
    assert _value(text, "hfx_challenger_budget_wei") == 4_000
    assert _value(text, "hfx_challenger_locked_wei") == 1_000
    assert _value(text, "hfx_challenger_free_bond_wei") == 3_000
    assert _value(text, "hfx_challenger_active_games") == 1
    assert _value(text, 'hfx_challenger_games_total{result="won"}') == 2
    assert _value(text, 'hfx_challenger_games_total{result="lost"}') == 0
    assert _value(text, 'hfx_challenger_games_total{result="cancelled"}') == 1
    assert _value(text, "hfx_challenger_skipped_batches") == 1
    assert _value(text, "hfx_challenger_l1_errors_total") == 4
    assert _value(text, "hfx_challenger_head_batch") == 7
    assert "# TYPE hfx_challenger_games_total counter" in text


def test_endpoint_serves_the_last_published_status() -> None:
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    base = f"http://127.0.0.1:{endpoint.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(base + "/health", timeout=5)
        assert unhealthy.value.code == 503
        endpoint.publish(STATUS)
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            assert _value(resp.read().decode(), 'hfx_challenger_games_total{result="won"}') == 2
        with urllib.request.urlopen(base + "/health", timeout=5) as resp:
            assert json.loads(resp.read())["ok"] is True
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nothing", timeout=5)
        assert missing.value.code == 404
    finally:
        endpoint.close()
