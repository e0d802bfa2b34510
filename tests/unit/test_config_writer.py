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
from nemo_tui.config import Config, load_config, parse_config
from nemo_tui.config_writer import apply_settings, default_settings, get_setting, save_settings
from nemo_tui.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

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

    added_to_its_section = _insert_line_after(
        USER_FILE, "  use_memory_mapping: false", "  context_truncation: false"
    )
    assert path.read_text() == added_to_its_section + "ui:\n  theme: nemo-light\n"
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


@pytest.mark.parametrize("header", ["", "# mine\n---\n"])
def test_a_yaml_error_names_the_line_without_quoting_the_file(tmp_path: Path, header: str) -> None:
    path = tmp_path / "config.yaml"
    text = header + "backends:\n  gemini:\n    api_key: AIza-first\n    api_key: AIza-second\n"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        save_settings(path, {"optimization.context_truncation": False})

    shown = caught.value.one_line()
    assert "AIza" not in shown
    assert f"(line {text.splitlines().index('    api_key: AIza-second') + 1})" in shown
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
    real_parse = parse_config

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

    # Every line keeps its text; the line endings become `\n`, as ruamel writes them.
    assert path.read_bytes().decode() == _insert_line_after(
        USER_FILE, "  use_memory_mapping: false", "  context_truncation: false"
    )


# A save rewrites the whole file through ruamel.yaml, whose own layout (lists flush with their
# key, lines folded at 80 columns, `null` written as nothing) would otherwise replace the user's.
# Each case is a style people write by hand; a save must change only the line of the setting.
HAND_WRITTEN_STYLES = {
    "two-space maps, lists flush with their key": """\
optimization:
  context_truncation: true
  batch_optimization: true
models:
- name: mistral:7b
  tier: high
  parameters_b: 7.2
- name: phi3:mini
  tier: medium
  parameters_b: 3.8
ui:
  theme: nemo-dark
""",
    "two-space maps, lists indented under their key": """\
optimization:
  context_truncation: true
  batch_optimization: true
models:
  - name: mistral:7b
    tier: high
    parameters_b: 7.2
  - name: phi3:mini
    tier: medium
    parameters_b: 3.8
ui:
  theme: nemo-dark
""",
    "four-space maps and lists": """\
optimization:
    context_truncation: true
    batch_optimization: true
models:
    - name: mistral:7b
      tier: high
      parameters_b: 7.2
backends:
    ollama:
        keep_alive: 1h
ui:
    theme: nemo-dark
""",
    "four-space maps, lists at two": """\
optimization:
    context_truncation: true
    batch_optimization: true
models:
  - name: mistral:7b
    tier: high
    parameters_b: 7.2
ui:
    theme: nemo-dark
""",
    "comments, blank lines, quotes, nulls and flow style": """\
# lab machine settings
---
memory_thresholds:
  cache_limit: 0.7   # we share this box

optimization:
  context_truncation: True      # capitalised, as Python people write it
  batch_optimization: True

# flow style: a list and a mapping on one line
models: [{name: "mistral:7b", tier: high, parameters_b: 7.2}]

backends:
  ollama:
    url: ~                      # $OLLAMA_HOST
    keep_alive: "30m"
  openai:
    api_key_env:
  embedded:
    model_path: null
  gemini:
    url: https://generativelanguage.googleapis.com/v1beta  # a line longer than eighty columns
ui: {theme: 'nemo-dark'}
""",
}


def _replace_line(text: str, old: str, new: str) -> str:
    """`text` with its one line `old` replaced by `new`."""
    lines = text.splitlines(keepends=True)
    assert lines.count(old + "\n") == 1, f"{old!r} is not exactly one line of the file"
    lines[lines.index(old + "\n")] = new + "\n"
    return "".join(lines)


def _with_value(line: str, value: str) -> str:
    """`line` with `value` for its value; a comment after it keeps its column, as in an editor."""
    key, _, rest = line.partition(": ")
    old_value, hash_sign, comment = rest.partition("#")
    if not hash_sign:
        return f"{key}: {value}"
    return f"{key}: {value} ".ljust(len(key) + 2 + len(old_value)) + hash_sign + comment


