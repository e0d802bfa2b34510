"""Pick the model for a query on this machine now, from profile, complexity, settings and catalog.

The rules, in order:

1. The memory budget keeps total usage under `cache_limit` and never exceeds what is available.
   Memory held by models already loaded is part of `used`; a loaded model costs nothing more, and
   other loaded models can be evicted to make room (the reason says so).
2. The complexity picks the tier (low -> smallest, high -> 7B-class); the thresholds cap the tier
   by available memory (below `medium_memory_mb` only the low tier, below `high_memory_mb` at most
   medium).
3. A tier that does not fit degrades to the next smaller local model that does, then to the cloud
   model when `allow_fallback` is on. A local model may stand in one tier below what the query
   asks for; further down, the cloud wins when fallback is allowed and the cloud is usable (its
   backend has a key and answers). Without a usable cloud the best local model answers and the
   reason says the answer may be weak. With `prefer_local` off, the cloud also wins any query
   that no local model of its own tier can serve.
4. A loaded model that serves the tier wins (no load cost); installed beats not installed, and a
   better model that is not installed is named with the command to get it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from nemo_tui.config import Config
from nemo_tui.core.memory.profile import MemoryProfile
from nemo_tui.core.models.catalog import Catalog, MemoryEstimate, ModelSpec, Tier, model_key
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.units import format_count, format_mb

MAX_TIERS_BELOW = 1
"""How many tiers below the query's own a local model may answer while the cloud could."""
MIN_CONTEXT = 512
"""Below this a model cannot hold a useful prompt and answer, so it does not fit."""
CONTEXT_BUCKETS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
"""Contexts are rounded up to these so one model keeps one num_ctx (a change reloads it)."""
DEFAULT_BATCH = 512
"""The backends' own default prompt batch, used when batch optimization is off."""
ANSWER_TOKENS = 512
"""Room reserved in the context for the answer."""

_TIER_FOR_COMPLEXITY = {
    Complexity.LOW: Tier.LOW,
    Complexity.MEDIUM: Tier.MEDIUM,
    Complexity.HIGH: Tier.HIGH,
}


@dataclass(frozen=True)
class ResidentModel:
    """A model that is loaded now, as far as the recommender cares."""

    name: str
    size_mb: float
    """What unloading it would free; 0 when its backend reports no size."""
    context_length: int | None = None


@dataclass(frozen=True)
class Recommendation:
    """The chosen model, why, with what settings, and what to try if it fails."""

    model: str
    backend: str
    tier: Tier
    local: bool
    reason: str
    num_ctx: int
    num_batch: int
    fits: bool
    fallbacks: tuple[str, ...]
    complexity: Complexity
    estimate: MemoryEstimate | None = None
    installed: bool | None = None
    """None when it is not known which models are installed."""
    install_hint: str = ""
    evict: tuple[str, ...] = ()
    """Loaded models that must be unloaded to make room."""
    decision_ms: float = 0.0

    def to_json(self) -> dict[str, object]:
        """The stable JSON keys of `status --json` and `recommend --json`."""
        return {
            "model": self.model,
            "backend": self.backend,
            "tier": self.tier.value,
            "local": self.local,
            "reason": self.reason,
            "num_ctx": self.num_ctx,
            "num_batch": self.num_batch,
            "fits": self.fits,
            "fallbacks": list(self.fallbacks),
            "estimated_mb": round(self.estimate.total_mb, 1) if self.estimate else 0.0,
            "installed": self.installed,
            "install_hint": self.install_hint,
            "evict": list(self.evict),
        }


@dataclass(frozen=True)
class _Candidate:
    spec: ModelSpec
    num_ctx: int
    num_batch: int
    estimate: MemoryEstimate | None
    fits: bool
    evict: tuple[str, ...] = ()
    loaded: bool = False
    installed: bool | None = None


@dataclass(frozen=True)
class RecommendationRequest:
    """Everything the recommender looks at besides the profile and config."""

    complexity: Complexity
    catalog: Catalog
    installed: Collection[str] | None = None
    """Model names the backends can serve; None when unknown (then every model counts)."""
    loaded: Mapping[str, ResidentModel] = field(default_factory=dict)
    prompt_tokens: int | None = None
    """Tokens of the prompt to fit in the context, when known."""
    avoid: Collection[str] = ()
    """Models that recently failed to load for lack of memory: treated as not fitting."""
    backends_up: Collection[str] | None = None
    """Backends answering now; None when unknown. A down one gets a "start it" tip."""
    unusable: Collection[str] = ()
    """Backends known to be unusable without asking them (Gemini without a key)."""


