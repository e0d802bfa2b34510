"""Decide how a query will run before any model is touched: complexity, model, context, prompt.

The dashboard shows this plan before sending ("12,400 -> 1,730 tokens, 86% smaller"); the
pipeline runs the same plan, so the preview and the real run never disagree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from nemo_tui.config import Config
from nemo_tui.core.analysis.prompt import script_prompt
from nemo_tui.core.memory.profile import MemoryProfile
from nemo_tui.core.models.catalog import Catalog, ModelSpec
from nemo_tui.core.models.complexity import Complexity, ComplexityAssessment, assess_complexity
from nemo_tui.core.models.recommender import (
    ANSWER_TOKENS,
    DEFAULT_BATCH,
    Recommendation,
    RecommendationRequest,
    ResidentModel,
    context_for_prompt,
    memory_budget_mb,
    recommend,
    recommend_override,
    tier_for,
)
from nemo_tui.core.models.routing import HostOption, route
from nemo_tui.core.prompt.data_summary import DataSummaries, build_prompt
from nemo_tui.core.prompt.optimizer import OptimizedPrompt, optimize_prompt
from nemo_tui.core.prompt.tokens import estimate_tokens
from nemo_tui.errors import UsageError
from nemo_tui.events import Query
from nemo_tui.hosts.status import HostStatus

DATA_SHARE = 0.5
"""Largest share of the prompt budget an attached data file's summary may take."""
SCRIPT_ANSWER_TOKENS = 1024
"""Room kept for an analysis script: a whole script cut off at the end does not parse."""


@dataclass(frozen=True)
class QueryPlan:
    """How a query will run: the judged complexity, the model and the prompt that fits it."""

    query: Query
    complexity: ComplexityAssessment
    recommendation: Recommendation
    prompt: str
    """The full prompt before optimization (question plus any data summary)."""
    optimized: OptimizedPrompt
    budget_tokens: int
    warning: str = ""
    """Set when a hand-picked model may not fit."""
    host: str | None = None
    """The other host the model runs on; None for this machine (and the cloud)."""
    chain: tuple[tuple[str | None, str], ...] = ()
    """(host, model) pairs to try after the first, in order; host None is this machine."""

    @property
    def override(self) -> bool:
        """True when the user chose the model by hand."""
        return self.query.model is not None


@dataclass(frozen=True)
class RemoteHost:
    """Another host as the planner sees it: its memory and what its servers hold.

    Attributes:
        name: The host's name.
        profile: Its memory, from its node_exporter.
        cache_limit: The share of its memory models may use.
        installed: Models its up servers can serve.
        loaded: Models loaded there now.
        backends_up: Kinds of its servers that answer (`ollama`, `openai`).
    """

    name: str
    profile: MemoryProfile | None
    """None when its memory is not known (no node_exporter): routing then passes it over, and a
    query pinned to it leaves memory to its server."""
    cache_limit: float
    installed: Collection[str] | None = None
    """None when unknown (then every model counts as installed)."""
    loaded: Mapping[str, ResidentModel] = field(default_factory=dict)
    backends_up: Collection[str] | None = None


def remote_hosts_from(statuses: Sequence[HostStatus]) -> dict[str, RemoteHost]:
    """The other hosts that are up, with their memory (when known) and what they hold."""
    remotes: dict[str, RemoteHost] = {}
    for status in statuses:
        if status.local or not status.up or status.memory is None:
            continue
        profile = status.memory.to_profile(status.checked_at)
        loaded = {
            m.name: ResidentModel(m.name, m.size_mb if m.size_mb is not None else 0.0)
            for m in status.models
        }
        remotes[status.name] = RemoteHost(status.name, profile, status.cache_limit, loaded=loaded)
    return remotes


