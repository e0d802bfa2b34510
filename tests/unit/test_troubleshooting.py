"""The troubleshooting guide: each symptom shows when its figures do, with the right action."""

from __future__ import annotations

from nemo_tui.config import Config, Optimization, Preferences
from nemo_tui.core.memory.profile import MemoryProfile, SimulatedSampler
from nemo_tui.core.reports.metrics import Metrics, QueryRecord
from nemo_tui.core.reports.troubleshooting import Action, Symptom, diagnose
from tests.fakes.query_records import query_record as q

GB = 1024.0
CALM = SimulatedSampler(8 * GB, 4 * GB).sample()
FULL = SimulatedSampler(8 * GB, 0.5 * GB).sample()  # 93.75 % used


def history(*records: QueryRecord) -> Metrics:
    metrics = Metrics()
    for record in records:
        metrics.record(record)
    return metrics


def config(**switches: bool) -> Config:
    return Config(optimization=Optimization(**switches))


def only(symptoms: list[Symptom], key: str) -> Symptom:
    matching = [s for s in symptoms if s.key == key]
    assert len(matching) == 1, [s.key for s in symptoms]
    return matching[0]


def test_a_healthy_machine_has_no_symptoms() -> None:
    metrics = history(*[q() for _ in range(10)])
    assert diagnose(CALM, metrics, Config(), cached_mb=2 * GB, local_models_installed=3) == []


def test_no_queries_yet_has_no_symptoms() -> None:
    assert diagnose(CALM, Metrics(), Config(), local_models_installed=3) == []


# --- high memory -----------------------------------------------------------------------------


def test_high_memory_shows_above_ninety_percent() -> None:
    symptom = only(diagnose(FULL, Metrics(), Config(), cached_mb=3 * GB), "high_memory")
    assert symptom.title == "High memory usage"
    assert symptom.evidence == (
        "memory is 94% used (7.5 GB of 8.0 GB), above 90%; loaded models hold 3.0 GB"
    )
    assert symptom.action is Action.CLEAR_CACHE


def test_memory_at_exactly_ninety_percent_is_not_high() -> None:
    at_limit: MemoryProfile = SimulatedSampler(10 * GB, 1 * GB).sample()
    assert diagnose(at_limit, Metrics(), Config()) == []


def test_high_memory_without_cached_models_offers_the_settings_that_are_off() -> None:
    no_gc = only(diagnose(FULL, Metrics(), config(enable_garbage_collection=False)), "high_memory")
    assert no_gc.action is Action.ENABLE_GARBAGE_COLLECTION
    assert any("garbage collection" in r for r in no_gc.remedies)

    no_trunc = only(diagnose(FULL, Metrics(), config(context_truncation=False)), "high_memory")
    assert no_trunc.action is Action.ENABLE_TRUNCATION
    assert any("context truncation" in r for r in no_trunc.remedies)


def test_high_memory_with_everything_on_suggests_a_lighter_model() -> None:
    symptom = only(diagnose(FULL, Metrics(), Config()), "high_memory")
    assert symptom.action is Action.LIGHTER_MODEL
    # Settings already on are not suggested again.
    assert not any("garbage collection" in r or "truncation" in r for r in symptom.remedies)
    assert "Switch to a cloud model" in symptom.remedies


def test_clearing_the_cache_comes_first_when_models_are_cached() -> None:
    symptoms = diagnose(FULL, Metrics(), config(context_truncation=False), cached_mb=GB)
    assert only(symptoms, "high_memory").action is Action.CLEAR_CACHE


# --- cloud fallbacks -------------------------------------------------------------------------


def test_frequent_cloud_use_with_local_models_installed_shows() -> None:
    metrics = history(*[q(local=False)] * 3, *[q()] * 2)
    symptom = only(diagnose(CALM, metrics, Config(), local_models_installed=2), "cloud_fallbacks")
    assert symptom.title == "Frequent cloud fallbacks"
    assert symptom.evidence == (
        "3 of the last 5 queries went to the cloud although 2 local models are installed"
    )
    assert symptom.action is Action.LIGHTER_MODEL
    assert len(symptom.remedies) == 4


def test_cloud_use_needs_five_queries_before_it_counts() -> None:
    metrics = history(*[q(local=False)] * 4)
    assert diagnose(CALM, metrics, Config(), local_models_installed=2) == []


def test_mostly_local_use_is_not_a_symptom() -> None:
    metrics = history(*[q(local=False)] * 2, *[q()] * 3)
    assert diagnose(CALM, metrics, Config(), local_models_installed=2) == []


def test_cloud_use_without_local_models_is_expected() -> None:
    metrics = history(*[q(local=False)] * 10)
    assert diagnose(CALM, metrics, Config(), local_models_installed=0) == []