def tier_for(complexity: Complexity) -> Tier:
    """The tier a query of this complexity asks for, before memory caps it."""
    return _TIER_FOR_COMPLEXITY[complexity]


def memory_budget_mb(profile: MemoryProfile, cache_limit: float) -> float:
    """Memory a new model may take now: under `cache_limit` of total and within what is free."""
    under_limit = profile.total_mb * cache_limit - profile.used_mb
    return max(0.0, min(profile.available_mb, under_limit))


def tier_cap(available_mb: float, config: Config) -> Tier:
    """The largest local tier the memory thresholds allow for this much free memory."""
    thresholds = config.memory_thresholds
    if available_mb >= thresholds.high_memory_mb:
        return Tier.HIGH
    if available_mb >= thresholds.medium_memory_mb:
        return Tier.MEDIUM
    return Tier.LOW


def context_for_prompt(prompt_tokens: int | None, spec: ModelSpec) -> int:
    """The bucketed context that holds the prompt plus room for the answer.

    Never above the model's trained window: a server clamps to it anyway, and asking for more
    would make the estimate look larger than what is really allocated.
    """
    wanted = max(spec.default_ctx, (prompt_tokens or 0) + ANSWER_TOKENS)
    ceiling = spec.trained_context or CONTEXT_BUCKETS[-1]
    for bucket in CONTEXT_BUCKETS:
        if bucket >= wanted:
            return min(bucket, ceiling)
    return min(CONTEXT_BUCKETS[-1], ceiling)


def planned_context(
    spec: ModelSpec,
    profile: MemoryProfile,
    config: Config,
    prompt_tokens: int | None = None,
    *,
    evictable_mb: float = 0.0,
) -> int:
    """The context `spec` would run at now: enough for the prompt if memory allows, else less.

    Used when the user picks the model by hand or preloads it; a model that does not fit at all
    keeps its default context (the caller warns that it may not fit).

    Args:
        spec: The model.
        profile: The memory snapshot.
        config: Thresholds and the truncation switch.
        prompt_tokens: The prompt to hold, when known.
        evictable_mb: Memory of idle loaded models that may be unloaded to make room.
    """
    wanted = context_for_prompt(prompt_tokens, spec)
    if not spec.local:
        return wanted
    budget = memory_budget_mb(profile, config.memory_thresholds.cache_limit) + evictable_mb
    fitted = _fit_context(spec, wanted, budget, config)
    return fitted if fitted >= MIN_CONTEXT else min(wanted, spec.default_ctx)