@dataclass(frozen=True)
class PlanningInputs:
    """What the planner looks at besides the query."""

    profile: MemoryProfile
    config: Config
    catalog: Catalog
    installed: Collection[str] | None
    loaded: Mapping[str, ResidentModel]
    data_summaries: DataSummaries
    """Where attached files are summarized, so planning again does not read them again."""
    avoid: Collection[str] = ()
    backends_up: Collection[str] | None = None
    remotes: tuple[RemoteHost, ...] = ()
    """The lab's other hosts whose servers are up."""
    local_host: str = "local"
    """What this machine is called beside them."""


def judge_complexity(query: Query, config: Config) -> ComplexityAssessment:
    """The query's complexity, unless the query or the config forces a level."""
    assessment = assess_complexity(query.text, data_attached=query.data_file is not None)
    forced = query.complexity
    source = "chosen for this query"
    if forced is None and config.preferences.complexity_threshold != "auto":
        forced = Complexity(config.preferences.complexity_threshold)
        source = "forced by preferences.complexity_threshold"
    if forced is None:
        if query.analysis is not None and assessment.level is Complexity.LOW:
            # A script that must run needs more than the smallest model writes well.
            return ComplexityAssessment(
                Complexity.MEDIUM, assessment.score, (*assessment.reasons, "writes analysis code")
            )
        return assessment
    return ComplexityAssessment(forced, assessment.score, (source,))


def answer_tokens(query: Query) -> int:
    """Room kept in the context for the answer."""
    if query.max_tokens:
        return query.max_tokens
    return SCRIPT_ANSWER_TOKENS if query.analysis is not None else ANSWER_TOKENS


def plan_query(query: Query, inputs: PlanningInputs) -> QueryPlan:
    """Plan a query: complexity, recommendation (or the override), and the prompt that fits.

    Raises:
        UsageError: a hand-picked model is not known to the catalog or any backend.
        NemoError: an attached data file cannot be read.
    """
    complexity = judge_complexity(query, inputs.config)
    question_tokens = estimate_tokens(query.text)
    request = RecommendationRequest(
        complexity.level,
        inputs.catalog,
        installed=inputs.installed,
        loaded=inputs.loaded,
        prompt_tokens=question_tokens,
        avoid=inputs.avoid,
        backends_up=inputs.backends_up,
    )
    host = _pinned_host(query, inputs)
    if host is None and query.model is not None and query.host is None:
        host = _host_serving(_known(query.model, inputs.catalog), inputs)
    chain: tuple[tuple[str | None, str], ...] = ()
    if host is not None and host.profile is None:
        rec = _on_unknown_memory(host, request, query.model)
    elif host is not None:
        assert host.profile is not None
        on_host = _request_on(host, request)
        config_on_host = _config_on(host, inputs.config)
        if query.model is not None:
            spec = _known(query.model, inputs.catalog)
            rec = recommend_override(spec, host.profile, on_host, config_on_host)
        else:
            rec = recommend(host.profile, on_host, config_on_host)
            chain = tuple((host.name, model) for model in rec.fallbacks)
    elif query.model is not None:
        spec = _known(query.model, inputs.catalog)
        rec = recommend_override(spec, inputs.profile, request, inputs.config)
    else:
        rec, host, chain = route_query(
            request, inputs.profile, inputs.config, inputs.remotes, local_host=inputs.local_host
        )
    warning = ""
    if query.model is not None and not rec.fits:
        warning = f"{rec.model} may not fit in memory now: {rec.reason}"
    prompt, optimized, budget = fit_prompt(query, rec.num_ctx, inputs.config, inputs.data_summaries)
    return QueryPlan(
        query,
        complexity,
        rec,
        prompt,
        optimized,
        budget,
        warning,
        host.name if host is not None and rec.local else None,
        chain if chain or host is not None else tuple((None, m) for m in rec.fallbacks),
    )


