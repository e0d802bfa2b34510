"""Subcommands that talk to model servers through the engine: ask, models, preload, unload,
clear-cache, stats."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nemo_tui import paths
from nemo_tui.backends.discovery import describe_health
from nemo_tui.cli.context import CommandContext, data_file, known_model, make_context
from nemo_tui.cli.event_json import event_json
from nemo_tui.cli.output import AnswerWriter, note, show
from nemo_tui.core.models.cache_policy import CachedModel
from nemo_tui.core.models.recommender import memory_budget_mb, planned_context
from nemo_tui.engine import Engine
from nemo_tui.errors import NemoError
from nemo_tui.events import (
    Cancelled,
    Done,
    EngineEvent,
    Evicting,
    Failed,
    Fallback,
    Loading,
    Notice,
    PromptOptimized,
    Query,
    Recommended,
    Token,
)
from nemo_tui.units import format_count, format_mb, format_pct, format_rate, format_seconds


def make_engine(ctx: CommandContext) -> Engine:
    """An engine for one command: no background monitor, shared metrics history."""
    return Engine(
        ctx.config,
        sampler=ctx.sampler,
        catalog=ctx.catalog,
        monitor=False,
        history_path=paths.history_file(),
    )


def run_with_engine(
    args: argparse.Namespace, body: Callable[[Engine, CommandContext], Awaitable[int]]
) -> int:
    """Run a command's body with a started engine, closed afterwards whatever happens."""
    ctx = make_context(args)

    async def main() -> int:
        engine = make_engine(ctx)
        try:
            await engine.start()
            return await body(engine, ctx)
        finally:
            await engine.aclose()

    return asyncio.run(main())


async def stream_query(engine: Engine, query: Query, *, as_json: bool) -> Done | Failed | Cancelled:
    """Submit a query and print it as it runs: JSON lines, or the answer and a summary.

    Returns:
        The query's final event.
    """
    handle = engine.submit(query)
    summary = None if as_json else _Summary()
    try:
        async for event in handle.events():
            if summary is None:
                print(json.dumps(event_json(event)), flush=True)
            else:
                summary.show(event)
    except asyncio.CancelledError:
        handle.cancel()
        raise
    final = await handle.result()
    if summary is not None:
        summary.finish(final)
    return final


def ask(args: argparse.Namespace) -> int:
    """`nemo-tui ask QUERY`: stream an answer to stdout, a one-line summary to stderr."""
    query = Query(args.query, model=args.model, data_file=data_file(args.data), host=args.host)

    async def body(engine: Engine, ctx: CommandContext) -> int:
        require_a_backend(engine)
        if query.model is not None:
            # Checked after the probe: a model installed on a backend counts as known.
            known_model(query.model, engine.catalog)
        final = await stream_query(engine, query, as_json=args.json)
        return 0 if isinstance(final, Done) else 1

    return run_with_engine(args, body)


def require_a_backend(engine: Engine) -> None:
    """Stop with the state of every backend when none can answer.

    Raises:
        NemoError: no backend is up, or none is configured.
    """
    healths = engine.healths()
    if any(h.up for h in healths):
        return
    key_env = engine.config.backends.gemini.api_key_env
    fix = (
        "start Ollama (`ollama serve`), install and enable the embedded model"
        f" (pip install 'nemo-tui[local]'), or set ${key_env} for the cloud model"
    )
    if not healths:
        raise NemoError("no model backend is configured", fix=fix)
    raise NemoError("no model backend is up:\n  " + "\n  ".join(describe_health(healths)), fix=fix)


