"""The troubleshooting guide, applied to live figures: which known problem shows, and what helps.

The four symptoms and their remedies come from the original design's guide (high memory
usage, frequent cloud fallbacks, model loading failures, performance degradation). `diagnose`
checks each against the memory snapshot and the query metrics, using the thresholds below,
and names the numbers that triggered it. Remedies for a setting that is already on are left
out, and each symptom offers at most one action the dashboard can apply with a key.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from nemo_tui.units import format_mb, format_pct, format_rate, format_seconds

if TYPE_CHECKING:
    from nemo_tui.config import Config
    from nemo_tui.core.memory.profile import MemoryProfile
    from nemo_tui.core.reports.metrics import Metrics

HIGH_MEMORY_USAGE = 0.90
"""Memory usage share above which memory use is called high."""
CLOUD_WINDOW = 20
"""How many of the latest queries the cloud share is judged over."""
CLOUD_MIN_QUERIES = 5
"""Queries needed in that window before fallbacks can be called frequent."""
CLOUD_SHARE = 0.5
"""Cloud share at or above which fallbacks are frequent (while local models are installed)."""
LOAD_FAILURE_WINDOW = 10
"""How many of the latest queries load failures are counted over."""
LOAD_FAILURE_COUNT = 2
"""Load failures in that window that make a symptom."""
SLOW_WINDOW = 10
"""How many of the latest successful local queries speed is judged over."""
SLOW_MIN_QUERIES = 3
"""Measurements needed in that window before responses can be called slow."""
SLOW_TOKENS_PER_S = 5.0
"""Median generation speed below which responses are slow."""
SLOW_FIRST_TOKEN_S = 10.0
"""Median first-token latency above which responses are slow."""


class Action(StrEnum):
    """A fix the dashboard can apply with one key."""

    CLEAR_CACHE = "clear_cache"
    ENABLE_TRUNCATION = "enable_truncation"
    LIGHTER_MODEL = "lighter_model"
    ENABLE_BATCH_OPTIMIZATION = "enable_batch_optimization"
    ENABLE_MEMORY_MAPPING = "enable_memory_mapping"
    ENABLE_GARBAGE_COLLECTION = "enable_garbage_collection"


@dataclass(frozen=True)
class Symptom:
    """A known problem that shows in the current figures.

    Attributes:
        key: Stable identifier: `high_memory`, `cloud_fallbacks`, `load_failures` or
            `slow_responses`.
        title: The guide's name for it.
        evidence: The numbers that triggered it, in plain words.
        remedies: What the user can do, most effective first; settings already on are left out.
        action: The one-key fix that applies given the current settings, or None.
    """

    key: str
    title: str
    evidence: str
    remedies: tuple[str, ...]
    action: Action | None


def diagnose(
    profile: MemoryProfile,
    metrics: Metrics,
    config: Config,
    *,
    cached_mb: float = 0.0,
    local_models_installed: int = 0,
) -> list[Symptom]:
    """Check the guide's four symptoms against the current figures.

    - High memory usage: usage share above `HIGH_MEMORY_USAGE`.
    - Frequent cloud fallbacks: at least `CLOUD_MIN_QUERIES` of the last `CLOUD_WINDOW`
      queries, a cloud share of at least `CLOUD_SHARE`, local models installed and
      `prefer_local` on (with it off, the cloud is the user's choice).
    - Model loading failures: `LOAD_FAILURE_COUNT` or more in the last `LOAD_FAILURE_WINDOW`
      queries.
    - Performance degradation: over the last `SLOW_WINDOW` successful local queries, a median
      speed below `SLOW_TOKENS_PER_S` or a median first-token latency above
      `SLOW_FIRST_TOKEN_S`, each judged only with `SLOW_MIN_QUERIES` measurements or more.

    Args:
        profile: The current memory snapshot.
        metrics: The query history.
        config: The current settings, which decide the remedies and actions offered.
        cached_mb: Memory held by loaded models.
        local_models_installed: How many local models are installed.

    Returns:
        The symptoms that show, in the guide's order; empty when all is well.
    """
    found = [
        _high_memory(profile, config, cached_mb),
        _cloud_fallbacks(metrics, config, local_models_installed),
        _load_failures(metrics, cached_mb),
        _slow_responses(metrics, config),
    ]
    return [symptom for symptom in found if symptom is not None]


def _high_memory(profile: MemoryProfile, config: Config, cached_mb: float) -> Symptom | None:
    usage = profile.usage_fraction
    if usage <= HIGH_MEMORY_USAGE:
        return None
    opt = config.optimization
    evidence = (
        f"memory is {format_pct(usage)} used ({format_mb(profile.used_mb)} of "
        f"{format_mb(profile.total_mb)}), above {format_pct(HIGH_MEMORY_USAGE)}"
    )
    if cached_mb > 0:
        evidence += f"; loaded models hold {format_mb(cached_mb)}"
    remedies: list[str] = []
    if not opt.enable_garbage_collection:
        remedies.append("Turn on garbage collection (optimization.enable_garbage_collection)")
    if cached_mb > 0:
        remedies.append("Clear the model cache to unload the models not in use")
    remedies.append("Lower the model cache size (memory_thresholds.cache_limit)")
    if not opt.context_truncation:
        remedies.append("Turn on context truncation (optimization.context_truncation)")
    remedies.append("Switch to a cloud model")
    action = _first_action(
        (cached_mb > 0, Action.CLEAR_CACHE),
        (not opt.enable_garbage_collection, Action.ENABLE_GARBAGE_COLLECTION),
        (not opt.context_truncation, Action.ENABLE_TRUNCATION),
        (True, Action.LIGHTER_MODEL),
    )
    return Symptom("high_memory", "High memory usage", evidence, tuple(remedies), action)


def _cloud_fallbacks(metrics: Metrics, config: Config, installed: int) -> Symptom | None:
    window = metrics.recent(CLOUD_WINDOW)
    if installed <= 0 or not config.preferences.prefer_local or len(window) < CLOUD_MIN_QUERIES:
        return None
    cloud = sum(1 for record in window if not record.local)
    if cloud / len(window) < CLOUD_SHARE:
        return None
    models = "model is" if installed == 1 else "models are"
    evidence = (
        f"{cloud} of the last {len(window)} queries went to the cloud "
        f"although {installed} local {models} installed"
    )
    remedies = (
        "Check how much memory is free: close programs you do not need",
        "Verify the local models are installed and the backend is running",
        "Adjust the memory thresholds (memory_thresholds.*) to match this machine",
        "Use a lighter local model",
    )
    return Symptom(
        "cloud_fallbacks", "Frequent cloud fallbacks", evidence, remedies, Action.LIGHTER_MODEL
    )


def _load_failures(metrics: Metrics, cached_mb: float) -> Symptom | None:
    window = metrics.recent(LOAD_FAILURE_WINDOW)
    failures = sum(1 for record in window if record.load_failed)
    if failures < LOAD_FAILURE_COUNT:
        return None
    evidence = f"{failures} of the last {len(window)} queries hit a model that failed to load"
    remedies = (
        "Clear the model cache",
        "Restart the Ollama service",
        "Check there is free disk space",
        "Verify the model files are intact (pull the model again)",
    )
    action = Action.CLEAR_CACHE if cached_mb > 0 else None
    return Symptom("load_failures", "Model loading failures", evidence, remedies, action)


def _slow_responses(metrics: Metrics, config: Config) -> Symptom | None:
    local = [r for r in metrics.recent(metrics.capacity) if r.local and not r.failed]
    window = local[-SLOW_WINDOW:]
    findings: list[str] = []
    speed = _median([r.tokens_per_s for r in window])
    if speed is not None and speed < SLOW_TOKENS_PER_S:
        findings.append(
            f"a median of {format_rate(speed)} (below {format_rate(SLOW_TOKENS_PER_S)})"
        )
    first = _median([r.first_token_s for r in window])
    if first is not None and first > SLOW_FIRST_TOKEN_S:
        findings.append(
            f"a median of {format_seconds(first)} to the first token "
            f"(above {format_seconds(SLOW_FIRST_TOKEN_S)})"
        )
    if not findings:
        return None
    evidence = f"the last {len(window)} local answers took " + " and ".join(findings)
    opt = config.optimization
    remedies: list[str] = []
    if not opt.batch_optimization:
        remedies.append("Turn on batch optimization (optimization.batch_optimization)")
    if not opt.use_memory_mapping:
        remedies.append("Turn on memory mapping (optimization.use_memory_mapping)")
    if not opt.context_truncation:
        remedies.append("Turn on context truncation to keep the context short")
    remedies += ["Use a shorter context or a lighter model", "Close busy background programs"]
    action = _first_action(
        (not opt.batch_optimization, Action.ENABLE_BATCH_OPTIMIZATION),
        (not opt.use_memory_mapping, Action.ENABLE_MEMORY_MAPPING),
        (not opt.context_truncation, Action.ENABLE_TRUNCATION),
        (True, Action.LIGHTER_MODEL),
    )
    return Symptom("slow_responses", "Performance degradation", evidence, tuple(remedies), action)


def _median(values: list[float | None]) -> float | None:
    """The median of the known values, or None with fewer than `SLOW_MIN_QUERIES` of them."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if len(known) >= SLOW_MIN_QUERIES else None


def _first_action(*choices: tuple[bool, Action]) -> Action | None:
    """The first action whose condition holds."""
    return next((action for applies, action in choices if applies), None)
