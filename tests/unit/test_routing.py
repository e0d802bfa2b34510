"""Routing across hosts: this machine first when it fits, then a host where the model is loaded,
then the host with the most room, then this machine's own answer (a smaller model or the cloud).
Each host's option is the real recommender's answer under that host's memory."""

from __future__ import annotations

import msgspec
import pytest

from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.core.models.catalog import build_catalog
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import (
    RecommendationRequest,
    ResidentModel,
    memory_budget_mb,
    recommend,
)
from nemo_tui.core.models.routing import CLOUD_HOST, HostOption, route

CONFIG = Config()
CATALOG = build_catalog(CONFIG)
OLLAMA = ("tinyllama", "phi3:mini", "biomistral:7b")
REMOTE_CONFIG = msgspec.structs.replace(
    CONFIG, preferences=msgspec.structs.replace(CONFIG.preferences, allow_fallback=False)
)


def option(
    host: str,
    total_gb: float,
    available_gb: float,
    complexity: Complexity,
    *,
    local: bool = False,
    loaded: tuple[str, ...] = (),
    gemini_key: bool = True,
) -> HostOption:
    profile = SimulatedSampler(total_gb * 1024, available_gb * 1024).sample()
    request = RecommendationRequest(
        complexity,
        CATALOG,
        installed=(*OLLAMA, "gemini-3.5-flash") if local else OLLAMA,
        loaded={name: ResidentModel(name, 0.0) for name in loaded},
        unusable=() if local and gemini_key else ("gemini",),
    )
    config = CONFIG if local else REMOTE_CONFIG
    return HostOption(
        host,
        local,
        recommend(profile, request, config),
        memory_budget_mb(profile, CONFIG.memory_thresholds.cache_limit),
        loaded,
    )


def test_this_machine_answers_when_its_model_fits() -> None:
    options = [
        option("local", 16, 12, Complexity.MEDIUM, local=True),
        option("gpu-box", 64, 60, Complexity.MEDIUM),
    ]
    chosen = route(options, Complexity.MEDIUM)
    assert chosen.host == "local"
    assert chosen.recommendation.model == "phi3:mini"
    # A failure moves to the same model on the other host before anything smaller.
    assert chosen.chain[0] == ("gpu-box", "phi3:mini")


def test_a_short_machine_sends_the_query_to_the_host_with_room() -> None:
    options = [
        option("local", 4, 1.2, Complexity.HIGH, local=True),
        option("small-box", 16, 10, Complexity.HIGH),
        option("big-box", 64, 40, Complexity.HIGH),
    ]
    chosen = route(options, Complexity.HIGH)
    assert chosen.host == "big-box"
    assert chosen.recommendation.model == "biomistral:7b"
    assert chosen.recommendation.reason.startswith("biomistral:7b on big-box: ")
    assert "local has " in chosen.recommendation.reason
    assert chosen.chain[0] == ("small-box", "biomistral:7b")


def test_a_host_where_the_model_is_loaded_wins_over_more_room() -> None:
    options = [
        option("local", 4, 1.2, Complexity.HIGH, local=True),
        option("warm-box", 16, 8, Complexity.HIGH, loaded=("biomistral:7b",)),
        option("big-box", 64, 40, Complexity.HIGH),
    ]
    chosen = route(options, Complexity.HIGH)
    assert chosen.host == "warm-box"
    assert ": loaded, " in chosen.recommendation.reason


def test_when_every_host_is_short_this_machines_answer_stands() -> None:
    options = [
        option("local", 4, 1.0, Complexity.HIGH, local=True),
        option("small-box", 4, 1.0, Complexity.HIGH),
    ]
    chosen = route(options, Complexity.HIGH)
    assert chosen.host == CLOUD_HOST
    assert chosen.recommendation.model == "gemini-3.5-flash"
    assert chosen.recommendation.reason.endswith("no other host has room for it")


def test_one_host_alone_routes_exactly_as_the_recommender_decided() -> None:
    alone = option("local", 8, 6, Complexity.LOW, local=True)
    chosen = route([alone], Complexity.LOW)
    assert chosen.recommendation == alone.recommendation
    assert chosen.host == "local"


def test_routing_needs_this_machine() -> None:
    with pytest.raises(ValueError):
        route([option("gpu-box", 64, 60, Complexity.LOW)], Complexity.LOW)