def _insert_line_after(text: str, anchor: str, new: str) -> str:
    """`text` with the line `new` added right after its one line `anchor`."""
    lines = text.splitlines(keepends=True)
    assert lines.count(anchor + "\n") == 1, f"{anchor!r} is not exactly one line of the file"
    lines.insert(lines.index(anchor + "\n") + 1, new + "\n")
    return "".join(lines)


def _saved(tmp_path: Path, text: str, updates: dict[str, config_writer.SettingValue]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    save_settings(path, updates)
    return path.read_text()


@pytest.mark.parametrize("style", HAND_WRITTEN_STYLES)
def test_a_saved_setting_changes_its_own_line_and_no_other(tmp_path: Path, style: str) -> None:
    before = HAND_WRITTEN_STYLES[style]
    old = next(line for line in before.splitlines() if "context_truncation:" in line)

    after = _saved(tmp_path, before, {"optimization.context_truncation": False})

    spelling = "False" if "True" in old else "false"
    assert after == _replace_line(before, old, _with_value(old, spelling))


@pytest.mark.parametrize("style", HAND_WRITTEN_STYLES)
def test_a_setting_the_file_lacks_is_added_to_its_section_and_nothing_else_moves(
    tmp_path: Path, style: str
) -> None:
    before = HAND_WRITTEN_STYLES[style]
    last_of_section = next(line for line in before.splitlines() if "batch_optimization:" in line)
    indent = last_of_section[: len(last_of_section) - len(last_of_section.lstrip())]
    spelling = "False" if "True" in last_of_section else "false"

    after = _saved(tmp_path, before, {"optimization.predictive_preloading": False})

    added = f"{indent}predictive_preloading: {spelling}"
    assert after == _insert_line_after(before, last_of_section, added)


@pytest.mark.parametrize("style", HAND_WRITTEN_STYLES)
def test_a_section_the_file_lacks_is_added_at_the_end_in_the_files_indent(
    tmp_path: Path, style: str
) -> None:
    before = HAND_WRITTEN_STYLES[style]
    indent = "    " if style.startswith("four-space") else "  "

    after = _saved(tmp_path, before, {"monitor.gauge_interval_s": 5.0})

    assert after == f"{before}monitor:\n{indent}gauge_interval_s: 5.0\n"


def test_the_example_config_keeps_every_line_but_the_changed_one(tmp_path: Path) -> None:
    """The shipped example: aligned comments, `null` values, a commented-out list."""
    before = (REPO / "config.example.yaml").read_text()
    old = next(line for line in before.splitlines() if line.startswith("  theme: nemo-dark"))

    after = _saved(tmp_path, before, {"ui.theme": "nemo-light"})

    assert after == _replace_line(before, old, _with_value(old, "nemo-light"))


def test_a_long_value_is_not_folded_onto_a_second_line(tmp_path: Path) -> None:
    before = (
        "backends:\n  openai:\n    url: http://gpu-box.lab.example.org:8080/" + "v1/" * 30 + "\n"
    )

    after = _saved(tmp_path, before, {"backends.openai.enabled": True})

    assert after == before + "    enabled: true\n"


def test_comments_outside_the_document_markers_stay_where_they_are(tmp_path: Path) -> None:
    """ruamel drops `---`, the comments above it, `...` and the comments below it."""
    before = "# mine\n---\noptimization:\n  context_truncation: true\n...\n# the end\n"

    after = _saved(tmp_path, before, {"optimization.context_truncation": False})

    assert after == before.replace("context_truncation: true", "context_truncation: false")


def test_a_file_of_comments_alone_keeps_them(tmp_path: Path) -> None:
    before = "# nemo-tui settings: none yet\n\n# (the dashboard adds them)\n"

    after = _saved(tmp_path, before, {"ui.theme": "nemo-light"})

    assert after == before + "ui:\n  theme: nemo-light\n"
