"""Subcommands that need no model server: status, recommend, optimize, estimate, check-config,
locate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import BinaryIO

from nemo_tui import paths
from nemo_tui.cli.context import CommandContext, data_file, make_context
from nemo_tui.cli.output import show
from nemo_tui.config import dump_config_yaml, load_config
from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel, pressure_level
from nemo_tui.core.models.catalog import resolve_model_argument
from nemo_tui.core.models.complexity import Complexity, ComplexityAssessment, assess_complexity
from nemo_tui.core.models.recommender import (
    ANSWER_TOKENS,
    Recommendation,
    RecommendationRequest,
    planned_context,
    recommend,
)
from nemo_tui.core.models.routing import CLOUD_HOST
from nemo_tui.core.prompt.optimizer import OptimizedPrompt, optimize_prompt
from nemo_tui.core.prompt.tokens import estimate_tokens
from nemo_tui.core.reports.memory_json import memory_json
from nemo_tui.errors import ConfigError, UsageError
from nemo_tui.units import format_count, format_mb, format_pct


def print_json(data: object) -> None:
    """Write one JSON document to stdout."""
    print(json.dumps(data, indent=2))


def status(args: argparse.Namespace) -> int:
    """`nemo-tui status`: the memory profile, pressure level and the current recommendation."""
    ctx = make_context(args)
    profile = ctx.sampler.sample()
    level = pressure_level(profile, ctx.config.memory_thresholds.pressure_threshold)
    complexity = _forced_complexity(ctx) or Complexity.MEDIUM
    rec = recommend(profile, ctx.recommendation_request(complexity), ctx.config)
    if args.json:
        from nemo_tui.cli.host_commands import status_hosts

        memory = memory_json(profile, level)
        hosts = status_hosts(ctx, profile)
        print_json({"memory": memory, "recommendation": rec.to_json(), "hosts": hosts})
        return 0
    show(describe_memory(profile, level))
    show()
    show(f"For a {complexity.value}-complexity query:")
    show(describe_recommendation(rec))
    return 0


def _routed(
    ctx: CommandContext, profile: MemoryProfile, request: RecommendationRequest
) -> tuple[Recommendation, str]:
    """The recommendation across the lab's hosts (each asked once), and the host it runs on:
    this machine's name, another host's, or `cloud`."""
    local_name = ctx.config.local_host.name
    if not ctx.config.hosts:
        rec = recommend(profile, request, ctx.config)
        return rec, local_name if rec.local else CLOUD_HOST
    import asyncio

    from nemo_tui.cli.host_commands import TakenSample, refresh_once
    from nemo_tui.engine.planning import remote_hosts_from, route_query

    statuses = asyncio.run(refresh_once(ctx.config, TakenSample(profile)))
    remotes = remote_hosts_from(statuses)
    rec, remote, _ = route_query(
        request, profile, ctx.config, list(remotes.values()), local_host=local_name
    )
    if not rec.local:
        return rec, CLOUD_HOST
    return rec, remote.name if remote is not None else local_name


def recommend_command(args: argparse.Namespace) -> int:
    """`nemo-tui recommend QUERY`: the model for this query now, and the host it runs on."""
    ctx = make_context(args)
    attached = data_file(args.data)
    profile = ctx.sampler.sample()
    assessment = _assess(
        ctx, args.query, data_attached=attached is not None, forced=args.complexity
    )
    request = ctx.recommendation_request(assessment.level, estimate_tokens(args.query))
    rec, host = _routed(ctx, profile, request)
    if args.json:
        print_json(
            {
                **rec.to_json(),
                "host": host,
                "complexity": assessment.level.value,
                "complexity_reasons": list(assessment.reasons),
                "decision_ms": round(rec.decision_ms, 3),
            }
        )
        return 0
    reasons = ", ".join(assessment.reasons) or "nothing stood out"
    show(f"Complexity   {assessment.level.value} ({reasons})")
    show(describe_recommendation(rec))
    if ctx.config.hosts:
        show(f"Host         {host}")
    return 0


def optimize_command(args: argparse.Namespace) -> int:
    """`nemo-tui optimize < prompt`: shrink a prompt to a model's context or a token budget."""
    from nemo_tui.core.prompt.data_summary import build_prompt, summarize_data

    ctx = make_context(args)
    data = data_file(args.data)
    if sys.stdin.isatty() and data is None:
        raise UsageError(
            "no prompt on standard input", fix="pipe one in: nemo-tui optimize < prompt.txt"
        )
    text = "" if sys.stdin.isatty() else _read_prompt(sys.stdin.buffer)
    budget = args.budget if args.budget is not None else _budget_for(ctx, args.model, text)
    if budget <= 0:
        raise UsageError(f"a budget of {budget} tokens holds nothing", fix="give --budget above 0")
    question = args.query
    summary = None
    if data is not None:
        limit_mb = ctx.config.preferences.max_data_file_mb
        summary = summarize_data(data, budget // 2, max_file_mb=limit_mb)
    prompt = build_prompt("\n\n".join(p for p in (text.strip(), question) if p), summary)
    result = optimize_prompt(
        prompt, budget, question=question, enabled=ctx.config.optimization.context_truncation
    )
    if args.json:
        print_json(result.to_json())
        return 0
    sys.stdout.write(result.text)
    if not result.text.endswith("\n"):
        sys.stdout.write("\n")
    print(describe_optimization(result, budget), file=sys.stderr)
    return 0


MAX_PROMPT_BYTES = 8 * 1024 * 1024
"""The largest prompt `optimize` reads: about two million tokens, past any model's context; the
optimizer needs several times a prompt's size in memory, so a larger one is refused unread."""


def _read_prompt(stream: BinaryIO) -> str:
    """Standard input as UTF-8 text, at most `MAX_PROMPT_BYTES`.

    Raises:
        UsageError: it is larger, or not UTF-8.
    """
    data = stream.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        raise UsageError(
            f"the prompt on standard input is larger than {MAX_PROMPT_BYTES // 2**20} MB",
            fix="pass the part the model needs, or attach tabular data with --data",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset"
            f" {exc.start:,})",
            fix="convert it first, e.g. iconv -f latin1 -t utf-8 < prompt.txt",
        ) from exc


def estimate_command(args: argparse.Namespace) -> int:
    """`nemo-tui estimate MODEL_OR_GGUF --ctx N`: memory needed at that context."""
    ctx = make_context(args)
    spec = resolve_model_argument(args.model, ctx.catalog)
    num_ctx = args.ctx if args.ctx is not None else spec.default_ctx
    if num_ctx <= 0:
        raise UsageError(f"--ctx {num_ctx} is not a context length", fix="use a positive number")
    result = spec.estimate(num_ctx, kv_type=args.kv_type)
    if args.json:
        print_json({"model": spec.name, **result.to_json()})
        return 0
    if not spec.local:
        show(f"{spec.name} runs in the cloud: it needs no memory on this machine")
        return 0
    # The estimate is for the context the model really gets: servers clamp to its trained window.
    show(
        f"{spec.name} at {format_count(result.num_ctx)} tokens of context, KV cache {args.kv_type}:"
    )
    if result.num_ctx < num_ctx:
        trained = format_count(result.num_ctx)
        print(f"  (asked for {format_count(num_ctx)}; it was trained on {trained})")
    print(f"  weights   {format_mb(result.weights_mb):>10}")
    print(f"  KV cache  {format_mb(result.kv_cache_mb):>10}")
    print(f"  overhead  {format_mb(result.compute_mb + result.overhead_mb):>10}")
    print(f"  total     {format_mb(result.total_mb):>10}")
    return 0


def check_config(args: argparse.Namespace) -> int:
    """`nemo-tui check-config [PATH]`: validate and print the effective config."""
    if args.path is not None and not Path(args.path).expanduser().is_file():
        raise ConfigError(
            "no such file", path=args.path, fix="check the path given to check-config"
        )
    loaded = load_config(args.path or args.config)
    source = str(loaded.path) if loaded.path else "no config file; built-in defaults"
    print(f"# {source}: valid", file=sys.stderr)
    sys.stdout.write(dump_config_yaml(loaded.config))
    return 0


def locate(args: argparse.Namespace) -> int:
    """`nemo-tui locate`: where nemo-tui reads and writes its files."""
    env_file = paths.env_config_file()
    in_use = Path(args.config) if args.config else env_file or paths.default_config_file()
    rows = [
        ("config file", f"{in_use}{'' if in_use.is_file() else '  (not created yet)'}"),
        ("config dir", str(paths.config_dir())),
        ("user themes", str(paths.user_themes_dir())),
        ("bundled themes", str(paths.bundled_themes_dir())),
        ("data dir", str(paths.data_dir())),
        ("cache dir", str(paths.cache_dir())),
        ("llama.cpp logs", str(paths.embedded_log_dir())),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def describe_memory(profile: MemoryProfile, level: PressureLevel) -> str:
    """The memory profile as a few aligned lines."""
    marker = "  [simulated]" if profile.simulated else ""
    lines = [
        f"Memory    {format_mb(profile.available_mb)} available of {format_mb(profile.total_mb)}"
        f" ({profile.percent:.0f}% used){marker}",
        f"Swap      {format_mb(profile.swap_used_mb)} used of {format_mb(profile.swap_total_mb)}",
    ]
    pressure = f"Pressure  {level.value}"
    if profile.psi_some_avg10 is not None:
        pressure += (
            f" (PSI some {profile.psi_some_avg10:.1f}, full {profile.psi_full_avg10 or 0:.1f})"
        )
    lines.append(pressure)
    if profile.cgroup_limit_mb is not None:
        lines.append(
            f"cgroup    limit {format_mb(profile.cgroup_limit_mb)},"
            f" {format_mb(profile.cgroup_used_mb)} in use"
        )
    for gpu in profile.gpus:
        lines.append(
            f"GPU {gpu.index}     {gpu.name}: {format_mb(gpu.free_mb)} free of"
            f" {format_mb(gpu.total_mb)}"
        )
    lines.append(f"Process   {format_mb(profile.process_rss_mb)} resident (nemo-tui itself)")
    return "\n".join(lines)


def describe_recommendation(rec: Recommendation) -> str:
    """A recommendation as a few aligned lines."""
    where = "cloud" if not rec.local else f"{rec.tier.value} tier"
    fits = "yes" if rec.fits else "NO"
    lines = [
        f"Model      {rec.model} ({where}, {rec.backend})",
        f"Why        {rec.reason}",
        f"Settings   num_ctx {format_count(rec.num_ctx)}, num_batch {rec.num_batch}, fits: {fits}",
    ]
    if rec.fallbacks:
        lines.append(f"Fallbacks  {' -> '.join(rec.fallbacks)}")
    if rec.install_hint:
        lines.append(f"Tip        {rec.install_hint}")
    return "\n".join(lines)


def describe_optimization(result: OptimizedPrompt, budget: int) -> str:
    """One line: tokens before and after and how much was cut."""
    if not result.truncated:
        return (
            f"{format_count(result.original_tokens)} tokens, within the budget of"
            f" {format_count(budget)}: unchanged"
        )
    return (
        f"{format_count(result.original_tokens)} -> {format_count(result.optimized_tokens)} tokens,"
        f" {format_pct(result.reduction_pct / 100)} smaller"
        f" ({len(result.cuts)} {'cut' if len(result.cuts) == 1 else 'cuts'})"
    )


def _forced_complexity(ctx: CommandContext) -> Complexity | None:
    setting = ctx.config.preferences.complexity_threshold
    return None if setting == "auto" else Complexity(setting)


def _assess(
    ctx: CommandContext, text: str, *, data_attached: bool, forced: str | None
) -> ComplexityAssessment:
    """Judge the query, unless the command line or the config forces a level."""
    assessment = assess_complexity(text, data_attached=data_attached)
    level = Complexity(forced) if forced else _forced_complexity(ctx)
    if level is None:
        return assessment
    source = "--complexity" if forced else "preferences.complexity_threshold"
    return ComplexityAssessment(level, assessment.score, (f"forced by {source}",))


def _budget_for(ctx: CommandContext, model: str | None, text: str) -> int:
    """The prompt budget of `model` (or of the recommended one) on this machine now."""
    profile = ctx.sampler.sample()
    prompt_tokens = estimate_tokens(text)
    if model is not None:
        spec = resolve_model_argument(model, ctx.catalog)
        num_ctx = planned_context(spec, profile, ctx.config, prompt_tokens)
    else:
        assessment = _assess(ctx, text, data_attached=False, forced=None)
        request = ctx.recommendation_request(assessment.level, prompt_tokens)
        num_ctx = recommend(profile, request, ctx.config).num_ctx
    return max(0, num_ctx - ANSWER_TOKENS)
