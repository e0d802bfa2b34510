"""The model cache: what fits under the cache limit, what is evicted first, and the bookkeeping."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nemo_tui.core.memory.profile import MemoryProfile, PressureLevel, SimulatedSampler
from nemo_tui.core.models.cache_policy import (
    MAX_RESIDENT,
    CachedModel,
    CacheTracker,
    UsageRecord,
    plan_pressure_relief,
    plan_room,
    predictive_choice,
)
from nemo_tui.core.models.catalog import model_key

GB = 1024.0
LIMIT = 0.8


def machine(total_mb: float, used_mb: float) -> MemoryProfile:
    """A simulated machine with `used_mb` in use."""
    return SimulatedSampler(total_mb, total_mb - used_mb).sample()


def model(
    name: str, size_mb: float | None, last_used: float, hits: int = 0, vram_mb: float = 0.0
) -> CachedModel:
    """An Ollama model loaded now."""
    return CachedModel(name, "ollama", size_mb, vram_mb=vram_mb, last_used=last_used, hits=hits)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- CachedModel -----------------------------------------------------------------------------


def test_vram_share_is_the_gpu_part_of_the_model() -> None:
    assert model("a", 4000, 0, vram_mb=1000).vram_share == pytest.approx(0.25)
    assert model("a", 4000, 0).vram_share == 0.0
    assert model("a", 0, 0, vram_mb=10).vram_share is None
    assert model("a", 100, 0, vram_mb=150).vram_share == 1.0
    assert model("a", None, 0).vram_share is None


def test_ram_is_what_is_not_in_vram() -> None:
    assert model("a", 4000, 0, vram_mb=1000).ram_mb == 3000
    assert model("a", 100, 0, vram_mb=150).ram_mb == 0


def test_a_model_of_unknown_size_is_not_counted_on_to_free_memory() -> None:
    assert model("vllm", None, 0).ram_mb == 0


def test_model_key_treats_latest_as_the_bare_name() -> None:
    assert model_key("tinyllama:latest") == model_key("tinyllama") == "tinyllama"
    assert model_key("phi3:mini") == "phi3:mini"


# --- plan_room -------------------------------------------------------------------------------


def test_room_to_spare_evicts_nothing() -> None:
    resident = [model("tinyllama", 1.1 * GB, 100)]
    plan = plan_room(resident, "phi3:mini", 3.8 * GB, machine(8 * GB, 2 * GB), LIMIT)
    assert plan.fits
    assert plan.evict == ()
    assert plan.freed_mb == 0
    assert plan.reason == (
        "phi3:mini needs 3.8 GB; it fits alongside 1 loaded model under the 80% cache limit"
    )


def test_already_loaded_model_fits_without_evicting() -> None:
    resident = [model("tinyllama:latest", 1.1 * GB, 100)]
    # Memory is exhausted, but the model is already there: nothing to load.
    plan = plan_room(resident, "tinyllama", 1.1 * GB, machine(8 * GB, 8 * GB), LIMIT)
    assert plan.fits
    assert plan.evict == ()
    assert "already loaded" in plan.reason


def test_least_recently_used_is_evicted_first_and_only_as_many_as_needed() -> None:
    resident = [model("gemma:2b", 2 * GB, last_used=300), model("tinyllama", 1.5 * GB, 100)]
    # Limit 6553.6 MB; 3891 MB incoming on 4000 MB used needs 1337.6 MB freed: one model.
    plan = plan_room(resident, "phi3:mini", 3.8 * GB, machine(8 * GB, 4000), LIMIT)
    assert plan.fits
    assert [m.name for m in plan.evict] == ["tinyllama"]
    assert plan.freed_mb == 1.5 * GB
    assert plan.reason == (
        "phi3:mini needs 3.8 GB; unloading tinyllama (least recently used, 1.5 GB) "
        "keeps usage under the 80% cache limit"
    )


def test_several_evictions_go_in_lru_order() -> None:
    resident = [
        model("gemma:2b", 2 * GB, last_used=300),
        model("tinyllama", 1 * GB, last_used=100),
        model("qwen:1.8b", 1 * GB, last_used=200),
    ]
    # 6000 used, 4403 incoming: must free 3849.6 MB, so all three go, oldest first.
    plan = plan_room(resident, "biomistral:7b", 4.3 * GB, machine(8 * GB, 6000), LIMIT)
    assert plan.fits
    assert [m.name for m in plan.evict] == ["tinyllama", "qwen:1.8b", "gemma:2b"]
    assert plan.freed_mb == 4 * GB
    assert "unloading tinyllama (least recently used, 1.0 GB), qwen:1.8b (1.0 GB) and " in (
        plan.reason
    )


def test_equal_last_use_evicts_the_one_with_fewer_hits() -> None:
    resident = [model("popular", 1.5 * GB, 100, hits=9), model("rare", 1.5 * GB, 100, hits=1)]
    plan = plan_room(resident, "phi3:mini", 3.8 * GB, machine(8 * GB, 4000), LIMIT)
    assert [m.name for m in plan.evict] == ["rare"]


def test_protected_model_is_never_evicted() -> None:
    resident = [model("tinyllama", 1.5 * GB, 100), model("qwen:1.8b", 1.5 * GB, 200)]
    plan = plan_room(
        resident,
        "phi3:mini",
        3.8 * GB,
        machine(8 * GB, 4000),
        LIMIT,
        protect=["tinyllama:latest"],
    )
    assert [m.name for m in plan.evict] == ["qwen:1.8b"]
    assert "qwen:1.8b (least recently used, 1.5 GB)" in plan.reason


def test_model_that_cannot_fit_evicts_nothing() -> None:
    resident = [model("tinyllama", 1600, 100)]
    # Headroom under the limit is 553.6 MB; unloading tinyllama adds 1600: 2.1 GB at most.
    plan = plan_room(resident, "biomistral:7b", 4.3 * GB, machine(8 * GB, 6000), LIMIT)
    assert not plan.fits
    assert plan.evict == ()
    assert plan.freed_mb == 0
    assert plan.reason == (
        "biomistral:7b needs 4.3 GB but only 2.1 GB can be freed under the 80% cache limit"
    )


def test_cannot_fit_because_of_a_protected_model_says_so() -> None:
    resident = [model("tinyllama", 1600, 100), model("phi3:mini", 3.8 * GB, 200)]
    plan = plan_room(
        resident,
        "biomistral:7b",
        4.3 * GB,
        machine(8 * GB, 6000),
        LIMIT,
        protect=["phi3:mini"],
    )
    assert not plan.fits
    assert plan.evict == ()
    assert plan.reason.endswith("while phi3:mini stays loaded")


def test_unloading_a_model_of_unknown_size_frees_nothing_in_the_plan_and_it_says_so() -> None:
    # 2 GB under the limit is free; unloading the vLLM model might free more, or not.
    resident = [model("qwen-vllm", None, 100)]
    plan = plan_room(resident, "phi3:mini", 3 * GB, machine(10 * GB, 6 * GB), LIMIT)
    assert not plan.fits
    assert plan.evict == ()
    assert plan.reason == (
        "phi3:mini needs 3.0 GB but only 2.0 GB can be freed under the 80% cache limit;"
        " qwen-vllm reports no size, so unloading is not counted on to free any"
    )


def test_a_model_of_unknown_size_evicted_to_keep_max_resident_says_its_size_is_unknown() -> None:
    resident = [model("a", None, 10), model("b", 500, 20), model("c", 500, 30)]
    plan = plan_room(resident, "d", 500, machine(32 * GB, 4 * GB), LIMIT)
    assert [m.name for m in plan.evict] == ["a"]
    assert plan.freed_mb == 0
    assert "a (least recently used, size unknown, counted as 0 MB)" in plan.reason


def test_model_larger_than_the_cache_limit_never_fits() -> None:
    plan = plan_room([], "llama3:70b", 40 * GB, machine(16 * GB, 1 * GB), LIMIT)
    assert not plan.fits
    assert plan.evict == ()


def test_fourth_model_evicts_the_lru_to_keep_max_resident() -> None:
    assert MAX_RESIDENT == 3
    resident = [
        model("a", 500, last_used=300),
        model("b", 500, last_used=100),
        model("c", 500, last_used=200),
    ]
    # Plenty of memory: only the count cap asks for an eviction.
    plan = plan_room(resident, "d", 500, machine(32 * GB, 4 * GB), LIMIT)
    assert plan.fits
    assert [m.name for m in plan.evict] == ["b"]
    assert plan.reason == (
        "d needs 500 MB; unloading b (least recently used, 500 MB) keeps at most 3 models loaded"
    )


def test_count_cap_and_memory_together_name_both_reasons() -> None:
    resident = [model("a", 2 * GB, 300), model("b", 1.2 * GB, 100), model("c", 1.2 * GB, 200)]
    # 2337.6 MB must be freed: b and c together are enough, and the cap wants one gone anyway.
    plan = plan_room(resident, "d", 3.8 * GB, machine(8 * GB, 5000), LIMIT)
    assert [m.name for m in plan.evict] == ["b", "c"]
    assert plan.reason.endswith("keeps usage under the 80% cache limit and at most 3 models loaded")


def test_count_cap_skips_protected_models() -> None:
    resident = [model("a", 500, 300), model("b", 500, 100), model("c", 500, 200)]
    plan = plan_room(resident, "d", 500, machine(32 * GB, 4 * GB), LIMIT, protect=["b"])
    assert [m.name for m in plan.evict] == ["c"]


def test_low_availability_forces_eviction_even_under_the_limit() -> None:
    # Usage is low against the limit, but only 1000 MB can actually be allocated right now.
    profile = replace(machine(8 * GB, 2 * GB), available_mb=1000)
    resident = [model("tinyllama", 1.5 * GB, 100)]
    plan = plan_room(resident, "gemma:2b", 2 * GB, profile, LIMIT)
    assert plan.fits
    assert [m.name for m in plan.evict] == ["tinyllama"]


def test_evicting_a_gpu_model_frees_only_its_ram_part() -> None:
    resident = [model("llama3:8b", 5 * GB, 100, vram_mb=4 * GB), model("qwen", 2 * GB, 200)]
    # Freeing 1337.6 MB: llama3's 1 GB of RAM is not enough, so qwen goes too.
    plan = plan_room(resident, "phi3:mini", 3.8 * GB, machine(8 * GB, 4000), LIMIT)
    assert [m.name for m in plan.evict] == ["llama3:8b", "qwen"]
    assert plan.freed_mb == 3 * GB


# --- plan_pressure_relief --------------------------------------------------------------------


RESIDENT = [
    model("phi3:mini", 3.8 * GB, last_used=300),
    model("tinyllama", 1.1 * GB, last_used=100),
    model("gemma:2b", 2 * GB, last_used=200),
]


def test_normal_pressure_evicts_nothing() -> None:
    assert plan_pressure_relief(RESIDENT, PressureLevel.NORMAL, None) == ()


def test_critical_pressure_keeps_only_the_model_in_use() -> None:
    evict = plan_pressure_relief(RESIDENT, PressureLevel.CRITICAL, "tinyllama:latest")
    assert [m.name for m in evict] == ["gemma:2b", "phi3:mini"]


def test_critical_pressure_with_nothing_in_use_evicts_everything_lru_first() -> None:
    evict = plan_pressure_relief(RESIDENT, PressureLevel.CRITICAL, None)
    assert [m.name for m in evict] == ["tinyllama", "gemma:2b", "phi3:mini"]


def test_elevated_pressure_keeps_the_model_in_use_and_one_other() -> None:
    evict = plan_pressure_relief(RESIDENT, PressureLevel.ELEVATED, "tinyllama")
    # phi3:mini is the most recently used of the others, so it stays.
    assert [m.name for m in evict] == ["gemma:2b"]


def test_elevated_pressure_with_nothing_in_use_keeps_the_most_recent() -> None:
    evict = plan_pressure_relief(RESIDENT, PressureLevel.ELEVATED, None)
    assert [m.name for m in evict] == ["tinyllama", "gemma:2b"]


def test_elevated_pressure_with_few_models_evicts_nothing() -> None:
    assert plan_pressure_relief(RESIDENT[:2], PressureLevel.ELEVATED, "phi3:mini") == ()


# --- CacheTracker ----------------------------------------------------------------------------


def test_tracker_records_loads_uses_and_unloads() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    tracker.record_load("ollama", "tinyllama", 1.1 * GB, context_length=2048)
    clock.now = 1010
    tracker.record_load("embedded", "smollm2", 200)
    clock.now = 1020
    tracker.record_use("ollama", "tinyllama:latest")
    tracker.record_use("ollama", "tinyllama")

    tiny = tracker.get("tinyllama")
    assert tiny is not None
    assert (tiny.hits, tiny.last_used, tiny.loaded_at, tiny.context_length) == (2, 1020, 1000, 2048)
    assert [m.name for m in tracker.resident()] == ["tinyllama", "smollm2"]
    assert tracker.total_mb() == pytest.approx(1.1 * GB + 200)

    tracker.record_unload("ollama", "tinyllama:latest")
    assert tracker.get("tinyllama") is None
    assert [m.name for m in tracker.resident()] == ["smollm2"]


def test_unknown_models_are_ignored_by_use_and_unload() -> None:
    tracker = CacheTracker(FakeClock())
    tracker.record_use("ollama", "ghost")
    tracker.record_unload("ollama", "ghost")
    assert tracker.resident() == []
    assert tracker.total_mb() == 0


def test_same_name_in_another_backend_is_a_different_entry() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    tracker.record_load("ollama", "qwen", 1000)
    clock.now = 2000
    tracker.record_load("openai", "qwen", 900)
    tracker.record_use("ollama", "qwen")
    assert len(tracker.resident()) == 2
    found = tracker.get("qwen:latest")
    assert found is not None
    assert found.backend == "ollama"  # used at 2000 with a hit: the most recent


def test_reload_keeps_the_hit_count() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    tracker.record_load("ollama", "phi3:mini", 3000, context_length=2048)
    tracker.record_use("ollama", "phi3:mini")
    clock.now = 1100
    tracker.record_load("ollama", "phi3:mini", 3500, context_length=8192)
    again = tracker.get("phi3:mini")
    assert again is not None
    assert (again.hits, again.size_mb, again.context_length, again.loaded_at) == (
        1,
        3500,
        8192,
        1100,
    )


def test_sync_keeps_hits_of_models_still_loaded_and_drops_the_rest() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    tracker.record_load("ollama", "tinyllama", 1000)
    tracker.record_load("ollama", "gemma:2b", 2000)
    tracker.record_load("embedded", "smollm2", 200)
    clock.now = 1050
    tracker.record_use("ollama", "tinyllama")
    tracker.record_use("ollama", "tinyllama")
    clock.now = 1100

    reported = [
        CachedModel("tinyllama:latest", "ollama", 1200, vram_mb=600, expires_at=3000),
        CachedModel("mistral:7b", "ollama", 4500),
    ]
    tracker.sync("ollama", reported)

    tiny = tracker.get("tinyllama")
    assert tiny is not None
    assert (tiny.hits, tiny.last_used, tiny.loaded_at) == (2, 1050, 1000)
    # What the backend reports replaces what was known.
    assert (tiny.size_mb, tiny.vram_mb, tiny.expires_at) == (1200, 600, 3000)
    assert tracker.get("gemma:2b") is None
    mistral = tracker.get("mistral:7b")
    assert mistral is not None
    assert (mistral.hits, mistral.loaded_at) == (0, 1100)
    # Another backend's residents are untouched.
    assert tracker.get("smollm2") is not None


def test_sync_with_nothing_empties_that_backend() -> None:
    tracker = CacheTracker(FakeClock())
    tracker.record_load("ollama", "tinyllama", 1000)
    tracker.sync("ollama", [])
    assert tracker.resident() == []


def test_sync_stamps_the_reporting_backend() -> None:
    tracker = CacheTracker(FakeClock())
    tracker.sync("embedded", [CachedModel("smollm2", "", 200, loaded_at=5.0)])
    found = tracker.get("smollm2")
    assert found is not None
    assert (found.backend, found.loaded_at) == ("embedded", 5.0)


def test_a_model_past_its_expiry_is_no_longer_resident() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    tracker.sync(
        "ollama",
        [
            CachedModel("tinyllama", "ollama", 700, expires_at=1300),
            CachedModel("phi3:mini", "ollama", 3000, expires_at=None),
        ],
    )
    assert {m.name for m in tracker.resident()} == {"tinyllama", "phi3:mini"}

    clock.now = 1300
    assert [m.name for m in tracker.resident()] == ["phi3:mini"]
    assert tracker.get("tinyllama") is None
    assert tracker.total_mb() == 3000


def test_a_total_with_a_size_nobody_reported_is_unknown() -> None:
    tracker = CacheTracker(FakeClock())
    tracker.sync(
        "openai",
        [CachedModel("qwen-vllm", "openai", None), CachedModel("tiny", "openai", 700)],
    )
    assert tracker.total_mb() is None
    assert tracker.known_total_mb() == 700


def test_tracker_feeds_plan_room_in_lru_order() -> None:
    clock = FakeClock(1000)
    tracker = CacheTracker(clock)
    for name in ("a", "b", "c"):
        clock.now += 10
        tracker.record_load("ollama", name, 500)
    clock.now += 10
    tracker.record_use("ollama", "a")
    plan = plan_room(tracker.resident(), "d", 500, machine(32 * GB, 4 * GB), LIMIT)
    assert [m.name for m in plan.evict] == ["b"]


# --- predictive_choice -----------------------------------------------------------------------


def usage(*entries: tuple[str, str]) -> list[UsageRecord]:
    return [
        UsageRecord(complexity, name, float(at)) for at, (complexity, name) in enumerate(entries)
    ]


def test_predicts_the_model_most_used_for_that_complexity() -> None:
    history = usage(
        ("low", "tinyllama"),
        ("medium", "phi3:mini"),
        ("low", "qwen"),
        ("low", "tinyllama"),
        ("high", "biomistral:7b"),
    )
    assert predictive_choice(history, "low") == "tinyllama"
    assert predictive_choice(history, "medium") == "phi3:mini"


def test_no_history_for_the_complexity_predicts_nothing() -> None:
    assert predictive_choice([], "low") is None
    assert predictive_choice(usage(("low", "tinyllama")), "high") is None


def test_a_tie_goes_to_the_most_recently_used() -> None:
    history = usage(("low", "qwen"), ("low", "tinyllama"), ("low", "tinyllama"), ("low", "qwen"))
    assert predictive_choice(history, "low") == "qwen"


def test_only_the_window_counts() -> None:
    history = usage(*[("low", "tinyllama")] * 5, *[("low", "qwen")] * 3)
    assert predictive_choice(history, "low", window=20) == "tinyllama"
    assert predictive_choice(history, "low", window=3) == "qwen"


def test_history_order_follows_time_not_position() -> None:
    history = [
        UsageRecord("low", "qwen", at=50.0),
        UsageRecord("low", "tinyllama", at=10.0),
    ]
    assert predictive_choice(history, "low") == "qwen"


def test_latest_tag_counts_as_the_same_model() -> None:
    history = usage(
        ("low", "qwen"), ("low", "qwen"), ("low", "tinyllama"), ("low", "tinyllama:latest")
    )
    history.append(UsageRecord("low", "tinyllama", 10.0))
    assert predictive_choice(history, "low") == "tinyllama"


def test_window_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="window"):
        predictive_choice([], "low", window=0)
