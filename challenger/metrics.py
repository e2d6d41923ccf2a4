"""The challenger's Prometheus endpoint: its bond budget, its games and its progress.

The main loop hands every status document (``challenger.cli.status``) to
:meth:`MetricsEndpoint.publish`; a scrape renders the last one, so a scrape
never waits on L1 and never races the loop. ``GET /metrics`` answers in the
Prometheus text format, ``GET /health`` with the age of the last status.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.rpc import Metrics

__all__ = ["MetricsEndpoint", "render_status"]

RESULTS = ("won", "lost", "cancelled")


def render_status(st: dict[str, Any]) -> str:
    """One status document as Prometheus text (``hfx_challenger_*``)."""
    m = Metrics()
    player = st.get("player", {})
    follower = st.get("follower", {})
    gauges = (
        ("hfx_challenger_budget_wei", "Most wei of bond this challenger locks in games at once.", player.get("budget")),
        ("hfx_challenger_locked_wei", "Wei of bond locked in open games.", player.get("locked")),
        ("hfx_challenger_free_bond_wei", "Wei of free bond held by the rollup for this account.", player.get("free_bond")),
        ("hfx_challenger_bond_wei", "The rollup's challenger bond per game.", player.get("challenger_bond")),
        ("hfx_challenger_active_games", "Games this account is playing.", len(player.get("active", []))),
        ("hfx_challenger_skipped_batches", "Disputable batches not challenged (budget, window).", len(player.get("skipped", {}))),
        ("hfx_challenger_l1_block", "Last L1 block the follower processed.", follower.get("l1_block")),
        ("hfx_challenger_head_batch", "Index of the derived head batch.", follower.get("head")),
    )
    for name, text, value in gauges:
        m.gauge(name, text)
        if value is not None:
            m.set(name, float(value))
    m.counter("hfx_challenger_games_total", "Finished games by result, from this account's side.", ("result",))
    for result in RESULTS:
        m.inc("hfx_challenger_games_total", result, amount=float(len(player.get(result, []))))
    m.counter("hfx_challenger_l1_errors_total", "L1 calls retried after a transport failure.")
    m.inc("hfx_challenger_l1_errors_total", amount=float(player.get("errors", 0)))
    return m.render()


class MetricsEndpoint:
    """``/metrics`` and ``/health`` over HTTP on a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._text = ""
        self._at: float | None = None
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/metrics":
                    body, kind, code = endpoint._metrics_text().encode(), "text/plain; version=0.0.4", 200
                elif self.path == "/health":
                    doc = endpoint._health()
                    body, kind = json.dumps(doc).encode(), "application/json"
                    code = 200 if doc["ok"] else 503
                else:
                    body, kind, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="challenger-metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def publish(self, status: dict[str, Any]) -> None:
        """Make ``status`` the document the next scrape renders."""
        text = render_status(status)
        with self._lock:
            self._text, self._at = text, time.monotonic()

    def _metrics_text(self) -> str:
        with self._lock:
            return self._text

    def _health(self) -> dict[str, Any]:
        with self._lock:
            at = self._at
        age = None if at is None else time.monotonic() - at
        return {"ok": age is not None, "statusAgeSeconds": age}

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