def _pinned_host(query: Query, inputs: PlanningInputs) -> RemoteHost | None:
    """The other host the user pinned the query to, or None for this machine or no pin.

    Raises:
        UsageError: the pinned host is unknown, down, or its memory cannot be read.
    """
    if query.host is None or query.host == inputs.local_host:
        return None
    host = next((h for h in inputs.remotes if h.name == query.host), None)
    if host is None:
        known = ", ".join([inputs.local_host, *(h.name for h in inputs.remotes)])
        raise UsageError(
            f"host '{query.host}' is not up, or none of its model servers answers",
            fix=f"choose one of: {known}; `nemo-tui hosts` shows why a host is missing",
        )
    return host


def _host_serving(spec: ModelSpec, inputs: PlanningInputs) -> RemoteHost | None:
    """Another host for a model chosen by hand that this machine does not have: one where it
    is loaded, else the one with the most room of those that have it installed."""
    if not spec.local or inputs.installed is None or spec.name in inputs.installed:
        return None
    loaded = [h for h in inputs.remotes if spec.name in h.loaded]
    if loaded:
        return loaded[0]
    having = [h for h in inputs.remotes if h.installed is not None and spec.name in h.installed]
    having.sort(
        key=lambda h: memory_budget_mb(h.profile, h.cache_limit) if h.profile else -1.0,
        reverse=True,
    )
    return having[0] if having else None


def _on_unknown_memory(
    host: RemoteHost, request: RecommendationRequest, model: str | None
) -> Recommendation:
    """A query pinned to a host whose memory nemo-tui cannot read (a gateway, a server without a
    node_exporter beside it): the model chosen by hand, else the one loaded there, else the
    smallest installed one of the query's tier; whether it fits is the server's call.

    Raises:
        UsageError: no model was named and none can be chosen there.
    """
    catalog = request.catalog
    if model is not None:
        spec = _known(model, catalog)
    else:
        wanted = tier_for(request.complexity).rank
        served = [
            s
            for s in catalog.local_models()
            if s.name in host.loaded or (host.installed is not None and s.name in host.installed)
        ]
        served.sort(key=lambda s: (s.name not in host.loaded, s.tier.rank < wanted, s.tier.rank))
        if not served:
            raise UsageError(
                f"{host.name} reports no model nemo-tui knows", fix="name one with --model"
            )
        spec = served[0]
    num_ctx = context_for_prompt(request.prompt_tokens, spec)
    return Recommendation(
        model=spec.name,
        backend=spec.backend,
        tier=spec.tier,
        local=True,
        reason=(
            f"{spec.name} on {host.name}, chosen by hand; its memory cannot be read here (no"
            " node_exporter), so its server decides whether the model fits"
        ),
        num_ctx=num_ctx,
        num_batch=min(num_ctx, DEFAULT_BATCH),
        fits=True,
        fallbacks=(),
        complexity=request.complexity,
        installed=None if host.installed is None else spec.name in host.installed,
    )


def _request_on(host: RemoteHost, request: RecommendationRequest) -> RecommendationRequest:
    """The request as another host sees it: its installed and loaded models, no cloud."""
    return RecommendationRequest(
        request.complexity,
        request.catalog,
        installed=host.installed,
        loaded=host.loaded,
        prompt_tokens=request.prompt_tokens,
        avoid=request.avoid,
        backends_up=host.backends_up,
        unusable=tuple(spec.backend for spec in request.catalog.cloud_models()),
    )


def _config_on(host: RemoteHost, config: Config) -> Config:
    """The settings for planning on another host: its cache limit; the cloud is this machine's
    to fall back on, not the other host's."""
    return msgspec.structs.replace(
        config,
        memory_thresholds=msgspec.structs.replace(
            config.memory_thresholds, cache_limit=host.cache_limit
        ),
        preferences=msgspec.structs.replace(config.preferences, allow_fallback=False),
    )


MAX_ROUTED_HOSTS = 3
"""How many other hosts a decision weighs fully: the likeliest by the rules' order. With tens of
hosts a decision stays under a millisecond, and a failure rarely needs more than three others."""


