"""Compile nemo-tui's sources to bytecode before a start-up benchmark, as an install does.

pip writes the bytecode of the packages it installs (Textual, msgspec, …); an editable install
of nemo-tui, or `PYTHONDONTWRITEBYTECODE` in the environment, would leave nemo-tui's own modules
to be compiled from source on every start, a cost no installed copy pays.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_bytecode() -> None:
    """Write `__pycache__` files for the package and the benchmark helpers."""
    for folder in (ROOT / "nemo_tui", ROOT / "bench"):
        compileall.compile_dir(folder, quiet=1)