class _Summary:
    """Turns engine events into the human output of `ask`: answer on stdout, the rest on stderr."""

    def __init__(self) -> None:
        self.reason = ""
        self.reduction = ""
        self.answer = AnswerWriter()

    def show(self, event: EngineEvent) -> None:
        if isinstance(event, Token):
            self.answer.write(event.text)
        elif isinstance(event, Recommended):
            self.reason = event.recommendation.reason
            if event.warning:
                note(f"warning: {event.warning}")
        elif isinstance(event, PromptOptimized) and event.result.truncated:
            result = event.result
            self.reduction = (
                f"prompt {format_count(result.original_tokens)} ->"
                f" {format_count(result.optimized_tokens)} tokens"
                f" ({format_pct(result.reduction_pct / 100)} smaller)"
            )
        elif isinstance(event, Fallback):
            note(f"{event.from_model} failed ({event.why}); trying {event.to_model}")
        elif isinstance(event, Evicting):
            note(f"unloaded {event.model}: {event.reason}")
        elif isinstance(event, Loading):
            note(f"loading {event.model} on {event.backend}...")
        elif isinstance(event, Notice):
            note(("warning: " if event.warning else "") + event.message)

    def finish(self, final: EngineEvent) -> None:
        self.answer.end_line()
        if isinstance(final, Done):
            parts = [
                f"{final.model} ({final.backend})",
                f"{format_count(final.tokens_in)} tokens in, {format_count(final.tokens_out)} out",
                format_rate(final.tokens_per_s),
                self.reduction or "prompt unchanged",
                _cache(final),
            ]
            if final.fallbacks:
                parts.append(f"after {', '.join(final.fallbacks)} failed")
            note(" | ".join(parts))
            if self.reason:
                note(f"why: {self.reason}")
        elif isinstance(final, Failed):
            if final.partial_text:
                note(f"(partial answer from {final.model} kept above)")
            note(f"{final.error.title}: {final.error.one_line()}")
        else:
            note("cancelled")


def _cache(done: Done) -> str:
    """Whether the answer found its model in memory, as the server reported it."""
    if not done.local:
        return "cloud"
    if done.cache_hit is None:
        return "cache hit unknown"
    if done.cache_hit:
        return "cache hit"
    return f"cache miss (loaded in {format_seconds(done.load_s)})"


@dataclass(frozen=True)
class _ModelRow:
    name: str
    backend: str
    tier: str
    installed: bool
    resident: CachedModel | None
    num_ctx: int
    estimated_mb: float
    fits: bool

    def to_json(self) -> dict[str, object]:
        loaded = self.resident
        return {
            "name": self.name,
            "backend": self.backend,
            "tier": self.tier,
            "installed": self.installed,
            "loaded": loaded is not None,
            "size_mb": _rounded(loaded.size_mb, 1) if loaded else None,
            "vram_share": _rounded(loaded.vram_share, 3) if loaded else None,
            "expires_at": _iso(loaded.expires_at) if loaded else None,
            "num_ctx": self.num_ctx,
            "estimated_mb": round(self.estimated_mb, 1),
            "fits": self.fits,
        }


def models(args: argparse.Namespace) -> int:
    """`nemo-tui models`: installed and loaded models, their memory at the planned context."""

    async def body(engine: Engine, ctx: CommandContext) -> int:
        profile = engine.sample()
        budget = memory_budget_mb(profile, engine.config.memory_thresholds.cache_limit)
        installed = engine.installed_names()
        resident = {m.name: m for m in engine.cached_models()}
        rows = []
        for name in engine.model_choices():
            spec = engine.catalog.get(name)
            if spec is None:
                continue
            loaded = resident.get(name)
            if loaded is not None and loaded.context_length:
                num_ctx = loaded.context_length
            else:
                num_ctx = planned_context(spec, profile, engine.config)
            estimate = spec.estimate(num_ctx).total_mb if spec.local else 0.0
            fits = (not spec.local) or loaded is not None or estimate <= budget
            rows.append(
                _ModelRow(
                    name,
                    spec.backend,
                    spec.tier.value,
                    name in installed,
                    loaded,
                    num_ctx,
                    estimate,
                    fits,
                )
            )
        if args.json:
            up = [h.backend for h in engine.healths() if h.up]
            report = {
                "budget_mb": round(budget, 1),
                "backends_up": up,
                "models": [row.to_json() for row in rows],
            }
            print(json.dumps(report, indent=2))
            return 0
        for line in describe_health(engine.healths()):
            show(line)
        show(f"\nMemory free under the cache limit: {format_mb(budget)}\n")
        show(f"{'model':<22} {'backend':<9} {'state':<10} {'ctx':>7} {'needs':>9} {'fits':>5}")
        for row in rows:
            state = "loaded" if row.resident else "installed" if row.installed else "-"
            show(
                f"{row.name:<22} {row.backend:<9} {state:<10} {row.num_ctx:>7,}"
                f" {format_mb(row.estimated_mb):>9} {'yes' if row.fits else 'no':>5}"
            )
            if row.resident is not None:
                show(f"{'':<22} {_resident(row.resident)}")
        return 0

    return run_with_engine(args, body)


