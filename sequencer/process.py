"""``hfx sequencer --config FILE``: the sequencer process (docs/rpc.md §Process).

One asyncio loop runs the :class:`ExchangeService` (durable core), the RPC
server (:class:`SequencerApi` on :class:`node.rpc.RpcServer`, ``/metrics``
included), the batcher (close on age or size; with ``[batcher] adaptive``
the age limit follows the batching model, :class:`AdaptiveBatcher`), the :class:`RiskMonitor`
(on every oracle update, and on a timer) and, when an L1 is configured,
the :class:`QueueWatcher` feeding ``add_l1_items``; a thread runs the
:class:`Publisher` (blocking web3 calls), fed with every closed batch, whose
final batches are confirmed back to the core (``confirm_published``), and
another the :class:`Defender`, which answers games against our batches with
roots replayed on the event loop (the core is single-threaded). The two
threads send from the same operator account, one transaction at a time.
SIGINT/SIGTERM stop everything in order: RPC first (no new commands), then
the L1 loops, then the core (WAL flushed and closed).

The configuration is TOML; see docs/sequencer.example.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import tomllib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account

from l1_contracts.config import MAX_BATCH_BYTES
from l1_contracts.deploy import Deployment
from node.l1 import L1Client
from node.l1_watch import QueuedDeposit, QueueWatcher
from node.rpc import RpcServer
from sequencer.batching_model import (
    DEFAULT_BYTES_PER_TX,
    DEFAULT_GAS_PER_BATCH,
    DEFAULT_GAS_PER_BYTE,
    ModelError,
    optimal_interval,
)
from sequencer.defender import BatchClaim, Defender, StoreRoots, Web3DefenderChain
from sequencer.exchange import ClosedBatch, Exchange, ExchangeConfig
from sequencer.logs import setup_json_logging
from sequencer.metrics import P, SequencerMetrics
from sequencer.outcomes import StepOutcome
from sequencer.publisher import Publisher, PublisherConfig, PublisherStatus
from sequencer.risk import InHouseLiquidator, RiskMonitor
from sequencer.rpc_api import SequencerApi
from sequencer.service import ExchangeService, quiet_gc
from state.constants import KIND_CALL, KIND_PERP, KIND_PUT, ORACLE_UNDERLYING_BASE
from state.context import ChainConfig, L1Deposit, L1Forced
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.layout import Config, Market
from state.signing import signed_oracle
from state.txs import OracleEntry

__all__ = [
    "AdaptiveBatcher", "BatcherConfig", "ConfigError", "SequencerConfig", "SequencerProcess",
    "l1_gas_price", "load_config", "main",
]

log = logging.getLogger("sequencer.process")

KINDS = {"perp": KIND_PERP, "call": KIND_CALL, "put": KIND_PUT}


class ConfigError(ValueError):
    """A configuration file that cannot be used."""


@dataclass(frozen=True)
class DevOracle:
    """A constant-price oracle feeder for devnets: signs an update every ``interval`` s."""

    keys: tuple[bytes, ...]
    interval: float
    marks: dict[int, int]
    spots: dict[int, int]
    ivs: dict[int, int]


@dataclass(frozen=True)
class RiskConfig:
    """``[risk]``: the risk monitor (docs/risk.md). Each job can be turned off."""

    enabled: bool = True
    liquidator_key: bytes | None = None
    """The in-house liquidator's key (its account must hold collateral); None: no liquidations
    into the operator's account (ADL, funding and settlement still run)."""
    liquidations: bool = True
    funding: bool = True
    funding_interval: int = 3_600
    settlement: bool = True
    tick_interval: float = 5.0
    """A monitor tick also runs this often without oracle updates (0: only on updates)."""


@dataclass(frozen=True)
class DefenderConfig:
    """``[defender]``: answering games against our batches (needs ``[l1]`` and the operator key)."""

    enabled: bool = True
    interval: float = 1.0


