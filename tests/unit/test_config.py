"""Config discovery and validation: users see the file, the line, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_tui.config import Config, dump_config_yaml, find_config_file, load_config, parse_config
from nemo_tui.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_example_file_lists_exactly_the_defaults() -> None:
    text = (REPO / "config.example.yaml").read_text()
    assert parse_config(text, source="config.example.yaml") == Config()


def test_empty_file_gives_defaults() -> None:
    assert parse_config("", source="c.yaml") == Config()


def test_typo_names_file_line_key_and_closest_key() -> None:
    text = "optimization:\n  context_truncation: true\nmemory_thresholds:\n  cache_limt: 0.5\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="my.yaml")
    message = info.value.one_line()
    assert message.startswith("my.yaml:4: memory_thresholds.cache_limt: unknown key")
    assert "did you mean 'cache_limit'?" in message


def test_wrong_type_says_what_was_expected() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("optimization:\n  use_memory_mapping: 3\n", source="c.yaml")
    assert "optimization.use_memory_mapping" in str(info.value)
    assert "true or false" in info.value.fix


def test_out_of_range_fraction_is_rejected_with_bounds() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("memory_thresholds:\n  cache_limit: 1.5\n", source="c.yaml")
    assert "memory_thresholds.cache_limit" in str(info.value)
    assert "<= 1" in info.value.fix


def test_integer_accepted_where_a_number_is_expected() -> None:
    config = parse_config("memory_thresholds:\n  cache_limit: 1\n", source="c.yaml")
    assert config.memory_thresholds.cache_limit == 1.0


def test_forced_complexity_must_be_a_known_level() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("preferences:\n  complexity_threshold: huge\n", source="c.yaml")
    assert "'auto', 'low', 'medium', 'high'" in info.value.fix


def test_thresholds_must_increase() -> None:
    with pytest.raises(ConfigError, match="thresholds must increase"):
        parse_config("memory_thresholds:\n  medium_memory_mb: 9000\n", source="c.yaml")


def test_model_entry_needs_some_memory_information() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("models:\n  - name: mystery\n    tier: low\n", source="c.yaml")
    assert "models[0]" in str(info.value)
    assert "min_memory_mb" in info.value.fix


def test_model_entry_missing_name_points_at_the_entry() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("models:\n  - tier: low\n    min_memory_mb: 500\n", source="c.yaml")
    assert "models[0].name: required key is missing" in str(info.value)


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("monitor:\n  gauge_interval_s: [1,\n", source="c.yaml")
    assert "not valid YAML" in str(info.value)
    assert info.value.line is not None


def test_explicit_path_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("monitor:\n  gauge_interval_s: 5\n")
    env_file = tmp_path / "env.yaml"
    env_file.write_text("monitor:\n  gauge_interval_s: 7\n")
    monkeypatch.setenv("NEMO_TUI_CONFIG", str(env_file))
    assert load_config(explicit).config.monitor.gauge_interval_s == 5
    assert load_config().config.monitor.gauge_interval_s == 7


def test_missing_environment_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEMO_TUI_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="NEMO_TUI_CONFIG"):
        find_config_file()


def test_platform_file_is_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEMO_TUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "nemo-tui").mkdir()
    (tmp_path / "nemo-tui" / "config.yaml").write_text("ui:\n  theme: nemo-light\n")
    loaded = load_config()
    assert loaded.path == tmp_path / "nemo-tui" / "config.yaml"
    assert loaded.config.ui.theme == "nemo-light"


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEMO_TUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    loaded = load_config()
    assert loaded.path is None
    assert loaded.config == Config()


def test_dumped_config_masks_the_api_key() -> None:
    config = parse_config("backends:\n  gemini:\n    api_key: AIza-secret-value\n", source="c.yaml")
    dumped = dump_config_yaml(config)
    assert "AIza-secret-value" not in dumped
    assert "api_key: '***'" in dumped


def test_a_key_given_twice_is_refused_with_its_line_and_no_values() -> None:
    text = "backends:\n  gemini:\n    api_key: AIza-first\n    api_key: AIza-second\n"

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")

    shown = caught.value.one_line()
    assert "'api_key' is set twice" in shown and "config.yaml:4" in shown
    assert "AIza" not in shown


def test_the_same_key_in_different_sections_is_fine() -> None:
    config = parse_config("monitor:\n  gauge_interval_s: 2\nui:\n  theme: nemo-dark\n")

    assert config.monitor.gauge_interval_s == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("monitor:\n  refresh_interval_s: .inf\n", "monitor.refresh_interval_s"),
        ("monitor:\n  gauge_interval_s: .nan\n", "monitor.gauge_interval_s"),
        ("backends:\n  ollama:\n    timeout_s: .inf\n", "backends.ollama.timeout_s"),
        ("backends:\n  gemini:\n    timeout_s: 86400\n", "backends.gemini.timeout_s"),
        ("preferences:\n  max_wait_time_ms: 99999999999\n", "preferences.max_wait_time_ms"),
    ],
)
def test_timeouts_and_intervals_without_a_sane_bound_are_refused(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")

    assert key in caught.value.one_line() and caught.value.fix


def test_a_config_that_is_not_utf8_names_the_byte_its_place_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("# réglages\nui:\n  theme: nemo-dark\n".encode("latin-1"))

    with pytest.raises(ConfigError) as info:
        load_config(path)

    message = info.value.one_line()
    assert message.startswith(f"{path}:1: the file is not UTF-8 text")
    assert "byte 0xe9 at offset 3" in message
    assert "save the file as UTF-8" in message


def test_windows_line_endings_load_like_unix_ones(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# mine\r\nmonitor:\r\n  gauge_interval_s: 3\r\n")
    assert load_config(path).config.monitor.gauge_interval_s == 3


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://user:hunter2@gpu-box:11434", "'http://***@gpu-box:11434' holds a user name"),
        ("'gpu-box:http'", "'gpu-box:http' has the port 'http'"),
        ("'http://'", "'http://' names no host"),
    ],
)
def test_an_ollama_url_that_names_no_address_names_the_file_line_and_key(
    url: str, problem: str
) -> None:
    text = f"ui:\n  theme: nemo-dark\nbackends:\n  ollama:\n    url: {url}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="c.yaml")
    message = info.value.one_line()
    assert message.startswith(f"c.yaml:5: backends.ollama.url: {problem}")
    assert "hunter2" not in message
    assert "leave it out to use $OLLAMA_HOST" in info.value.fix


def test_an_ollama_url_in_a_form_ollama_accepts_loads() -> None:
    text = "backends:\n  ollama:\n    url: '[::1]:11500'\n"
    assert parse_config(text, source="c.yaml").backends.ollama.url == "[::1]:11500"


@pytest.mark.parametrize("yaml_escape", ["\\n", "\\r\\n", "\\L", "\\N"])
def test_an_error_quoting_a_key_with_a_line_break_stays_one_line(yaml_escape: str) -> None:
    """A key written with a YAML escape for a line break (newline, CRLF, U+2028, U+0085)."""
    text = f'ui:\n  "wide{yaml_escape}screen": true\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")

    message = caught.value.one_line()
    assert message.splitlines() == [message]
    assert "wide" in message and "screen" in message
