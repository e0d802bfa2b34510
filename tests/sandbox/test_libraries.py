"""Which data libraries the Python that runs scripts can import, asked of that Python."""

from __future__ import annotations

import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from nemo_tui.errors import NemoError
from nemo_tui.sandbox.libraries import CANDIDATES, detect_libraries


def test_the_libraries_this_python_has_come_in_the_fixed_order() -> None:
    expected = tuple(name for name in CANDIDATES if find_spec(name) is not None)
    found = detect_libraries()
    assert found == expected
    assert found == detect_libraries(sys.executable)
    # numpy comes with gguf, a dependency of nemo-tui.
    assert "numpy" in found


def test_a_missing_python_is_a_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "bin" / "python3")
    with pytest.raises(NemoError) as raised:
        detect_libraries(missing)
    assert missing in raised.value.message
    assert "cannot be started" in raised.value.message
    assert "analysis.python" in raised.value.fix


def test_a_file_that_is_not_a_program_is_a_clear_error(tmp_path: Path) -> None:
    not_a_program = tmp_path / "python"
    not_a_program.write_text("just text\n", encoding="utf-8")
    with pytest.raises(NemoError) as raised:
        detect_libraries(str(not_a_program))
    assert "cannot be started" in raised.value.message
    assert raised.value.fix


def test_a_program_that_fails_is_a_clear_error() -> None:
    false = shutil.which("false")
    assert false is not None
    with pytest.raises(NemoError) as raised:
        detect_libraries(false)
    assert "failed: exit status 1" in raised.value.message
    assert raised.value.fix