def _likely_hosts(
    request: RecommendationRequest, remotes: Sequence[RemoteHost]
) -> list[RemoteHost]:
    """The other hosts worth a recommendation: those where a model of the query's tier is loaded
    or the smallest one fits, loaded first, then the most memory free; at most
    `MAX_ROUTED_HOSTS`."""
    wanted = tier_for(request.complexity).rank
    tier_models = [s for s in request.catalog.local_models() if s.tier.rank >= wanted]
    smallest = min((s.estimate().total_mb for s in tier_models), default=None)
    names = {s.name for s in tier_models}
    scored = []
    for host in remotes:
        if host.profile is None:
            continue
        loaded = any(name in names for name in host.loaded)
        free = memory_budget_mb(host.profile, host.cache_limit)
        if loaded or (smallest is not None and free >= smallest):
            scored.append((not loaded, -free, host))
    scored.sort(key=lambda entry: entry[:2])
    return [host for _, _, host in scored[:MAX_ROUTED_HOSTS]]


def route_query(
    request: RecommendationRequest,
    profile: MemoryProfile,
    config: Config,
    remotes: Sequence[RemoteHost],
    *,
    local_host: str,
) -> tuple[Recommendation, RemoteHost | None, tuple[tuple[str | None, str], ...]]:
    """This machine's recommendation, or another host's when routing prefers it.

    Args:
        request: The query's complexity, and what this machine has installed and loaded.
        profile: This machine's memory.
        config: The settings.
        remotes: The other hosts routing may use.
        local_host: This machine's name.

    Returns:
        The recommendation, the other host it runs on (None for this machine or the cloud), and
        the (host, model) pairs to fall back along (host None is this machine).
    """
    local = recommend(profile, request, config)
    if not remotes:
        return local, None, tuple((None, m) for m in local.fallbacks)
    options = [
        HostOption(
            local_host,
            True,
            local,
            memory_budget_mb(profile, config.memory_thresholds.cache_limit),
            tuple(request.loaded),
        )
    ]
    for host in _likely_hosts(request, remotes):
        assert host.profile is not None  # hosts of unknown memory are not likely
        options.append(
            HostOption(
                host.name,
                False,
                recommend(host.profile, _request_on(host, request), _config_on(host, config)),
                memory_budget_mb(host.profile, host.cache_limit),
                tuple(host.loaded),
            )
        )
    chosen = route(options, request.complexity, other_hosts=len(remotes))
    remote = next((h for h in remotes if h.name == chosen.host), None)
    chain = tuple((None if host == local_host else host, model) for host, model in chosen.chain)
    return chosen.recommendation, remote, chain


def fit_prompt(
    query: Query, num_ctx: int, config: Config, data_summaries: DataSummaries
) -> tuple[str, OptimizedPrompt, int]:
    """Build the prompt for a context size and shrink it to fit.

    Args:
        query: The query, with its attached data file if any.
        num_ctx: The model's context size.
        config: The settings (prompt truncation, the data file size limit).
        data_summaries: Summarizes the attached file, reading it only when it changed.

    Returns:
        The full prompt, the optimized one, and the token budget it was fitted to.

    Raises:
        NemoError: the attached data file cannot be summarized.
    """
    budget = max(1, num_ctx - answer_tokens(query))
    summary = None
    if query.data_file is not None:
        summary = data_summaries.summarize(
            query.data_file,
            max(64, int(budget * DATA_SHARE)),
            max_file_mb=config.preferences.max_data_file_mb,
        )
    if query.analysis is not None:
        prompt = script_prompt(query.text, summary, query.analysis)
    else:
        prompt = build_prompt(query.text, summary)
    optimized = optimize_prompt(
        prompt, budget, question=query.text, enabled=config.optimization.context_truncation
    )
    return prompt, optimized, budget


def _known(name: str, catalog: Catalog) -> ModelSpec:
    spec = catalog.get(name)
    if spec is None:
        raise UsageError(
            f"unknown model '{name}'",
            fix=f"choose one of: {', '.join(catalog.names())}",
        )
    return spec
