"""Engine events as JSON objects, one per line for `ask --json` (keys are a stable interface)."""

from __future__ import annotations

from nemo_tui.events import (
    BackendsChanged,
    Cancelled,
    Done,
    EngineEvent,
    Evicting,
    Failed,
    Fallback,
    HostsChanged,
    Loading,
    Notice,
    PressureChanged,
    PromptOptimized,
    Queued,
    Recommended,
    Token,
)


def event_json(event: EngineEvent) -> dict[str, object]:
    """One event as a JSON-ready dict with an `event` key naming its type."""
    base: dict[str, object] = {"event": type(event).__name__.lower(), "query_id": event.query_id}
    if isinstance(event, Queued):
        base["position"] = event.position
    elif isinstance(event, Recommended):
        base.update(event.recommendation.to_json())
        base["complexity"] = event.complexity.level.value
        base["complexity_reasons"] = list(event.complexity.reasons)
        base["override"] = event.override
        base["warning"] = event.warning
        base["host"] = event.host
    elif isinstance(event, PromptOptimized):
        data = event.result.to_json()
        data.pop("optimized_prompt", None)
        base.update(data)
        base["model"] = event.model
        base["budget_tokens"] = event.budget_tokens
    elif isinstance(event, Loading):
        base.update(model=event.model, backend=event.backend)
    elif isinstance(event, Evicting):
        base.update(
            model=event.model, backend=event.backend, reason=event.reason, freed_mb=event.freed_mb
        )
    elif isinstance(event, Token):
        base["text"] = event.text
    elif isinstance(event, Notice):
        base.update(message=event.message, warning=event.warning)
    elif isinstance(event, Fallback):
        base.update(
            from_model=event.from_model,
            to_model=event.to_model,
            why=event.why,
            to_host=event.to_host,
        )
    elif isinstance(event, Done):
        base.update(
            model=event.model,
            backend=event.backend,
            tokens_in=event.tokens_in,
            tokens_out=event.tokens_out,
            tokens_per_s=event.tokens_per_s,
            load_s=event.load_s,
            first_token_s=event.first_token_s,
            total_s=event.total_s,
            cache_hit=event.cache_hit,
            local=event.local,
            reduction_pct=round(event.reduction_pct, 1),
            fallbacks=list(event.fallbacks),
            host=event.host,
        )
    elif isinstance(event, Failed):
        base.update(
            error=event.error.title,
            message=event.error.message,
            fix=event.error.fix,
            partial_text=event.partial_text,
            model=event.model,
        )
    elif isinstance(event, Cancelled):
        base.update(partial_text=event.partial_text, model=event.model)
    elif isinstance(event, PressureChanged):
        base.update(
            previous=event.change.previous.value,
            current=event.change.current.value,
            action=event.action,
        )
    elif isinstance(event, BackendsChanged):
        base["backends"] = {h.backend: h.up for h in event.healths}
    elif isinstance(event, HostsChanged):
        base["hosts"] = [status.to_json() for status in event.statuses]
    return base
