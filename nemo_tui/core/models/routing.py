"""Which host of the lab runs a query: the recommender's answer on each host, weighed.

Each host that is up and whose memory is known gets its own recommendation, made under its own
memory and cache limit from the models it has installed and loaded (the cloud is left out of the
other hosts' answers: it is reached from this machine). Then, in order:

1. this machine, when its recommendation is a local model of the tier the query asks for;
2. another host where the model it would use is already loaded (no load, no eviction);
3. the host with the most memory free under its own cache limit where that model fits;
4. this machine's own answer otherwise: a smaller local model or the cloud, as the recommender
   decided.

On failure the query moves along the route's chain: the same model on the other hosts that can
serve it, then this machine's fallbacks (smaller models, the cloud).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import Recommendation, tier_for
from nemo_tui.units import format_mb

CLOUD_HOST = "cloud"
"""The host a cloud model's answer is reported from."""


@dataclass(frozen=True)
class HostOption:
    """One host's answer to "what would you run this query on?".

    Attributes:
        host: The host's name.
        local: Whether it is this machine.
        recommendation: The recommender's choice under that host's memory and cache limit.
        free_mb: Memory a new model may take there now, under its cache limit.
        loaded: Models loaded there now.
    """

    host: str
    local: bool
    recommendation: Recommendation
    free_mb: float
    loaded: Collection[str] = ()


@dataclass(frozen=True)
class Route:
    """Where a query runs, and where it goes next if that fails.

    Attributes:
        host: The host that runs it (`CLOUD_HOST` for a cloud model).
        recommendation: The model and its settings, with a reason that names the host.
        chain: The (host, model) pairs to try after the first, in order.
    """

    host: str
    recommendation: Recommendation
    chain: tuple[tuple[str, str], ...]


def _serves(option: HostOption, complexity: Complexity) -> bool:
    """A local model of the query's own tier (or better) that fits and is installed there."""
    rec = option.recommendation
    return (
        rec.local
        and rec.fits
        and rec.installed is not False
        and rec.tier.rank >= tier_for(complexity).rank
    )


def route(
    options: Sequence[HostOption], complexity: Complexity, *, other_hosts: int | None = None
) -> Route:
    """Choose the host for a query and the chain to fall back along.

    Args:
        options: The options weighed; exactly one is this machine.
        complexity: The query's complexity.
        other_hosts: How many other hosts there are, weighed or not (those left out had no
            room); default: the other options.

    Returns:
        The route.

    Raises:
        ValueError: no option is this machine.
    """
    local = next((o for o in options if o.local), None)
    if local is None:
        raise ValueError("routing needs this machine's option")
    remotes = [o for o in options if not o.local and _serves(o, complexity)]
    # Loaded first, then the most headroom: the order a failure moves along too.
    remotes.sort(key=lambda o: (o.recommendation.model not in o.loaded, -o.free_mb))
    if _serves(local, complexity) or not remotes:
        chosen = local
        rec = local.recommendation
        others = len(options) - 1 if other_hosts is None else other_hosts
        if remotes or not others:
            reason = rec.reason
        else:
            reason = f"{rec.reason}; no other host has room for it"
    else:
        chosen = remotes[0]
        rec = chosen.recommendation
        loaded = "loaded, " if rec.model in chosen.loaded else ""
        reason = (
            f"{rec.model} on {chosen.host}: {loaded}{format_mb(chosen.free_mb)} free;"
            f" {local.host} has {format_mb(max(0.0, local.free_mb))} free"
        )
    tried = {(chosen.host, rec.model)}
    chain: list[tuple[str, str]] = []

    def add(host: str, model: str) -> None:
        if (host, model) not in tried:
            tried.add((host, model))
            chain.append((host, model))

    for other in remotes:
        add(other.host, other.recommendation.model)
    if _serves(local, complexity):
        add(local.host, local.recommendation.model)
    local_rec = local.recommendation
    for model in (local_rec.model, *local_rec.fallbacks):
        add(local.host, model)
    return Route(
        chosen.host if rec.local else CLOUD_HOST,
        replace(rec, reason=reason),
        tuple(chain),
    )