@dataclass(frozen=True)
class BatcherConfig:
    """``[batcher]``: an age limit that follows the batching model (docs/batching.md §5).

    With ``adaptive`` the limit is ``optimal_interval`` of the L1 gas price
    (base fee + tip), the measured flow and bytes per step, and the operator's
    ``risk_gwei`` (h, gwei per transaction-second), recomputed every
    ``recompute_interval`` seconds and clamped to [``min_age``, ``max_age``];
    otherwise ``[batch] max_age_seconds`` is the limit."""

    adaptive: bool = False
    min_age: float = 1.0
    max_age: float = 60.0
    risk_gwei: float = 60_000.0
    gas_per_batch: float = DEFAULT_GAS_PER_BATCH
    gas_per_byte: float = DEFAULT_GAS_PER_BYTE
    recompute_interval: float = 5.0
    window: float = 60.0
    """Seconds of closed batches the flow and bytes per step are measured over."""


@dataclass(frozen=True)
class SequencerConfig:
    """Everything ``hfx sequencer`` reads from its TOML file (docs/sequencer.example.toml)."""

    data_dir: Path
    rpc_host: str
    rpc_port: int
    genesis_time: int
    genesis_config: Config
    markets: tuple[Market, ...]
    chain_id: int | None = None
    rollup: str | None = None
    oracle_keys: tuple[str, ...] = ()
    oracle_threshold: int = 1
    l1_url: str | None = None
    deployment: Path | None = None
    operator_key: str | None = None
    confirmations: int = 2
    l1_poll_interval: float = 1.0
    publish_interval: float = 1.0
    max_batch_age: int = 2
    max_batch_bytes: int = MAX_BATCH_BYTES
    batcher_interval: float = 0.05
    dev_oracle: DevOracle | None = None
    risk: RiskConfig = field(default_factory=RiskConfig)
    defender: DefenderConfig = field(default_factory=DefenderConfig)
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)


def _ints(table: dict[str, Any]) -> dict[int, int]:
    return {int(k): int(v) for k, v in table.items()}