def recommend(
    profile: MemoryProfile, request: RecommendationRequest, config: Config
) -> Recommendation:
    """Choose a model for a query. Pure and fast (well under 1 ms; see bench/).

    Args:
        profile: The memory snapshot to decide on.
        request: Complexity, catalog and what is installed and loaded.
        config: Thresholds, preferences and optimization switches.

    Returns:
        The recommendation, with `fits=False` when nothing fits and no fallback is allowed.
    """
    started = time.perf_counter()
    budget = memory_budget_mb(profile, config.memory_thresholds.cache_limit)
    desired = _TIER_FOR_COMPLEXITY[request.complexity]
    # Loaded models can be unloaded, so their memory counts as available for the tier cap.
    freeable = sum(r.size_mb for r in request.loaded.values())
    cap = tier_cap(profile.available_mb + freeable, config)
    ideal_rank = min(desired.rank, cap.rank)
    candidates = [
        _evaluate(spec, budget, request, config, gpu_present=bool(profile.gpus))
        for spec in request.catalog.local_models()
        if spec.tier.rank <= desired.rank or spec.name in request.loaded
    ]
    # Highest tier first; within a tier a loaded model, then an installed one. In the tier the
    # query asks for the smallest wins (cheapest that serves); in a tier it degraded to, the
    # largest does (the most capable that fits).
    candidates.sort(
        key=lambda c: (
            -c.spec.tier.rank,
            not c.loaded,
            c.installed is False,
            (1 if c.spec.tier == desired else -1) * (c.estimate.total_mb if c.estimate else 0.0),
        )
    )
    usable = [
        c
        for c in candidates
        if c.fits and c.installed is not False and c.spec.tier.rank <= ideal_rank
    ]
    loaded_fit = _loaded_for_task(candidates, desired, request.loaded)
    cloud = _cloud_model(request)
    chosen: _Candidate | None = loaded_fit or (usable[0] if usable else None)
    tiers_below = desired.rank - chosen.spec.tier.rank if chosen is not None else 0
    cloud_usable = cloud is not None and config.preferences.allow_fallback
    if chosen is None or not cloud_usable:
        why_cloud = "no local model fits" if chosen is None else ""
    elif tiers_below > MAX_TIERS_BELOW:
        why_cloud = (
            f"{chosen.spec.name} is {tiers_below} tiers below what a"
            f" {request.complexity.value}-complexity query needs"
        )
    elif tiers_below > 0 and not config.preferences.prefer_local:
        why_cloud = "local is not preferred"
    else:
        why_cloud = ""
    ideal = _ideal(candidates, ideal_rank)
    facts = _facts(profile, request, budget, ideal, cap, desired)
    hint = _install_hint(ideal, chosen, request.backends_up)
    if why_cloud and cloud_usable:
        assert cloud is not None
        chain = tuple(c.spec.name for c in usable) if chosen is not None else ()
        return _build(
            _Candidate(
                cloud,
                context_for_prompt(request.prompt_tokens, cloud),
                DEFAULT_BATCH,
                None,
                True,
            ),
            request,
            f"{facts}; {why_cloud}; using {cloud.name} (cloud)",
            chain,
            hint,
            started,
        )
    if chosen is None:
        # Nothing fits: the smallest model that is there to run (installed) is the best try.
        servable = [c for c in candidates if c.installed is not False] or candidates
        smallest = min(
            servable, key=lambda c: c.estimate.total_mb if c.estimate else 0.0, default=None
        )
        if smallest is None:
            raise ValueError("the catalog has no local model and cloud fallback is off")
        why = "cloud fallback is off" if cloud is not None else "no cloud model is configured"
        return _build(
            smallest,
            request,
            f"{facts}; nothing fits and {why}; {smallest.spec.name} may run out of memory",
            (),
            hint,
            started,
        )
    fallbacks = [
        c.spec.name
        for c in usable
        if c.spec.name != chosen.spec.name and c.spec.tier.rank <= chosen.spec.tier.rank
    ]
    if cloud is not None and config.preferences.allow_fallback:
        fallbacks.append(cloud.name)
    verdict = _verdict(chosen, ideal)
    if tiers_below > MAX_TIERS_BELOW:
        verdict += (
            f"; it is {tiers_below} tiers below what this query needs and no cloud model can"
            " answer: the answer may be weak"
        )
    return _build(chosen, request, f"{facts}; {verdict}", tuple(fallbacks), hint, started)


def _evaluate(
    spec: ModelSpec,
    budget: float,
    request: RecommendationRequest,
    config: Config,
    *,
    gpu_present: bool,
) -> _Candidate:
    """Fit one local model into the budget: context, batch, estimate and evictions."""
    resident = request.loaded.get(spec.name)
    installed = None if request.installed is None else _is_installed(spec.name, request.installed)
    wanted_ctx = context_for_prompt(request.prompt_tokens, spec)
    if resident is not None:
        # Already resident: its memory is in `used`, so it fits; keep its context unless too small.
        ctx = resident.context_length or wanted_ctx
        if ctx < wanted_ctx and config.optimization.context_truncation:
            wanted_ctx = ctx
        estimate = spec.estimate(max(ctx, wanted_ctx))
        return _Candidate(
            spec,
            max(ctx, wanted_ctx),
            _batch(spec, ctx, budget, config, gpu_present=gpu_present),
            estimate,
            spec.name not in request.avoid,
            (),
            True,
            installed if installed is not None else True,
        )
    # Unloading idle models beats running with a cut-down context, so the wanted context is
    # tried with more and more of them evicted (largest first, fewest evictions) before any
    # shrinking; the engine's cache policy then picks the actual victims least recently used.
    others = sorted(request.loaded.values(), key=lambda r: r.size_mb, reverse=True)
    evict: list[str] = []
    room = budget
    need = spec.estimate(wanted_ctx).total_mb
    while need > room and others:
        victim = others.pop(0)
        evict.append(victim.name)
        room += victim.size_mb
    ctx = wanted_ctx if need <= room else _fit_context(spec, wanted_ctx, room, config)
    fits = ctx >= MIN_CONTEXT and spec.name not in request.avoid
    ctx = ctx if fits else wanted_ctx
    estimate = spec.estimate(ctx)
    return _Candidate(
        spec,
        ctx,
        _batch(spec, ctx, room, config, gpu_present=gpu_present),
        estimate,
        fits,
        tuple(evict) if fits else (),
        False,
        installed,
    )