def preload(args: argparse.Namespace) -> int:
    """`nemo-tui preload MODEL`: load a model now, if memory allows."""

    async def action(engine: Engine) -> object:
        known_model(args.model, engine.catalog)
        return await engine.preload(args.model, host=args.host)

    return _cache_action(args, action)


def unload(args: argparse.Namespace) -> int:
    """`nemo-tui unload MODEL`: from the host where it is loaded (`--host` says which)."""
    return _cache_action(args, lambda engine: engine.unload(args.model, host=args.host))


def clear_cache(args: argparse.Namespace) -> int:
    """`nemo-tui clear-cache`: unload every model loaded on this machine (or `--host`, or
    `--all-hosts`)."""
    return _cache_action(
        args, lambda engine: engine.clear_cache(args.host, all_hosts=args.all_hosts)
    )


def _cache_action(args: argparse.Namespace, action: Callable[[Engine], Awaitable[object]]) -> int:
    async def body(engine: Engine, ctx: CommandContext) -> int:
        result = await action(engine)
        ok = bool(getattr(result, "ok", False))
        message = str(getattr(result, "message", ""))
        if ok:
            show(message)
        else:
            note(message)
        return 0 if ok else 1

    return run_with_engine(args, body)


def stats(args: argparse.Namespace) -> int:
    """`nemo-tui stats`: system, models, optimization settings and metrics (getMemoryStats)."""

    async def body(engine: Engine, ctx: CommandContext) -> int:
        data = engine.stats()
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        metrics = engine.metrics
        print(f"Queries            {metrics.queries}")
        print(f"Cache hit rate     {format_pct(metrics.cache_hit_rate)}")
        print(f"Truncation rate    {format_pct(metrics.truncation_rate)}")
        print(f"Fallback usage     {format_pct(metrics.fallback_rate)}")
        print(f"Cloud share        {format_pct(metrics.cloud_share)}")
        latency = metrics.latency_percentiles()
        for name, label in (("first_token_s", "First token"), ("total_s", "Total time")):
            values = latency.get(name, {})
            print(
                f"{label:<18} p50 {format_seconds(values.get('p50'))},"
                f" p90 {format_seconds(values.get('p90'))}"
            )
        analyses = metrics.analyses
        print(
            f"Analysis scripts   {analyses.run} run, {analyses.failed} failed,"
            f" {analyses.repaired} repaired, peak {format_mb(analyses.peak_rss_mb)}"
        )
        show()
        for line in describe_health(engine.healths()):
            show(line)
        return 0

    return run_with_engine(args, body)


def _resident(model: CachedModel) -> str:
    """`resident 1.2 GB, 100% in VRAM, expires in 4m`; a size nobody reported is unknown."""
    if model.size_mb is None:
        size = "resident, size unknown"
    else:
        size = f"resident {format_mb(model.size_mb)}, {format_pct(model.vram_share)} in VRAM"
    return f"{size}, {_expires(model.expires_at)}"


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _expires(epoch: float | None) -> str:
    if epoch is None:
        return "kept until unloaded"
    return f"expires in {format_seconds(max(0.0, epoch - time.time()))}"
