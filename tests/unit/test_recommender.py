"""The recommender on 2/4/8/16 GB machines, with installed and loaded models and preferences."""

from __future__ import annotations

import msgspec
import pytest

from nemo_tui.config import Config, Preferences
from nemo_tui.core.memory.profile import MemoryProfile, SimulatedSampler
from nemo_tui.core.models.catalog import Catalog, Tier, build_catalog
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.core.models.recommender import (
    RecommendationRequest,
    ResidentModel,
    batch_for,
    memory_budget_mb,
    planned_context,
    recommend,
)

CONFIG = Config()
CATALOG = build_catalog(CONFIG)
OLLAMA_MODELS = ("tinyllama", "phi3:mini", "biomistral:7b", "gemini-3.5-flash")


def machine(total_gb: float, available_gb: float | None = None) -> MemoryProfile:
    available = None if available_gb is None else available_gb * 1024
    return SimulatedSampler(total_gb * 1024, available).sample()


def pick(
    profile: MemoryProfile,
    complexity: Complexity,
    *,
    config: Config = CONFIG,
    catalog: Catalog = CATALOG,
    installed: tuple[str, ...] | None = None,
    loaded: dict[str, ResidentModel] | None = None,
    prompt_tokens: int | None = None,
):
    request = RecommendationRequest(
        complexity, catalog, installed=installed, loaded=loaded or {}, prompt_tokens=prompt_tokens
    )
    return recommend(profile, request, config)


CLOUD = "gemini-3.5-flash"
WITHOUT_KEY = tuple(name for name in OLLAMA_MODELS if name != CLOUD)
"""What the backends serve when no Gemini key is set: Gemini is left out."""


@pytest.mark.parametrize(
    ("total_gb", "complexity", "with_key", "without_key"),
    [
        (2, Complexity.LOW, "tinyllama", "tinyllama"),
        (2, Complexity.MEDIUM, "tinyllama", "tinyllama"),
        (2, Complexity.HIGH, CLOUD, "tinyllama"),
        (4, Complexity.LOW, "tinyllama", "tinyllama"),
        (4, Complexity.MEDIUM, "tinyllama", "tinyllama"),
        (4, Complexity.HIGH, CLOUD, "tinyllama"),
        (8, Complexity.LOW, "tinyllama", "tinyllama"),
        (8, Complexity.MEDIUM, "phi3:mini", "phi3:mini"),
        (8, Complexity.HIGH, "phi3:mini", "phi3:mini"),
        (16, Complexity.LOW, "tinyllama", "tinyllama"),
        (16, Complexity.MEDIUM, "phi3:mini", "phi3:mini"),
        (16, Complexity.HIGH, "biomistral:7b", "biomistral:7b"),
    ],
)
def test_machine_size_and_complexity_pick_the_tier(
    total_gb: int, complexity: Complexity, with_key: str, without_key: str
) -> None:
    """A local model stands in at most one tier below the query's; further down the cloud
    answers when it can, and otherwise the reason says the answer may be weak."""
    keyed = pick(machine(total_gb), complexity, installed=OLLAMA_MODELS)
    keyless = pick(machine(total_gb), complexity, installed=WITHOUT_KEY)

    assert (keyed.model, keyless.model) == (with_key, without_key)
    assert keyed.fits and keyless.fits
    for rec in (keyed, keyless):
        two_below = rec.local and rec.tier.rank < Tier(complexity.value).rank - 1
        assert two_below == ("may be weak" in rec.reason), rec.reason
        assert not two_below or rec is keyless


def test_a_hard_question_on_a_small_machine_goes_to_the_cloud_not_to_the_smallest_model() -> None:
    installed = ("smollm2:135m", *OLLAMA_MODELS)
    rec = pick(machine(2, 0.8), Complexity.HIGH, installed=installed)

    assert rec.model == CLOUD
    assert "2 tiers below what a high-complexity query needs" in rec.reason
    assert rec.fallbacks and rec.fallbacks[0] in ("tinyllama", "smollm2:135m")