def _fit_context(spec: ModelSpec, wanted_ctx: int, room_mb: float, config: Config) -> int:
    """The context to run at: the wanted one if it fits, else the largest that does (or 0)."""
    if spec.estimate(wanted_ctx).total_mb <= room_mb:
        return wanted_ctx
    largest = spec.max_context(room_mb)
    if not config.optimization.context_truncation and largest < wanted_ctx:
        return 0  # the prompt may not be shortened, so a smaller context is no use
    return largest


def _batch(
    spec: ModelSpec, num_ctx: int, budget: float, config: Config, *, gpu_present: bool
) -> int:
    if not config.optimization.batch_optimization or spec.architecture is None:
        return min(DEFAULT_BATCH, num_ctx)
    from nemo_tui.core.models.catalog import batch_size_for_budget

    # Batches above llama.cpp's physical one only pay off on a GPU, and the embedded backend
    # runs on the CPU (the xllamacpp wheel is a CPU build).
    on_gpu = gpu_present and spec.backend != "embedded"
    return batch_size_for_budget(
        spec.architecture, num_ctx, budget, gpu=on_gpu, flash_attention=spec.flash_attention
    )


def batch_for(spec: ModelSpec, num_ctx: int, profile: MemoryProfile, config: Config) -> int:
    """The prompt batch for `spec` at `num_ctx` under the current memory budget.

    At most 512 unless a GPU is present and the model's backend uses it.
    """
    budget = memory_budget_mb(profile, config.memory_thresholds.cache_limit)
    return _batch(spec, num_ctx, budget, config, gpu_present=bool(profile.gpus))


def _is_installed(name: str, installed: Collection[str]) -> bool:
    if name in installed:
        return True
    base = model_key(name)
    return base in installed or f"{base}:latest" in installed


def _loaded_for_task(
    candidates: list[_Candidate], desired: Tier, loaded: Mapping[str, ResidentModel]
) -> _Candidate | None:
    """The smallest loaded model whose tier serves the task, if any."""
    if not loaded:
        return None
    serving = [c for c in candidates if c.loaded and c.fits and c.spec.tier.rank >= desired.rank]
    return serving[-1] if serving else None


def _cloud_model(request: RecommendationRequest) -> ModelSpec | None:
    """The cloud model, unless it is known to be unavailable (no key, service down, failing)."""
    for spec in request.catalog.cloud_models():
        if request.installed is not None and spec.name not in request.installed:
            continue
        if spec.backend in request.unusable:
            continue
        if request.backends_up is not None and spec.backend not in request.backends_up:
            continue
        return spec
    return None


def _ideal(candidates: list[_Candidate], ideal_rank: int) -> _Candidate | None:
    """The model the task and memory thresholds call for, before asking whether it fits."""
    for candidate in candidates:
        if candidate.spec.tier.rank <= ideal_rank:
            return candidate
    return None


def _facts(
    profile: MemoryProfile,
    request: RecommendationRequest,
    budget: float,
    ideal: _Candidate | None,
    cap: Tier,
    desired: Tier,
) -> str:
    parts = [f"{format_mb(profile.available_mb)} free ({format_mb(budget)} under the cache limit)"]
    text = f"{request.complexity.value} complexity"
    if cap.rank < desired.rank:
        text += f" (memory allows the {cap.value} tier at most)"
    if ideal is not None and ideal.estimate is not None:
        text += (
            f" -> {ideal.spec.name} at {format_count(ideal.num_ctx)} ctx"
            f" needs {format_mb(ideal.estimate.total_mb)}"
        )
    parts.append(text)
    return "; ".join(parts)