def _key_bytes(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def _env_or_value(table: dict[str, Any], name: str) -> str | None:
    """``table[name]``, or the environment variable named by ``table[name + "_env"]``."""
    value = table.get(name)
    if value is None and f"{name}_env" in table:
        value = os.environ.get(str(table[f"{name}_env"]))
        if value is None:
            raise ConfigError(f"environment variable {table[f'{name}_env']} is not set")
    return None if value is None else str(value)


def _bool(table: dict[str, Any], name: str, default: bool) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _risk_config(raw: dict[str, Any]) -> RiskConfig:
    key = _env_or_value(raw, "liquidator_key")
    interval = int(raw.get("funding_interval", 3_600))
    tick = float(raw.get("tick_interval", 5.0))
    if interval <= 0 or tick < 0:
        raise ConfigError("risk.funding_interval must be positive and risk.tick_interval >= 0")
    return RiskConfig(
        enabled=_bool(raw, "enabled", True),
        liquidator_key=None if key is None else _key_bytes(key),
        liquidations=_bool(raw, "liquidations", True), funding=_bool(raw, "funding", True),
        funding_interval=interval, settlement=_bool(raw, "settlement", True), tick_interval=tick,
    )


def _defender_config(raw: dict[str, Any]) -> DefenderConfig:
    interval = float(raw.get("interval", 1.0))
    if interval <= 0:
        raise ConfigError("defender.interval must be positive")
    return DefenderConfig(enabled=_bool(raw, "enabled", True), interval=interval)


def _batcher_config(raw: dict[str, Any]) -> BatcherConfig:
    d = BatcherConfig()
    names = ("min_age", "max_age", "risk_gwei", "gas_per_batch", "gas_per_byte",
             "recompute_interval", "window")
    values = {name: float(raw.get(name, getattr(d, name))) for name in names}
    unknown = set(raw) - set(names) - {"adaptive"}
    if unknown:
        raise ConfigError(f"unknown batcher settings: {sorted(unknown)}")
    if not all(0 < v < float("inf") for v in values.values()):
        raise ConfigError("batcher settings must be positive and finite")
    if values["min_age"] > values["max_age"]:
        raise ConfigError("batcher.min_age must not exceed batcher.max_age")
    return BatcherConfig(adaptive=_bool(raw, "adaptive", False), **values)


class AdaptiveBatcher:
    """The batch age limit from the batching model, fed by the sequencer's own batches.

    :meth:`observe` records each closed batch (steps, bytes, when); :meth:`recompute`
    turns the last ``window`` seconds of them and an L1 gas price into
    ``optimal_interval`` (docs/batching.md §5) — shorter when trading is busy or gas
    is cheap, longer when quiet or dear — and keeps it as :attr:`interval`."""

    def __init__(self, cfg: BatcherConfig, max_bytes: int, started: float) -> None:
        self.cfg = cfg
        self.max_bytes = max_bytes
        self.started = started
        self.interval = cfg.max_age
        """The current age limit, seconds (``max_age`` until the first recompute)."""
        self._seen: deque[tuple[float, int, int]] = deque()

    def observe(self, at: float, steps: int, nbytes: int) -> None:
        """A batch of ``steps`` steps and ``nbytes`` bytes closed at ``at`` (monotonic s)."""
        self._seen.append((at, steps, nbytes))
        self._forget_before(at - self.cfg.window)

    def _forget_before(self, start: float) -> None:
        seen = self._seen
        while seen and seen[0][0] < start:
            seen.popleft()

    def measured(self, now: float) -> tuple[float, float]:
        """(steps per second, bytes per step) over the last ``window`` seconds."""
        self._forget_before(now - self.cfg.window)
        seen = self._seen
        steps = sum(s for _, s, _ in seen)
        nbytes = sum(b for _, _, b in seen)
        span = max(min(self.cfg.window, now - self.started), 1e-3)
        return steps / span, (nbytes / steps if steps else DEFAULT_BYTES_PER_TX)

    def recompute(self, gas_price: int, now: float) -> float:
        """The age limit for ``gas_price`` (wei per gas) and the measured flow; kept as
        :attr:`interval`. Raises :class:`~sequencer.batching_model.ModelError` for unusable
        inputs (the previous interval stays)."""
        c = self.cfg
        flow, bytes_per_tx = self.measured(now)
        self.interval = optimal_interval(
            gas_per_batch=c.gas_per_batch, gas_per_byte=c.gas_per_byte, gas_price=float(gas_price),
            flow=flow, risk_cost=c.risk_gwei * 1e9, bytes_per_tx=bytes_per_tx,
            min_interval=c.min_age, max_interval=c.max_age, max_bytes=self.max_bytes,
        )
        return self.interval


def l1_gas_price(l1: L1Client) -> int:
    """What a batch posted now pays per gas: the latest base fee plus the tip the L1
    client would offer (its fee policy's clamp of the node's suggestion)."""
    fees = l1.suggest_fees()
    base = int(l1.block("latest").get("baseFeePerGas", 0) or 0)
    return base + fees.max_priority_fee_per_gas


def load_config(path: str | os.PathLike[str]) -> SequencerConfig:
    """Parse and check a TOML configuration; relative paths are relative to the file."""
    base = Path(path).resolve().parent
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        rpc = raw.get("rpc", {})
        l1 = raw.get("l1", {})
        batch = raw.get("batch", {})
        gen = raw["genesis"]
        cfg = gen["config"]
        genesis_config = Config(
            taker_fee_bps=int(cfg["taker_fee_bps"]), maker_rebate_bps=int(cfg["maker_rebate_bps"]),
            liquidation_penalty_bps=int(cfg["liquidation_penalty_bps"]),
            liquidator_bonus_bps=int(cfg["liquidator_bonus_bps"]),
            sync_buffer_bps=int(cfg["sync_buffer_bps"]), funding_cap_bps=int(cfg["funding_cap_bps"]),
            max_oracle_age=int(cfg["max_oracle_age"]),
        )
        markets = tuple(
            Market(
                KINDS[m["kind"]], int(m["underlying"]), int(m["im_bps"]), int(m["mm_bps"]),
                int(m["tick"]), int(m["lot"]), int(m.get("strike", 0)), int(m.get("expiry", 0)),
                int(m.get("size_decimals", 0)),
            )
            for m in gen["markets"]
        )
        key = l1.get("operator_key")
        if key is None and "operator_key_env" in l1:
            key = os.environ.get(str(l1["operator_key_env"]))
            if key is None:
                raise ConfigError(f"environment variable {l1['operator_key_env']} is not set")
        dev = raw.get("dev_oracle")
        dev_oracle = None if dev is None else DevOracle(
            tuple(_key_bytes(k) for k in dev["keys"]), float(dev.get("interval", 5)),
            _ints(dev.get("marks", {})), _ints(dev.get("spots", {})), _ints(dev.get("ivs", {})),
        )
        deployment = l1.get("deployment")
        max_bytes = int(batch.get("max_bytes", MAX_BATCH_BYTES))
        if not 16_384 <= max_bytes <= MAX_BATCH_BYTES:
            raise ConfigError(f"batch.max_bytes must be in [16384, {MAX_BATCH_BYTES}]")
        return SequencerConfig(
            data_dir=base / raw["data_dir"],
            rpc_host=str(rpc.get("host", "127.0.0.1")),
            rpc_port=int(rpc.get("port", 8546)),
            genesis_time=int(gen["time"]),
            genesis_config=genesis_config,
            markets=markets,
            chain_id=None if "chain_id" not in gen else int(gen["chain_id"]),
            rollup=gen.get("rollup"),
            oracle_keys=tuple(gen.get("oracle_keys", ())),
            oracle_threshold=int(gen.get("oracle_threshold", 1)),
            l1_url=l1.get("url"),
            deployment=None if deployment is None else base / deployment,
            operator_key=key,
            confirmations=int(l1.get("confirmations", 2)),
            l1_poll_interval=float(l1.get("poll_interval", 1.0)),
            publish_interval=float(l1.get("publish_interval", 1.0)),
            max_batch_age=int(batch.get("max_age_seconds", 2)),
            max_batch_bytes=max_bytes,
            batcher_interval=float(batch.get("check_interval", 0.05)),
            dev_oracle=dev_oracle,
            risk=_risk_config(raw.get("risk", {})),
            defender=_defender_config(raw.get("defender", {})),
            batcher=_batcher_config(raw.get("batcher", {})),
            log_level=str(raw.get("log_level", "INFO")),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path}: {exc}") from None


def _chain(cfg: SequencerConfig, deployment: Deployment | None, root: bytes) -> ChainConfig:
    if deployment is not None:
        if deployment.genesis_root.lower() != "0x" + root.hex():
            raise ConfigError(
                f"the genesis in the config has root 0x{root.hex()}, the deployment {deployment.genesis_root}"
            )
        if deployment.genesis_time != cfg.genesis_time:
            raise ConfigError("genesis.time differs from the deployment's genesis_time")
        return ChainConfig(
            deployment.chain_id, _key_bytes(deployment.rollup),
            frozenset(_key_bytes(k) for k in deployment.oracle_keys), deployment.oracle_threshold,
        )
    if cfg.chain_id is None or cfg.rollup is None:
        raise ConfigError("without l1.deployment, genesis.chain_id and genesis.rollup are required")
    return ChainConfig(
        cfg.chain_id, _key_bytes(cfg.rollup), frozenset(_key_bytes(k) for k in cfg.oracle_keys),
        cfg.oracle_threshold,
    )


class SequencerProcess:
    """The running sequencer: build with a :class:`SequencerConfig`, ``await start()``, ``await stop()``."""

    def __init__(self, cfg: SequencerConfig, *, tune_gc: bool = False) -> None:
        self.cfg = cfg
        self.tune_gc = tune_gc
        """Freeze the recovered objects out of the cyclic collector once started (:func:`quiet_gc`;
        process-wide, so only the ``hfx sequencer`` entry point turns it on)."""
        self.deployment: Deployment | None = None
        if cfg.deployment is not None:
            self.deployment = Deployment.from_json(cfg.deployment.read_text())
        self.leaves = genesis_leaves(cfg.genesis_config, cfg.markets, cfg.genesis_time)
        db = StateDB.in_memory()
        root = db.initialize(dict(self.leaves))
        self.chain = _chain(cfg, self.deployment, root)
        self.exchange_config = ExchangeConfig(max_batch_age=cfg.max_batch_age, max_batch_bytes=cfg.max_batch_bytes)
        self.service: ExchangeService | None = None
        self.server: RpcServer | None = None
        self.api: SequencerApi | None = None
        self.metrics: SequencerMetrics | None = None
        self.publisher: Publisher | None = None
        self.watcher: QueueWatcher | None = None
        self.port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._to_publish: deque[ClosedBatch] = deque()
        self._status: PublisherStatus | None = None
        self._l1_states: dict[int, str] = {}
        self._watch_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.monitor: RiskMonitor | None = None
        self.defender: Defender | None = None
        self._defender_thread: threading.Thread | None = None
        self._send_lock = threading.Lock()
        """Held while the publisher or the defender sends from the operator account."""
        self.l1: L1Client | None = None
        """The model-driven age limit (``[batcher] adaptive``), else None."""
        self._defender_status: dict[str, Any] | None = None
        """The defender's :meth:`Defender.status` after its last tick (replaced whole, never mutated)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Recover the core, start every component; returns the RPC port."""
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.service = ExchangeService.open(
            cfg.data_dir / "core", self.chain, dict(self.leaves), config=self.exchange_config
        )
        self.server = RpcServer(health=self._health)
        self.api = SequencerApi(
            self.service, self.server, publisher_status=lambda: self._status,
            extra_status=self._extra_status,
        )
        self.metrics = SequencerMetrics(self.server.metrics, self.api)
        if cfg.risk.enabled:
            self._start_risk()
        if cfg.l1_url is not None and self.deployment is not None:
            self._start_l1()
        self._start_batcher()
        await self.service.warm_up()
        self._tasks.append(asyncio.create_task(self._metrics_loop()))
        if cfg.dev_oracle is not None:
            self._tasks.append(asyncio.create_task(self._oracle_loop(cfg.dev_oracle)))
        self.port = await self.server.start(cfg.rpc_host, cfg.rpc_port)
        if self.tune_gc:
            quiet_gc()
        log.info("sequencer started", extra={"rpc_port": self.port, "chain_id": self.chain.chain_id,
                                             "next_batch": self.service.core.next_batch_index})
        return self.port

    def _start_batcher(self) -> None:
        """The batcher; with ``[batcher] adaptive`` its age limit follows the model."""
        assert self.service is not None and self.server is not None  # noqa: S101
        cfg = self.cfg
        self.service.start_batcher(cfg.batcher_interval)
        self.server.metrics.gauge(
            f"{P}_batch_age_limit_seconds", "The batcher's current age limit (docs/batching.md §5).",
            callback=self._age_limit,
        )
        if not cfg.batcher.adaptive:
            return
        batcher = AdaptiveBatcher(cfg.batcher, cfg.max_batch_bytes, time.monotonic())
        self.service.max_batch_age = batcher.interval
        if self.l1 is None:
            log.warning("batcher.adaptive without [l1]: no gas price, the age limit stays at max_age")
            return
        self.service.core.batch_hooks.append(
            lambda closed: batcher.observe(time.monotonic(), closed.step_count, len(closed.encoded))
        )
        self._tasks.append(asyncio.create_task(self._adapt_loop(batcher, self.l1)))

    def _age_limit(self) -> float:
        service = self.service
        if service is not None and service.max_batch_age is not None:
            return service.max_batch_age
        return float(self.cfg.max_batch_age)

    async def _adapt_loop(self, batcher: AdaptiveBatcher, l1: L1Client) -> None:
        """Recompute the age limit every ``recompute_interval`` seconds."""
        while True:
            try:
                gas_price = await asyncio.to_thread(l1_gas_price, l1)
                interval = batcher.recompute(gas_price, time.monotonic())
                if self.service is not None:
                    self.service.max_batch_age = interval
            except (ModelError, OSError, ValueError) as exc:
                log.warning("batch age limit not recomputed: %s", exc)
            except Exception:
                log.exception("batch age limit not recomputed")
            await asyncio.sleep(batcher.cfg.recompute_interval)

    def _start_l1(self) -> None:
        cfg, d = self.cfg, self.deployment
        assert cfg.l1_url is not None and d is not None and self.service is not None  # noqa: S101
        l1 = L1Client(cfg.l1_url, depth=cfg.confirmations)
        self.l1 = l1
        if l1.chain_id != d.chain_id:
            raise ConfigError(f"the L1 at {cfg.l1_url} has chain id {l1.chain_id}, the deployment {d.chain_id}")
        self.watcher = QueueWatcher(
            l1, d.bridge, start_block=d.block, depth=cfg.confirmations,
            cursor_path=cfg.data_dir / "queues.json",
        )
        self._tasks.append(asyncio.create_task(self._watch_loop()))
        if cfg.operator_key is None:
            log.warning("no operator key: batches are not published")
            return
        account = Account.from_key(cfg.operator_key)
        self.publisher = Publisher(
            l1, d.rollup, account, state_path=cfg.data_dir / "publisher.json", start_block=d.block,
            config=PublisherConfig(depth=cfg.confirmations),
        )
        self._to_publish.extend(self.service.core.pending_batches())
        self.service.core.batch_hooks.append(self._to_publish.append)
        self._thread = threading.Thread(target=self._publish_loop, name="publisher", daemon=True)
        self._thread.start()
        if cfg.defender.enabled:
            chain = Web3DefenderChain(l1, d.rollup, account)
            self.defender = Defender(chain, _LoopRoots(self, self._loop))
            self._defender_thread = threading.Thread(target=self._defend_loop, name="defender", daemon=True)
            self._defender_thread.start()

    def _start_risk(self) -> None:
        """The risk monitor on the core's oracle hook, and on a timer (docs/risk.md §1)."""
        assert self.service is not None  # noqa: S101
        r = self.cfg.risk
        core = self.service.core
        key = r.liquidator_key
        liquidator = InHouseLiquidator(key if key is not None else bytes(32), 0)
        self.monitor = RiskMonitor(
            liquidator, funding_interval=r.funding_interval, funding_enabled=r.funding,
            settlement_enabled=r.settlement, liquidations_enabled=r.liquidations,
        )
        self._resolve_liquidator(core)
        core.oracle_hooks.append(self._on_oracle)
        if r.tick_interval > 0:
            self._tasks.append(asyncio.create_task(self._risk_loop(r.tick_interval)))

    def _resolve_liquidator(self, core: Exchange) -> None:
        """Find the in-house liquidator's account (once it exists: it deposits like anyone)."""
        m, key = self.monitor, self.cfg.risk.liquidator_key
        if m is None or key is None or m.liquidator.account > 0:
            return
        index = core.account_index(address_of(key))
        if index is not None:
            m.liquidator.account = index
            log.info("in-house liquidator", extra={"account": index})

    def _on_oracle(self, core: Exchange, outcome: StepOutcome) -> None:
        """The oracle hook: a monitor tick. The update itself is applied and logged already, so
        a failure here is logged, never raised into the command that carried the update."""
        if self.monitor is None:
            return
        try:
            self._resolve_liquidator(core)
            self.monitor.on_oracle(core, outcome)
        except Exception:
            log.exception("risk monitor tick failed")

    async def _risk_loop(self, interval: float) -> None:
        """A monitor tick every ``interval`` seconds (funding accrues without oracle updates)."""
        while True:
            await asyncio.sleep(interval)
            if self.monitor is None or self.service is None:
                continue
            core = self.service.core
            try:
                self._resolve_liquidator(core)
                self.monitor.tick(core, max(core.clock, int(time.time())))
            except Exception:
                log.exception("risk monitor tick failed")

    async def stop(self) -> None:
        """Stop accepting requests, stop the L1 loops and the batcher, close the core."""
        if self.server is not None:
            await self.server.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        if self._defender_thread is not None:
            await asyncio.to_thread(self._defender_thread.join, 30)
        if self.service is not None:
            await self.service.aclose()
            self.service = None
        log.info("sequencer stopped")

    async def run_until_signal(self) -> None:
        """Start, wait for SIGINT or SIGTERM, stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("signal received: shutting down")
        finally:
            await self.stop()

    # ------------------------------------------------------------------ loops

    async def _health(self) -> dict[str, Any]:
        st = self._status
        if st is not None and st.halted:
            raise RuntimeError(f"publisher halted: {st.halted}")
        return {"nextBatchIndex": None if self.service is None else self.service.core.next_batch_index}

    def _extra_status(self) -> dict[str, Any]:
        w = self.watcher
        return {
            "defender": self._defender_status,
            "l1Watcher": None if w is None else {
                "block": w.cursor.block, "nextDeposit": w.cursor.next_deposit,
                "nextForced": w.cursor.next_forced, "error": self._watch_error,
            }
        }

    async def _watch_loop(self) -> None:
        """Poll the bridge queues; hand new items to the core; commit the cursor."""
        assert self.watcher is not None and self.service is not None  # noqa: S101
        watcher, service = self.watcher, self.service
        while True:
            try:
                items = await asyncio.to_thread(watcher.poll)
                deposits = [i for i in items if isinstance(i, QueuedDeposit)]
                forced = [i for i in items if not isinstance(i, QueuedDeposit)]
                if items:
                    out = await service.add_l1_items(
                        [d.item for d in deposits if isinstance(d.item, L1Deposit)],
                        [f.item for f in forced if isinstance(f.item, L1Forced)],
                        deposit_start=deposits[0].index if deposits else None,
                        forced_start=forced[0].index if forced else None,
                    )
                    log.info("l1 items", extra={"deposits": len(out.deposits), "forced": len(out.forced)})
                await asyncio.to_thread(watcher.commit)
                self._watch_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient L1 errors, QUEUE_GAP: logged, retried
                self._watch_error = str(exc)
                log.exception("l1 watcher poll failed")
            await asyncio.sleep(self.cfg.l1_poll_interval)

    def _publish_loop(self) -> None:
        """(thread) Submit closed batches, tick the publisher, confirm final batches to the core."""
        assert self.publisher is not None and self._loop is not None  # noqa: S101
        pub, loop = self.publisher, self._loop
        confirmed = -1
        while not self._stop.is_set():
            try:
                while self._to_publish:
                    batch = self._to_publish[0]
                    try:
                        pub.submit(batch)
                    except Exception:
                        log.exception("publisher refused batch %d", batch.index)
                    self._to_publish.popleft()
                with self._send_lock:
                    status = pub.tick()
                self._status = status
                loop.call_soon_threadsafe(self._on_status, status)
                if status.anchor.index > confirmed:
                    confirmed = status.anchor.index
                    loop.call_soon_threadsafe(self._confirm, confirmed)
            except Exception:
                log.exception("publisher tick failed; retrying")
            self._stop.wait(self.cfg.publish_interval)

    def _defend_loop(self) -> None:
        """(thread) Answer the games against our batches every ``defender.interval`` seconds."""
        assert self.defender is not None  # noqa: S101
        while not self._stop.is_set():
            try:
                with self._send_lock:
                    actions = self.defender.tick()
                self._defender_status = self.defender.status()
                for a in actions:
                    log.info("defender", extra={"game": a.game, "batch": a.batch, "move": a.move,
                                                "detail": a.detail})
            except Exception:
                log.exception("defender tick failed; retrying")
            self._stop.wait(self.cfg.defender.interval)

    async def roots_on_loop(self, claim: BatchClaim, points: list[int]) -> dict[int, bytes]:
        """(event loop) The core's own roots of the batch ``claim`` names (:class:`StoreRoots`),
        replayed a slice at a time between commands."""
        if self.service is None:
            raise RuntimeError("the sequencer is stopped")
        core = self.service.core
        work = StoreRoots(core.pending_batches, lambda: core.db, self.chain).slices(claim, points)
        while True:
            try:
                next(work)
            except StopIteration as stop:
                roots: dict[int, bytes] = stop.value
                return roots
            await asyncio.sleep(0)

    def _confirm(self, upto: int) -> None:
        if self.service is not None:
            self.service.core.confirm_published(upto)

    def _on_status(self, status: PublisherStatus) -> None:
        """Push a ``batches`` update for each batch whose L1 state changed."""
        if self.api is None:
            return
        for r in status.batches:
            state = str(r.state)
            if self._l1_states.get(r.index) != state:
                self._l1_states[r.index] = state
                summary = self.api.batches.get(r.index)
                log.info("batch l1 state", extra={"batch": r.index, "state": state, "batch_id": r.batch_id})
                if summary is not None and self.server is not None:
                    self.server.publish("batches", {**summary, "l1": self.api._l1_json(status, r.index)})

    async def _metrics_loop(self) -> None:
        while True:
            if self.metrics is not None:
                self.metrics.refresh(self._status, monitor=self.monitor, defender=self.defender)
            await asyncio.sleep(1.0)

    async def _oracle_loop(self, dev: DevOracle) -> None:
        """Devnet only: sign and submit constant prices every ``dev.interval`` seconds."""
        assert self.service is not None  # noqa: S101
        last = 0
        while True:
            now = max(int(time.time()), last + 1)
            entries = [OracleEntry(m, p, dev.ivs.get(m, 0)) for m, p in sorted(dev.marks.items())]
            entries += [OracleEntry(ORACLE_UNDERLYING_BASE + u, p, 0) for u, p in sorted(dev.spots.items())]
            step = signed_oracle(list(dev.keys), self.chain.domain, now, entries)
            try:
                await self.service.submit_oracle(step, now=now)
                last = now
            except Exception:
                log.exception("dev oracle update refused")
            await asyncio.sleep(dev.interval)


class _LoopRoots:
    """A :class:`sequencer.defender.RootSource` for the defender thread: the replay runs on the
    event loop, a slice of steps at a time between commands, since the core and its state DB
    are single-threaded."""

    def __init__(self, process: SequencerProcess, loop: asyncio.AbstractEventLoop | None) -> None:
        assert loop is not None  # noqa: S101 - set by start()
        self.process = process
        self.loop = loop

    def roots_at(self, claim: BatchClaim, points: Sequence[int]) -> dict[int, bytes]:
        """See :meth:`sequencer.defender.RootSource.roots_at`."""
        work = self.process.roots_on_loop(claim, list(points))
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=300)


def main(config_path: str) -> int:
    """Run the sequencer of ``config_path`` until SIGINT/SIGTERM."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    setup_json_logging(cfg.log_level)
    try:
        asyncio.run(SequencerProcess(cfg, tune_gc=True).run_until_signal())
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    return 0