def test_a_cloud_that_is_down_does_not_take_the_hard_question() -> None:
    request = RecommendationRequest(
        Complexity.HIGH, CATALOG, installed=OLLAMA_MODELS, backends_up=("ollama",)
    )
    rec = recommend(machine(2), request, CONFIG)

    assert rec.local
    assert "the answer may be weak" in rec.reason


def test_one_tier_below_stays_local_while_local_is_preferred() -> None:
    rec = pick(machine(8), Complexity.HIGH, installed=OLLAMA_MODELS)
    assert rec.model == "phi3:mini"
    assert "weak" not in rec.reason


def test_reason_names_free_memory_the_ideal_and_the_choice() -> None:
    rec = pick(machine(8), Complexity.HIGH, installed=OLLAMA_MODELS)
    assert "6.0 GB free" in rec.reason
    assert "high complexity" in rec.reason
    assert "using phi3:mini" in rec.reason


def test_high_complexity_that_does_not_fit_degrades_then_falls_back_to_cloud() -> None:
    rec = pick(machine(8), Complexity.HIGH, installed=OLLAMA_MODELS)
    assert rec.fallbacks[-1] == "gemini-3.5-flash"
    assert rec.fallbacks[0] == "tinyllama"


def test_nothing_fits_uses_cloud_when_allowed() -> None:
    rec = pick(machine(1, 0.2), Complexity.LOW, installed=OLLAMA_MODELS)
    assert rec.model == "gemini-3.5-flash"
    assert rec.tier is Tier.CLOUD
    assert not rec.local
    assert "no local model fits" in rec.reason


def test_nothing_fits_without_fallback_says_so() -> None:
    config = msgspec.structs.replace(CONFIG, preferences=Preferences(allow_fallback=False))
    rec = pick(machine(1, 0.2), Complexity.LOW, config=config, installed=OLLAMA_MODELS)
    assert rec.local
    assert not rec.fits
    assert "cloud fallback is off" in rec.reason
    assert "gemini-3.5-flash" not in rec.fallbacks


def test_prefer_local_off_lets_cloud_win_high_complexity_on_small_machine() -> None:
    config = msgspec.structs.replace(CONFIG, preferences=Preferences(prefer_local=False))
    rec = pick(machine(4), Complexity.HIGH, config=config, installed=OLLAMA_MODELS)
    assert rec.model == "gemini-3.5-flash"
    assert "tinyllama" in rec.fallbacks
    # ...but not a query the local tier serves fully.
    assert pick(machine(4), Complexity.LOW, config=config, installed=OLLAMA_MODELS).local


def test_loaded_model_is_preferred_when_it_serves_the_task() -> None:
    loaded = {"biomistral:7b": ResidentModel("biomistral:7b", 4500, 2048)}
    rec = pick(machine(16, 8), Complexity.MEDIUM, installed=OLLAMA_MODELS, loaded=loaded)
    assert rec.model == "biomistral:7b"
    assert "already loaded" in rec.reason
    assert rec.num_ctx == 2048


def test_not_installed_ideal_is_named_with_the_command_to_get_it() -> None:
    rec = pick(machine(16), Complexity.HIGH, installed=("tinyllama", "phi3:mini"))
    assert rec.model == "phi3:mini"
    assert rec.install_hint.startswith("`ollama pull biomistral:7b`")
    assert rec.installed is True


def test_cloud_is_not_offered_when_unavailable() -> None:
    rec = pick(machine(1, 0.2), Complexity.LOW, installed=("tinyllama",))
    assert rec.local and not rec.fits
    assert "no cloud model is configured" in rec.reason


def test_only_the_embedded_model_installed() -> None:
    rec = pick(machine(16), Complexity.HIGH, installed=("smollm2:135m",))
    assert rec.model == "smollm2:135m"
    assert rec.backend == "embedded"


def test_loaded_models_are_evicted_to_make_room() -> None:
    profile = machine(8, 3)
    loaded = {"tinyllama": ResidentModel("tinyllama", 2000, 2048)}
    rec = pick(profile, Complexity.MEDIUM, installed=OLLAMA_MODELS, loaded=loaded)
    assert rec.model in {"phi3:mini", "tinyllama"}
    if rec.model == "phi3:mini":
        assert rec.evict == ("tinyllama",)