def _verdict(chosen: _Candidate, ideal: _Candidate | None) -> str:
    if chosen.loaded:
        return f"using {chosen.spec.name}, already loaded (no load time)"
    if ideal is not None and chosen.spec.name != ideal.spec.name:
        why = "not installed" if ideal.installed is False else "does not fit"
        text = f"{ideal.spec.name} {why}; using {chosen.spec.name}"
    else:
        text = f"using {chosen.spec.name}"
    if chosen.evict:
        text += f" after unloading {', '.join(chosen.evict)}"
    return text


def _install_hint(
    ideal: _Candidate | None, chosen: _Candidate | None, backends_up: Collection[str] | None
) -> str:
    if ideal is None or ideal.installed is not False or not ideal.fits:
        return ""
    if chosen is not None and chosen.spec.name == ideal.spec.name:
        return ""
    backend = ideal.spec.backend
    if backends_up is not None and backend not in backends_up:
        start = "`ollama serve`" if backend == "ollama" else f"the {backend} server"
        return f"{backend} is down: start it ({start}) to use {ideal.spec.name} for this query"
    if backend == "ollama":
        return f"`ollama pull {ideal.spec.name}` would give a better answer for this query"
    return f"install {ideal.spec.name} on the {ideal.spec.backend} backend for a better answer"


def _build(
    candidate: _Candidate,
    request: RecommendationRequest,
    reason: str,
    fallbacks: tuple[str, ...],
    hint: str,
    started: float,
) -> Recommendation:
    spec = candidate.spec
    return Recommendation(
        model=spec.name,
        backend=spec.backend,
        tier=spec.tier,
        local=spec.local,
        reason=reason,
        num_ctx=candidate.num_ctx,
        num_batch=candidate.num_batch,
        fits=candidate.fits,
        fallbacks=fallbacks,
        complexity=request.complexity,
        estimate=candidate.estimate,
        installed=candidate.installed,
        install_hint=hint,
        evict=candidate.evict,
        decision_ms=(time.perf_counter() - started) * 1000,
    )


def recommend_override(
    spec: ModelSpec, profile: MemoryProfile, request: RecommendationRequest, config: Config
) -> Recommendation:
    """The settings for a model the user picked by hand. Never refused, but says if it won't fit.

    Its fallback chain is what the recommender would have picked, so a failing hand-picked model
    still ends in an answer.
    """
    started = time.perf_counter()
    budget = memory_budget_mb(profile, config.memory_thresholds.cache_limit)
    resident = request.loaded.get(spec.name)
    if resident is not None and resident.context_length:
        num_ctx = resident.context_length
    else:
        num_ctx = planned_context(spec, profile, config, request.prompt_tokens)
    estimate = spec.estimate(num_ctx) if spec.local else None
    fits = estimate is None or resident is not None or estimate.total_mb <= budget
    automatic = recommend(profile, request, config)
    chain = tuple(n for n in (automatic.model, *automatic.fallbacks) if n != spec.name)
    if estimate is None:
        reason = f"chosen by hand; {spec.name} runs in the cloud"
    else:
        reason = (
            f"chosen by hand; {spec.name} at {format_count(num_ctx)} ctx needs"
            f" {format_mb(estimate.total_mb)}, {format_mb(budget)} free under the cache limit"
        )
        if resident is not None:
            reason += "; already loaded"
        elif not fits:
            reason += f"; it may not fit (the recommendation is {automatic.model})"
    batch = (
        _batch(spec, num_ctx, budget, config, gpu_present=bool(profile.gpus))
        if spec.local
        else DEFAULT_BATCH
    )
    return Recommendation(
        model=spec.name,
        backend=spec.backend,
        tier=spec.tier,
        local=spec.local,
        reason=reason,
        num_ctx=num_ctx,
        num_batch=batch,
        fits=fits,
        fallbacks=chain,
        complexity=request.complexity,
        estimate=estimate,
        installed=None
        if request.installed is None
        else _is_installed(spec.name, request.installed),
        decision_ms=(time.perf_counter() - started) * 1000,
    )
