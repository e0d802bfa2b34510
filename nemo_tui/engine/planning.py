"""Decide how a query will run before any model is touched: complexity, model, context, prompt.

The dashboard shows this plan before sending ("12,400 -> 1,730 tokens, 86% smaller"); the
pipeline runs the same plan, so the preview and the real run never disagree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from nemo_tui.config import Config
from nemo_tui.core.analysis.prompt import script_prompt
from nemo_tui.core.memory.profile import MemoryProfile
from nemo_tui.core.models.catalog import Catalog, ModelSpec
from nemo_tui.core.models.complexity import Complexity, ComplexityAssessment, assess_complexity
from nemo_tui.core.models.recommender import (
    ANSWER_TOKENS,
    Recommendation,
    RecommendationRequest,
    ResidentModel,
    recommend,
    recommend_override,
)
from nemo_tui.core.prompt.data_summary import DataSummaries, build_prompt
from nemo_tui.core.prompt.optimizer import OptimizedPrompt, optimize_prompt
from nemo_tui.core.prompt.tokens import estimate_tokens
from nemo_tui.errors import UsageError
from nemo_tui.events import Query

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

    @property
    def override(self) -> bool:
        """True when the user chose the model by hand."""
        return self.query.model is not None


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
    if query.model is not None:
        spec = _known(query.model, inputs.catalog)
        rec = recommend_override(spec, inputs.profile, request, inputs.config)
        warning = "" if rec.fits else f"{spec.name} may not fit in memory now: {rec.reason}"
    else:
        rec = recommend(inputs.profile, request, inputs.config)
        warning = ""
    prompt, optimized, budget = fit_prompt(query, rec.num_ctx, inputs.config, inputs.data_summaries)
    return QueryPlan(query, complexity, rec, prompt, optimized, budget, warning)


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
