"""Saving settings keeps the user's file: comments, order and untouched keys survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_tui.config import Config, load_config
from nemo_tui.config_writer import apply_settings, default_settings, get_setting, save_settings
from nemo_tui.errors import ConfigError

USER_FILE = """\
# lab machine settings
memory_thresholds:
  cache_limit: 0.7   # we share this box
optimization:
  use_memory_mapping: false
models:
  - name: mistral:7b
    tier: high
    parameters_b: 7.2
"""


def test_a_saved_setting_keeps_comments_and_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    save_settings(path, {"optimization.context_truncation": False, "ui.theme": "nemo-light"})
    text = path.read_text()
    assert text.startswith("# lab machine settings\n")
    assert "cache_limit: 0.7   # we share this box" in text
    assert "- name: mistral:7b" in text
    config = load_config(path).config
    assert config.optimization.context_truncation is False
    assert config.optimization.use_memory_mapping is False
    assert config.ui.theme == "nemo-light"
    assert config.memory_thresholds.cache_limit == 0.7


def test_a_missing_file_is_created_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.yaml"
    save_settings(path, {"preferences.allow_fallback": False})
    assert path.read_text().startswith("# nemo-tui configuration")
    assert load_config(path).config.preferences.allow_fallback is False


def test_a_save_that_would_break_the_config_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    with pytest.raises(ConfigError):
        save_settings(path, {"memory_thresholds.cache_limit": 7})
    assert path.read_text() == USER_FILE


def test_a_file_that_is_not_yaml_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("optimization: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        save_settings(path, {"optimization.context_truncation": False})
    assert path.read_text() == "optimization: [unclosed\n"


def test_apply_and_defaults_work_on_dotted_keys() -> None:
    changed = apply_settings(Config(), {"optimization.batch_optimization": False})
    assert changed.optimization.batch_optimization is False
    assert Config().optimization.batch_optimization is True  # the original is untouched
    assert default_settings(["optimization.batch_optimization"]) == {
        "optimization.batch_optimization": True
    }
    with pytest.raises(ConfigError, match="no such setting"):
        get_setting(Config(), "optimization.turbo")
    with pytest.raises(ConfigError):
        apply_settings(Config(), {"optimization.batch_optimization": "yes"})


def test_a_file_holding_a_key_is_saved_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("backends:\n  gemini:\n    api_key: AIza-in-file\n")
    path.chmod(0o644)

    save_settings(path, {"optimization.context_truncation": False})

    assert path.stat().st_mode & 0o777 == 0o600
    assert "api_key: AIza-in-file" in path.read_text()


def test_a_file_without_a_key_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    path.chmod(0o640)

    save_settings(path, {"optimization.context_truncation": False})

    assert path.stat().st_mode & 0o777 == 0o640


def test_a_yaml_error_names_the_line_without_quoting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    text = "backends:\n  gemini:\n    api_key: AIza-first\n    api_key: AIza-second\n"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        save_settings(path, {"optimization.context_truncation": False})

    shown = caught.value.one_line()
    assert "AIza" not in shown
    assert "line" in shown
    assert path.read_text() == text
