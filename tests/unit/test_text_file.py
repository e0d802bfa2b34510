"""Saving text to a file the user names: only regular files, never replaced unasked, any text."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nemo_tui.core.text.text_file import TextNotSaved, save_text, would_replace


def test_a_new_file_is_written_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "answer.md"
    assert would_replace(path) is False

    saved = save_text(path, "**naïve** café ✓", replace=False)

    assert path.read_bytes() == "**naïve** café ✓".encode()
    assert saved.path == path
    assert saved.replaced_characters == 0


def test_an_existing_file_is_replaced_only_when_agreed(tmp_path: Path) -> None:
    path = tmp_path / "answer.md"
    path.write_text("my notes, kept")
    assert would_replace(path) is True

    with pytest.raises(TextNotSaved, match="already exists"):
        save_text(path, "new", replace=False)
    assert path.read_text() == "my notes, kept"

    save_text(path, "new", replace=True)
    assert path.read_text() == "new"


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("a longer old text")
    link = tmp_path / "answer.md"
    link.symlink_to(target)

    assert would_replace(link) is True
    save_text(link, "new", replace=True)

    assert link.is_symlink()
    assert target.read_text() == "new"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("replace", [False, True])
def test_a_fifo_is_refused_without_waiting_for_a_reader(tmp_path: Path, replace: bool) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    with pytest.raises(TextNotSaved, match="is a FIFO"):
        would_replace(fifo)
    with pytest.raises(TextNotSaved, match=f"{fifo} is a FIFO"):
        save_text(fifo, "answer", replace=replace)


@pytest.mark.parametrize("replace", [False, True])
def test_a_device_a_folder_and_a_socket_are_refused(tmp_path: Path, replace: bool) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    try:
        for path, kind in [
            (Path(os.devnull), "a character device"),
            (tmp_path, "a folder"),
            (tmp_path / "sock", "a socket"),
        ]:
            with pytest.raises(TextNotSaved, match=kind):
                save_text(path, "answer", replace=replace)
    finally:
        listener.close()
    assert os.listdir(tmp_path) == ["sock"]


def test_lone_surrogates_become_replacement_characters_and_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "answer.md"
    # A lone high and a lone low surrogate, and a pair held as two characters (one emoji).
    text = "a\ud800b\udfffc \ud83d\ude00 \ufffd"

    saved = save_text(path, text, replace=False)

    assert path.read_text(encoding="utf-8") == "a\ufffdb\ufffdc \U0001f600 \ufffd"
    assert saved.replaced_characters == 2


def test_a_missing_folder_is_reported_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "answer.md"

    with pytest.raises(TextNotSaved) as info:
        save_text(path, "answer", replace=False)

    assert f"cannot write {path}: No such file or directory" in info.value.one_line()