def test_budget_stays_under_cache_limit() -> None:
    profile = machine(10, 5)  # 5 GB used; 80% of 10 GB leaves 3 GB
    assert memory_budget_mb(profile, 0.8) == pytest.approx(3 * 1024)
    assert memory_budget_mb(profile, 0.4) == 0.0


def test_long_prompt_gets_a_larger_context_when_memory_allows() -> None:
    rec = pick(machine(16), Complexity.LOW, installed=("smollm2:135m",), prompt_tokens=6000)
    assert rec.num_ctx == 8192
    assert pick(machine(16), Complexity.LOW, installed=("smollm2:135m",)).num_ctx == 2048


def test_context_never_exceeds_the_trained_window() -> None:
    spec = CATALOG.get("phi3:mini")
    assert spec is not None and spec.trained_context == 4096
    assert planned_context(spec, machine(32), CONFIG, prompt_tokens=20000) == 4096


def test_context_is_shrunk_to_the_memory_budget() -> None:
    spec = CATALOG.get("smollm2:135m")
    assert spec is not None
    roomy = planned_context(spec, machine(32), CONFIG, prompt_tokens=7000)
    tight = planned_context(spec, machine(1, 0.45), CONFIG, prompt_tokens=7000)
    assert roomy == 8192
    assert 512 <= tight < roomy
    assert spec.estimate(tight).total_mb <= memory_budget_mb(machine(1, 0.45), 0.8)


def test_batch_optimization_off_uses_the_default_batch() -> None:
    config = msgspec.structs.replace(
        CONFIG, optimization=msgspec.structs.replace(CONFIG.optimization, batch_optimization=False)
    )
    assert (
        pick(machine(16), Complexity.LOW, config=config, installed=OLLAMA_MODELS).num_batch == 512
    )


def gpu_machine(total_gb: float, vram_gb: float) -> MemoryProfile:
    return SimulatedSampler(total_gb * 1024, None, gpu_vram_mb=vram_gb * 1024).sample()


def test_without_a_gpu_the_batch_stops_at_llama_cpps_physical_batch() -> None:
    rec = pick(machine(64), Complexity.HIGH, installed=OLLAMA_MODELS)
    assert rec.model == "biomistral:7b" and rec.num_ctx == 2048
    assert rec.num_batch == 512


def test_with_a_gpu_an_ollama_model_gets_a_larger_batch() -> None:
    rec = pick(gpu_machine(16, 8), Complexity.LOW, installed=OLLAMA_MODELS)
    assert rec.model == "tinyllama" and rec.num_ctx == 2048
    assert rec.num_batch == 2048


def test_the_embedded_model_gets_no_larger_batch_with_a_gpu() -> None:
    # The embedded backend runs on the CPU whatever the machine has.
    spec = CATALOG.get("smollm2:135m")
    assert spec is not None
    assert batch_for(spec, 8192, gpu_machine(16, 8), CONFIG) == 512
    assert batch_for(spec, 256, gpu_machine(16, 8), CONFIG) == 256


def test_json_has_the_documented_keys() -> None:
    data = pick(machine(8), Complexity.LOW, installed=OLLAMA_MODELS).to_json()
    for key in (
        "model",
        "backend",
        "tier",
        "local",
        "reason",
        "num_ctx",
        "num_batch",
        "fits",
        "fallbacks",
    ):
        assert key in data


def test_tip_says_to_start_a_down_backend_rather_than_to_pull() -> None:
    request = RecommendationRequest(
        Complexity.HIGH, CATALOG, installed=("smollm2:135m",), backends_up=("embedded",)
    )
    rec = recommend(machine(16), request, CONFIG)
    assert rec.model == "smollm2:135m"
    assert rec.install_hint.startswith("ollama is down: start it (`ollama serve`)")


def test_when_nothing_fits_the_smallest_installed_model_is_tried() -> None:
    config = msgspec.structs.replace(CONFIG, preferences=Preferences(allow_fallback=False))
    rec = pick(machine(2, 0.1), Complexity.LOW, config=config, installed=("tinyllama",))
    assert not rec.fits
    assert rec.model == "tinyllama"
