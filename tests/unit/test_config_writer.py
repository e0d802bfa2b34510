"""Saving settings keeps the user's file: comments, order and untouched keys survive."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from nemo_tui import config_writer
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


def test_a_symlinked_config_stays_a_link_and_its_target_gets_the_change(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "nemo-tui.yaml"
    target.write_text(USER_FILE)
    target.chmod(0o640)
    link = tmp_path / "config.yaml"
    link.symlink_to(target)

    save_settings(link, {"optimization.context_truncation": False})

    assert link.is_symlink()
    assert link.readlink() == target
    assert "context_truncation: false" in target.read_text()
    assert "# we share this box" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "dotfiles"]


def test_a_key_makes_a_group_readable_file_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("backends:\n  gemini:\n    api_key: AIza-in-file\n")
    path.chmod(0o640)

    save_settings(path, {"ui.theme": "nemo-light"})

    assert path.stat().st_mode & 0o777 == 0o600


def test_the_new_text_is_on_disk_before_it_replaces_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync")
        real_fsync(descriptor)

    def replace(source: Any, destination: Any) -> None:
        calls.append("replace")
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    save_settings(path, {"optimization.context_truncation": False})

    assert calls == ["fsync", "replace", "fsync folder"]
    assert "context_truncation: false" in path.read_text()


def test_two_saves_at_the_same_moment_both_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread opens the lock file itself, so they exclude each other as two processes do."""
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    # Hold each save between its read and its write until the other save has read too (or
    # could not, because it waits for the first): without a lock both edit the same old text.
    both_read = threading.Barrier(2, timeout=0.5)
    real_parse = config_writer.parse_config

    def parse_when_both_read(text: str, *, source: str | None = None) -> Config:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        return real_parse(text, source=source)

    monkeypatch.setattr(config_writer, "parse_config", parse_when_both_read)
    failures: list[BaseException] = []

    def save(updates: dict[str, config_writer.SettingValue]) -> None:
        try:
            save_settings(path, updates)
        except BaseException as exc:
            failures.append(exc)

    savers = [
        threading.Thread(target=save, args=({"optimization.context_truncation": False},)),
        threading.Thread(target=save, args=({"ui.theme": "nemo-light"},)),
    ]
    for saver in savers:
        saver.start()
    for saver in savers:
        saver.join(timeout=30)

    assert failures == []
    config = load_config(path).config
    assert config.optimization.context_truncation is False
    assert config.ui.theme == "nemo-light"
    assert "# we share this box" in path.read_text()


def test_a_config_that_is_not_utf8_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    latin1 = "# réglages du labo\nmemory_thresholds:\n  cache_limit: 0.7\n".encode("latin-1")
    path.write_bytes(latin1)

    with pytest.raises(ConfigError) as info:
        save_settings(path, {"optimization.context_truncation": False})

    message = info.value.one_line()
    assert message.startswith(f"{path}:1: the file is not UTF-8 text")
    assert "byte 0xe9 at offset 3" in message
    assert "save the file as UTF-8" in message
    assert path.read_bytes() == latin1


def test_a_file_with_windows_line_endings_keeps_its_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(USER_FILE.replace("\n", "\r\n").encode())

    save_settings(path, {"optimization.context_truncation": False})

    text = path.read_text()
    assert "cache_limit: 0.7   # we share this box\n" in text
    assert "\r" not in text