def test_cloud_use_is_expected_when_local_is_not_preferred() -> None:
    metrics = history(*[q(local=False)] * 10)
    cloud_first = Config(preferences=Preferences(prefer_local=False))
    assert diagnose(CALM, metrics, cloud_first, local_models_installed=2) == []


def test_only_recent_cloud_use_counts() -> None:
    # Thirty old cloud answers, then twenty local ones: the problem is fixed.
    metrics = history(*[q(local=False)] * 30, *[q()] * 20)
    assert diagnose(CALM, metrics, Config(), local_models_installed=2) == []


# --- load failures ---------------------------------------------------------------------------


def test_two_load_failures_in_ten_queries_show() -> None:
    metrics = history(*[q()] * 8, q(load_failed=True), q(load_failed=True, failed=True))
    symptom = only(diagnose(CALM, metrics, Config(), cached_mb=GB), "load_failures")
    assert symptom.title == "Model loading failures"
    assert symptom.evidence == "2 of the last 10 queries hit a model that failed to load"
    assert symptom.action is Action.CLEAR_CACHE
    assert "Restart the Ollama service" in symptom.remedies


def test_load_failures_without_a_cache_have_no_one_key_fix() -> None:
    metrics = history(q(load_failed=True), q(load_failed=True))
    assert only(diagnose(CALM, metrics, Config()), "load_failures").action is None


def test_one_load_failure_is_not_a_symptom() -> None:
    metrics = history(*[q()] * 9, q(load_failed=True))
    assert diagnose(CALM, metrics, Config()) == []


def test_old_load_failures_have_aged_out() -> None:
    metrics = history(q(load_failed=True), q(load_failed=True), *[q()] * 10)
    assert diagnose(CALM, metrics, Config()) == []


# --- slow responses --------------------------------------------------------------------------


def test_slow_generation_shows() -> None:
    metrics = history(*[q(tokens_per_s=3.0)] * 3)
    symptom = only(diagnose(CALM, metrics, Config()), "slow_responses")
    assert symptom.title == "Performance degradation"
    assert symptom.evidence == (
        "the last 3 local answers took a median of 3.0 tok/s (below 5.0 tok/s)"
    )
    assert symptom.action is Action.LIGHTER_MODEL


def test_slow_first_token_shows() -> None:
    metrics = history(*[q(first_token_s=12.0)] * 4)
    symptom = only(diagnose(CALM, metrics, Config()), "slow_responses")
    assert "a median of 12.0 s to the first token (above 10.0 s)" in symptom.evidence


def test_slow_responses_need_three_measurements() -> None:
    metrics = history(*[q(tokens_per_s=1.0, first_token_s=30.0)] * 2)
    assert diagnose(CALM, metrics, Config()) == []


def test_median_ignores_a_single_slow_answer() -> None:
    metrics = history(q(tokens_per_s=1.0, first_token_s=30.0), *[q()] * 4)
    assert diagnose(CALM, metrics, Config()) == []


def test_slow_cloud_and_failed_queries_do_not_count() -> None:
    metrics = history(
        *[q()] * 3,
        *[q(local=False, tokens_per_s=1.0)] * 5,
        *[q(failed=True, tokens_per_s=1.0)] * 5,
    )
    assert diagnose(CALM, metrics, Config()) == []


def test_only_the_last_ten_local_answers_count() -> None:
    metrics = history(*[q(tokens_per_s=1.0)] * 10, *[q()] * 10)
    assert diagnose(CALM, metrics, Config()) == []


def test_slow_responses_offer_the_first_setting_that_is_off() -> None:
    slow = [q(tokens_per_s=2.0)] * 3
    cases = [
        (config(batch_optimization=False), Action.ENABLE_BATCH_OPTIMIZATION),
        (config(use_memory_mapping=False), Action.ENABLE_MEMORY_MAPPING),
        (config(context_truncation=False), Action.ENABLE_TRUNCATION),
        (
            config(batch_optimization=False, use_memory_mapping=False),
            Action.ENABLE_BATCH_OPTIMIZATION,
        ),
    ]
    for settings, action in cases:
        symptom = only(diagnose(CALM, history(*slow), settings), "slow_responses")
        assert symptom.action is action, settings.optimization
    off = only(diagnose(CALM, history(*slow), config(batch_optimization=False)), "slow_responses")
    assert off.remedies[0] == "Turn on batch optimization (optimization.batch_optimization)"


# --- together --------------------------------------------------------------------------------


def test_symptoms_come_in_the_guides_order() -> None:
    metrics = history(
        *[q(local=False)] * 5,
        *[q(tokens_per_s=2.0, load_failed=True)] * 3,
    )
    symptoms = diagnose(FULL, metrics, Config(), cached_mb=GB, local_models_installed=1)
    assert [s.key for s in symptoms] == [
        "high_memory",
        "cloud_fallbacks",
        "load_failures",
        "slow_responses",
    ]
    assert "1 local model is installed" in symptoms[1].evidence
